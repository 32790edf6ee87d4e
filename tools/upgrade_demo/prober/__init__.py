"""The compiled prober (``main.go``, standard library only), built from source on first use.

:func:`binary` builds it with the Go toolchain on this machine and caches it under
``$PODKIT_CACHE/prober-<hash of the source>/prober``, so an edit of the source builds anew and
an unchanged one never does; the three newest builds are kept. The build is offline
(``GOTOOLCHAIN=local``, no modules to fetch).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from testbed.docker import CACHE
from testbed.errors import TestbedError
from testbed.host import exclusive

SOURCE = Path(__file__).resolve().parent
KEEP = 3  # builds kept in the cache, newest first (as apiserver-patches/build.sh keeps its)


def source_key(source: Path = SOURCE) -> str:
    """A hash of the program's source: go.mod and every .go file."""
    digest = hashlib.sha256()
    for path in [source / "go.mod", *sorted(source.glob("*.go"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def go_binary() -> str:
    """The ``go`` command: on PATH, or where Go's own installer puts it."""
    found = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)),
        None)
    if found is None:
        raise TestbedError("the prober is a Go program built from "
                           "tools/upgrade_demo/prober/main.go, and no Go toolchain was found "
                           "(go on PATH or /usr/local/go/bin/go); install Go 1.22 or later")
    return found


def binary() -> Path:
    """The prober's executable, built now if this source was never built."""
    target = CACHE / f"prober-{source_key()}" / "prober"
    if target.exists():
        return target
    with exclusive(CACHE / ".prober-build.lock"):
        if target.exists():  # built meanwhile by another process
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod", CGO_ENABLED="0")
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / "prober"
            proc = subprocess.run([go_binary(), "build", "-trimpath", "-o", str(built), "."],
                                  cwd=SOURCE, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise TestbedError(f"building the prober (tools/upgrade_demo/prober) failed: "
                                   f"{proc.stderr.strip()[-2000:]}")
            built.rename(target)
        for old in sorted(CACHE.glob("prober-*"), key=lambda p: p.stat().st_mtime)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    return target
