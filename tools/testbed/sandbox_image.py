"""The sandbox (pause) image: a static C program packed as a one-layer image archive.

No registry is reachable, so containerd's sandbox image is made here: gcc builds
images/sandbox-pause/pause.c statically, and the binary is packed in Docker's archive format
(manifest.json + config + layer.tar), which `ctr images import` reads. Docker is not needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from testbed.host import run
from testbed.repo import REPO

SANDBOX_IMAGE = "podkit.local/sandbox-pause:3.10"
SOURCE = REPO / "images" / "sandbox-pause" / "pause.c"


def _tar_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible tar: fixed owner and mtime, members in sorted order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_archive(binary: bytes, tag: str) -> bytes:
    """A Docker image archive holding `binary` as /pause, its entrypoint."""
    layer = _tar_bytes({"pause": (binary, 0o755)})
    diff_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": "podkit testbed.sandbox_image (static pause.c)"}],
    }, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    return _tar_bytes({"manifest.json": (manifest, 0o644), config_name: (config, 0o644),
                       f"{diff_id}/layer.tar": (layer, 0o644)})


def build(cache_dir: Path) -> Path:
    """Compile pause.c and write the image archive; skipped when the source is unchanged."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source).hexdigest()[:16]
    archive = cache_dir / f"sandbox-pause-{key}.tar"
    if archive.exists():
        return archive
    cache_dir.mkdir(parents=True, exist_ok=True)
    binary = cache_dir / f"pause-{key}"
    run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(SOURCE)])
    tmp = archive.with_suffix(".tmp")
    tmp.write_bytes(image_archive(binary.read_bytes(), SANDBOX_IMAGE))
    tmp.rename(archive)
    binary.unlink()
    return archive
