"""Image references compared the way the container runtime sees them.

The kubelet reports a container's image in its status as the runtime resolved it
(``docker.io/library/nginx:latest`` for a spec that said ``nginx``), so the swap logic compares
normalised references, never raw strings.
"""

from __future__ import annotations

from functools import lru_cache

DEFAULT_DOMAIN = "docker.io"
_DOCKER_ALIASES = ("index.docker.io", "registry-1.docker.io")


def _split_domain(name: str) -> tuple[str, str]:
    """Split ``name`` (no tag, no digest) into registry domain and repository path."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain in _DOCKER_ALIASES:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


@lru_cache(maxsize=4096)  # called per container per pod per reconcile
def normalize_image(ref: str) -> str:
    """Return the fully qualified form of an image reference.

    ``nginx`` -> ``docker.io/library/nginx:latest``; ``podkit.local/demo`` ->
    ``podkit.local/demo:latest``; a digest is kept (``name@sha256:...``) and a reference that
    names a digest only gets no ``:latest``, because the digest alone identifies the image.
    """
    ref = ref.strip()
    name, at, digest = ref.partition("@")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a colon after the last slash is a tag, before it a registry port
        name, tag = name[:colon], name[colon + 1:]
    domain, path = _split_domain(name)
    out = f"{domain}/{path}"
    if tag:
        out += f":{tag}"
    elif not at:
        out += ":latest"
    if at:
        out += f"@{digest}"
    return out


def same_image(a: str | None, b: str | None) -> bool:
    """True when both references name the same image (after normalisation); None never matches."""
    if not a or not b:
        return False
    return normalize_image(a) == normalize_image(b)


def image_tag(ref: str) -> str:
    """The tag of a reference (``latest`` when none), or its digest when it names only a digest."""
    norm = normalize_image(ref)
    name, at, digest = norm.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[colon + 1:]
    return digest if at else "latest"


def digest_of(ref: str | None) -> str | None:
    """The digest a reference pins (``sha256:...`` after an ``@``), None when it pins none.

    Also reads an image ID as the kubelet reports it (``repo@sha256:...``, ``sha256:...``, or
    with a ``docker-pullable://`` scheme): its digest."""
    if not ref:
        return None
    ref = ref.strip().split("://", 1)[-1]
    if "@" in ref:
        return ref.rpartition("@")[2] or None
    return ref if ref.startswith("sha256:") else None


def runs_reference(status_image: str | None, image_id: str | None, ref: str | None) -> bool:
    """A container status names the image of ``ref``: by reference, or by the digest ``ref``
    pins (containerd reports an image's *first* repo tag as ``image``, so a digest-pinned or
    retagged reference rarely comes back as it was written; the image ID's digest does)."""
    if same_image(status_image, ref):
        return True
    pinned = digest_of(ref) if ref and "@" in ref else None
    return pinned is not None and digest_of(image_id) == pinned
