"""A versioned copy of a released ConfigMap, and how its name carries its content hash.

The copy is named ``<source>-<first 10 hex of the content hash>``: the operator makes it
(:mod:`podkit_operator.configreleases`) and the in-place config step checks the sidecar's
report against the hash in the name (:mod:`podkit_operator.inplace.config`).
"""

from __future__ import annotations

from dataclasses import dataclass

NAME_HASH_CHARS = 10


@dataclass(frozen=True)
class ConfigCopy:
    """A versioned copy of a released ConfigMap, as listed from the API."""

    name: str
    source: str
    version: int
    hash: str


def copy_name(source: str, content_hash: str) -> str:
    """``<source>-<first 10 hex of the content hash>``."""
    return f"{source}-{content_hash[:NAME_HASH_CHARS]}"


def name_hash(name: str) -> str:
    """The content hash prefix a copy's name carries."""
    return name[-NAME_HASH_CHARS:]
