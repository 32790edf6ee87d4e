"""Atomic files in the shared directory: version files and slot state records.

Every write goes to a temporary file in the same directory, is fsynced, renamed over the
target and the directory fsynced, so a reader never sees a half-written file and a crash
leaves either the old or the new content.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import PodkitError


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, fsync dir).

    The file is readable by all (0644): the other containers of the pod, which may run as
    other users, read it. Any failure (a full or read-only directory, a directory in the
    file's place) is a :class:`PodkitError` naming the file, and leaves no temporary file.
    """
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise PodkitError(f"cannot write in {directory}: {exc.strerror}; "
                          "make the directory exist and writable") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise PodkitError(f"cannot write {path}: {exc.strerror}; free space in the "
                              "shared directory or remove what is in the file's place") from exc
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise PodkitError(f"cannot sync {directory}: {exc.strerror}; check the shared "
                          "directory's volume") from exc


def atomic_write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as one JSON document, atomically."""
    atomic_write(path, (json.dumps(record, sort_keys=True) + "\n").encode())


# The shared directory's files are small (a version line, a state record of a few hundred
# bytes); another container can write anything there, so a reader never takes more than this.
MAX_FILE_BYTES = 64 * 1024


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes | None:
    """A file's bytes; ``None`` when it does not exist; other failures name the file.

    A file over ``limit`` bytes is refused (:class:`PodkitError`) without reading the rest.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PodkitError(f"cannot read {path}: {exc.strerror}; make it a readable file, or "
                          "delete it and restart the slot") from exc
    if len(data) > limit:
        raise PodkitError(f"{path} is corrupt (over {limit} bytes); delete it and restart "
                          "the slot")
    return data


def loads_json(raw: bytes | str) -> Any:
    """``json.loads``, with every malformed input a :class:`ValueError`.

    ``json.loads`` raises :class:`RecursionError` on arrays or objects nested a few thousand
    deep (a 64 KiB message holds 65,536 ``[``); that is malformed input too.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a JSON object; ``None`` when the file does not exist.

    A file that is not a JSON object raises :class:`PodkitError` naming the file.
    """
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        record = loads_json(raw)
    except ValueError as exc:
        raise PodkitError(f"{path} is corrupt ({exc}); delete it and restart the slot") from exc
    if not isinstance(record, dict):
        raise PodkitError(f"{path} is corrupt (not a JSON object); delete it and restart the slot")
    return record
