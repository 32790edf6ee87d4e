"""Build podkit's images offline and load them into the testbed: `python -m testbed.images build`.

No registry is reachable, so:
- the base image is a Debian bookworm root made by debootstrap (python3 and pip from Debian's
  packages) and imported into Docker;
- Python packages go in as wheels built on the host (`pip wheel` of this repository);
- every Dockerfile in images/ takes `ARG BASE_IMAGE`, so a user builds the same files FROM a
  public Python image;
- Docker's engine builds them (started here if none runs, and stopped again), `docker save`
  writes archives to the cache, and `ctr images import` loads them into the testbed.
The build is skipped when the hash of its inputs (Dockerfiles, wheels, base) is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed import docker, host
from testbed.cluster import Testbed
from testbed.errors import TestbedError
from testbed.repo import REPO

IMAGES_DIR = REPO / "images"
CACHE = Path(os.environ.get("PODKIT_CACHE", Path.home() / ".cache" / "podkit")) / "images"
REGISTRY = "podkit.local"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-pip", "ca-certificates")
# The distributions that go into images (each a folder with its pyproject.toml), and the
# folders of their sources: the base image installs podkit, the demo image podkit-demo, the
# operator's image podkit-operator.
DISTRIBUTIONS = {".": "podkit", "operator": "operator/podkit_operator",
                 "demo_service": "demo_service/podkit_demo"}


@dataclass(frozen=True)
class Image:
    """One image: its Dockerfile directory under images/, its tag and build args."""

    directory: str
    tag: str
    base: str  # the BASE_IMAGE build arg: another Image's tag, or "debian" for the offline base
    args: tuple[tuple[str, str], ...] = ()


IMAGES: tuple[Image, ...] = (
    Image("base", f"{REGISTRY}/podkit-base:dev", "debian"),
    Image("pause", f"{REGISTRY}/podkit-pause:dev", f"{REGISTRY}/podkit-base:dev"),
    Image("sidecar", f"{REGISTRY}/podkit-sidecar:dev", f"{REGISTRY}/podkit-base:dev"),
    Image("demo", f"{REGISTRY}/podkit-demo:v1", f"{REGISTRY}/podkit-base:dev",
          (("PODKIT_VERSION", "v1"),)),
    Image("demo", f"{REGISTRY}/podkit-demo:v2", f"{REGISTRY}/podkit-base:dev",
          (("PODKIT_VERSION", "v2"),)),
    Image("operator", f"{REGISTRY}/podkit-operator:dev", f"{REGISTRY}/podkit-base:dev"),
)


@dataclass(frozen=True)
class Tags:
    """The tags of podkit's images, by role."""

    base: str
    pause: str
    sidecar: str
    demo_v1: str
    demo_v2: str
    operator: str


def tags() -> Tags:
    by_name = {image.tag.split("/", 1)[1]: image.tag for image in IMAGES}
    return Tags(base=by_name["podkit-base:dev"], pause=by_name["podkit-pause:dev"],
                sidecar=by_name["podkit-sidecar:dev"], demo_v1=by_name["podkit-demo:v1"],
                demo_v2=by_name["podkit-demo:v2"], operator=by_name["podkit-operator:dev"])


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def _apt_mirror() -> str:
    """The Debian mirror apt uses here, so debootstrap fetches from the same place."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            fields = line.split()
            if fields[:1] == ["deb"] and "security" not in line:
                return next(f for f in fields[1:] if f.startswith("http"))
    return "http://deb.debian.org/debian"


def debian_rootfs() -> Path:
    """A tarball of a minimal bookworm root with python3 (debootstrap; cached)."""
    key = _digest(SUITE.encode(), " ".join(BASE_PACKAGES).encode())
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    host.ensure_packages(["debootstrap"])
    CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        print(f"images: debootstrap {SUITE} (a few minutes)", file=sys.stderr)
        host.run(["nice", "debootstrap", "--variant=minbase",
                  f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), _apt_mirror()])
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            for entry in (root / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tmp = tarball.with_suffix(".tmp")
        host.run(["tar", "--numeric-owner", "--one-file-system", "-C", str(root),
                  "-cf", str(tmp), "."])
        tmp.rename(tarball)
    finally:
        host.unmount_below(root)  # debootstrap leaves /proc and /sys mounted if it fails
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def base_image() -> str:
    """The offline Debian image in Docker, tagged with the rootfs hash so changes show."""
    tarball = debian_rootfs()
    tag = f"{REGISTRY}/debian-python:{tarball.stem.rsplit('-', 1)[1]}"
    if not docker.has_image(tag):
        host.run(["docker", "import", str(tarball), tag])
    return tag


def wheels() -> Path:
    """Wheels of the distributions that go into images and of their dependencies, built on
    the host.

    Keyed by their pyproject.toml files and sources, so an edit to them rebuilds.
    """
    sources = sorted(p for d in DISTRIBUTIONS.values() for p in (REPO / d).rglob("*")
                     if p.is_file() and p.suffix in (".py", ".yaml"))
    key = _digest(*((REPO / d / "pyproject.toml").read_bytes() for d in DISTRIBUTIONS),
                  *(str(p.relative_to(REPO)).encode() + p.read_bytes() for p in sources))
    out = CACHE / f"wheels-{key}"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="wheels-", dir=CACHE))
    with tempfile.TemporaryDirectory() as build_copy:
        # Build from a copy so the wheel build leaves no build/ or egg-info in the work tree.
        shutil.copytree(REPO, build_copy, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", ".venv", "build", "out",
                                                      "*.egg-info", "__pycache__",
                                                      ".pytest_cache"))
        host.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(tmp),
                  *(str(Path(build_copy) / d) for d in DISTRIBUTIONS)])
    tmp.rename(out)
    return out


def build_all() -> Path:
    """Build every image; return one archive of them all (for `ctr images import`).

    The archive's name carries the hash of every input (the Debian root, the wheels, each
    Dockerfile and its build args), so unchanged inputs cost neither Docker nor a build.
    One archive for all images stores their shared layers once.
    """
    wheel_dir = wheels()
    rootfs = debian_rootfs()
    key = _digest(rootfs.name.encode(), wheel_dir.name.encode(),
                  *((IMAGES_DIR / i.directory / "Dockerfile").read_bytes()
                    + repr((i.tag, i.base, i.args)).encode() for i in IMAGES))
    archive = CACHE / f"podkit-images-{key}.tar"
    if archive.exists():
        return archive
    with docker.engine():
        debian = base_image()
        for image in IMAGES:
            _docker_build(image, debian if image.base == "debian" else image.base, wheel_dir)
        tmp = archive.with_suffix(".tmp")
        host.run(["docker", "save", "-o", str(tmp), *(i.tag for i in IMAGES)])
        tmp.rename(archive)
    _prune(keep={archive, wheel_dir})
    return archive


def _prune(keep: set[Path]) -> None:
    """Drop older archives and wheel sets (a few hundred MB each) once a new one exists."""
    for old in [*CACHE.glob("podkit-images-*.tar"), *CACHE.glob("wheels-*")]:
        if old not in keep:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def _docker_build(image: Image, base: str, wheel_dir: Path) -> None:
    """`docker build` with a context holding only the Dockerfile's directory and the wheels."""
    print(f"images: building {image.tag}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(IMAGES_DIR / image.directory, context, dirs_exist_ok=True)
        shutil.copytree(wheel_dir, Path(context) / "wheels")
        argv = ["docker", "build", "--network=none", "--tag", image.tag,
                "--build-arg", f"BASE_IMAGE={base}"]
        for k, v in image.args:
            argv += ["--build-arg", f"{k}={v}"]
        proc = subprocess.run([*argv, context], capture_output=True, text=True,
                              env=dict(os.environ, DOCKER_BUILDKIT="0"))
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise TestbedError(f"docker build of {image.tag} failed:\n{tail}")


def load_into_testbed(archive: Path) -> bool:
    """Import the archive into the running testbed's containerd, unless already there.

    Returns whether it imported. A marker in the testbed's state dir (removed by `down`)
    remembers which archive was imported last.
    """
    bed = Testbed()
    if not bed.proc("containerd").alive():
        raise TestbedError("the testbed's containerd is not running (python -m testbed up)")
    marker = bed.layout.state / "imported-images"
    present = bed.containerd.images()
    if (marker.exists() and marker.read_text() == archive.name
            and all(i.tag in present for i in IMAGES)):
        return False
    bed.containerd.import_archive(archive)
    marker.write_text(archive.name)
    return True


def load_into_docker(archive: Path) -> None:
    """`docker load` the archive unless Docker already has every image (for testcontainers)."""
    if not all(docker.has_image(i.tag) for i in IMAGES):
        host.run(["docker", "load", "-i", str(archive)])


def main(argv: list[str]) -> int:
    if argv not in (["build"], ["build", "--no-load"]):
        print("usage: python -m testbed.images build [--no-load]", file=sys.stderr)
        return 2
    try:
        host.require_root()
        host.ensure_packages(["docker.io", "debootstrap"])
        archive = build_all()
        print(archive)
        if "--no-load" not in argv and Testbed().proc("containerd").alive():
            loaded = load_into_testbed(archive)
            print(f"images: {'imported into' if loaded else 'already in'} the testbed",
                  file=sys.stderr)
    except TestbedError as err:
        print(f"images build: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
