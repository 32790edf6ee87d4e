"""Config directories as the kubelet writes them, and their content hash.

The kubelet projects a ConfigMap volume atomically: it writes the files into a new hidden
directory ``..<timestamp>``, points a new symlink ``..data_tmp`` at it, renames that over
``..data``, and the visible names are symlinks into ``..data``. The one event that means "new
content" is that rename; a modify event on a file never happens. :func:`write_like_kubelet`
does the same, so tests and local runs exercise the real sequence.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA_LINK = "..data"


def hash_files(files: Mapping[str, bytes]) -> str:
    """The content hash of a set of named files: the same for a ConfigMap's data and for the
    directory the kubelet projects it into, so the operator and the sidecar agree on it."""
    digest = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:16]


def read_files(directory: Path) -> dict[str, bytes]:
    """The visible files of a config directory (through ``..data`` when the kubelet wrote it)."""
    source = directory / DATA_LINK if (directory / DATA_LINK).exists() else directory
    files = {}
    for entry in source.iterdir():
        if not entry.name.startswith("..") and entry.is_file():
            files[entry.name] = entry.read_bytes()
    return files


def content_hash(directory: Path) -> str:
    return hash_files(read_files(directory))


def write_like_kubelet(directory: Path, files: Mapping[str, bytes]) -> None:
    """Replace the directory's content the way the kubelet's atomic writer does."""
    directory.mkdir(parents=True, exist_ok=True)
    data_link = directory / DATA_LINK
    old_target = os.readlink(data_link) if data_link.is_symlink() else None
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 10**9}"
    new_dir = directory / stamp
    new_dir.mkdir()
    for name, content in files.items():
        (new_dir / name).write_bytes(content)
    tmp_link = directory / f"{DATA_LINK}_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(stamp)
    os.rename(tmp_link, data_link)
    for name in files:
        visible = directory / name
        if not visible.is_symlink():
            visible.symlink_to(f"{DATA_LINK}/{name}")
    for entry in directory.iterdir():
        if (entry.is_symlink() and not entry.name.startswith("..")
                and entry.name not in files):
            entry.unlink()
    if old_target is not None and old_target != stamp:
        shutil.rmtree(directory / old_target, ignore_errors=True)
