"""What it takes to bring a pod's spec to a target spec: in place, a resize, or a recreate.

Pure. :func:`classify` compares the pod spec the API returns with the spec podkit would build
for the target revision, field by field, and sorts every difference into one of three kinds:

- **in place**: a container's image (any cluster); env, envFrom and volumeMounts of a container,
  a pod volume added or switching its source within the same type (only on a patched cluster:
  apiserver-patches 0002 allows them on opted-in pods, 0003 makes the kubelet restart the
  container); a pod's labels and annotations are always patched and are not classified here;
- **resize**: cpu or memory requests/limits changing value (the ``pods/resize`` subresource,
  which also works on a stock cluster with in-place pod resize);
- **recreate**: anything else (a port, a command, a probe, a container added or removed, a
  volume removed or changing its type, a resource added or removed, which changes the QoS
  class), and the in-place kinds on a stock cluster. The reason says which field.

The API adds defaults to what it stores (``protocol: TCP``, ``defaultMode``, a probe's
``timeoutSeconds``, the service-account token volume and its mount), so a field counts as
equal when the pod's value *covers* the wanted one (:func:`covers`: every key the target sets
has the same value; lists match element by element), and the token volume is ignored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

from podkit.sidecar import TOKEN_ENV as SIDECAR_TOKEN_ENV

IN_PLACE_CONTAINER_FIELDS = ("env", "envFrom", "volumeMounts")  # on a patched cluster only
RESIZABLE = ("cpu", "memory")
# container fields a user sets that the API never adds by itself: present on the pod but not in
# the target means the target removed it
USER_FIELDS = ("command", "args", "ports", "env", "envFrom", "volumeMounts", "livenessProbe",
               "readinessProbe", "startupProbe", "lifecycle", "workingDir")
TOKEN_VOLUME_PREFIX = "kube-api-access-"
TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# env a pod is created with that no revision carries: the sidecar's bearer token (per pod)
POD_OWN_ENV = (SIDECAR_TOKEN_ENV,)
# pod fields podkit or the API sets per pod, never compared with the template's (the API adds
# default tolerations to the list, and admission sets priority from priorityClassName)
POD_OWN_FIELDS = ("containers", "volumes", "hostname", "subdomain", "nodeName", "tolerations",
                  "priority")
_SUFFIXES: dict[str, int | Fraction] = {
    "": 1, "m": Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
    "Ei": 2**60}
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")

@dataclass(frozen=True)
class SpecDiff:
    """The differences between a pod and its target, by what it takes to remove them.

    Each entry is a readable phrase (``container web-a env``); ``resize`` holds the wanted
    ``resources`` of each container to resize, by container name."""

    in_place: tuple[str, ...] = ()
    resize: Mapping[str, dict[str, Any]] | None = None
    recreate: tuple[str, ...] = ()

    @property
    def needs_recreate(self) -> bool:
        return bool(self.recreate)

    @property
    def needs_resize(self) -> bool:
        return bool(self.resize)

    @property
    def empty(self) -> bool:
        return not (self.in_place or self.resize or self.recreate)

    def recreate_reason(self) -> str:
        return "cannot change in place: " + ", ".join(self.recreate)


def covers(have: Any, want: Any) -> bool:
    """``have`` (as the API returns it) holds every value ``want`` sets."""
    if have == want:  # most fields of most pods: no walk
        return True
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(covers(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return (isinstance(have, list) and len(have) == len(want)
                and all(covers(h, w) for h, w in zip(have, want, strict=True)))
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return have == want
    return bool(have == want)


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def pod_own_entries(key: str, items: Any) -> list[Any]:
    """The entries of a container's ``key`` list that belong to the pod, not to a revision:
    the service-account token mount the API adds, the sidecar's token env."""
    if key == "volumeMounts":
        return [m for m in items or [] if m.get("mountPath") == TOKEN_MOUNT]
    if key == "env":
        return [e for e in items or [] if e.get("name") in POD_OWN_ENV]
    return []


def _container_field(have: Mapping[str, Any], key: str) -> Any:
    value = have.get(key)
    if key in ("volumeMounts", "env") and value:
        own = pod_own_entries(key, value)
        return [item for item in value if item not in own]
    return value


@functools.lru_cache(maxsize=1024)
def _parsed_quantity(text: str) -> Fraction | str:
    m = _QUANTITY_RE.match(text.strip())
    if m is None or m.group(2) not in _SUFFIXES:
        return text
    try:
        return Fraction(m.group(1)) * _SUFFIXES[m.group(2)]
    except ValueError:
        return text


def quantity(value: Any) -> Fraction | str:
    """A resource quantity as a number (``0.5`` and ``500m`` are the same CPU, ``1Gi`` and
    ``1024Mi`` the same memory: the API stores them canonically); unparsable: as given.
    A pass compares the same few quantities of every pod: each is parsed once."""
    return _parsed_quantity(str(value))


def same_resources(have: Any, want: Any) -> bool:
    """``have`` (a spec's or a container status's resources) equals every request and limit
    ``want`` sets, compared as quantities."""
    have, want = have or {}, want or {}
    return all(quantity((have.get(part) or {}).get(k, "")) == quantity(v)
               for part in ("requests", "limits") for k, v in (want.get(part) or {}).items())


def _resources_kind(have: Any, want: Any) -> str:
    """``same``, ``resize`` (cpu/memory values only) or ``recreate`` (a resource added or
    removed, or one that is not cpu/memory changed)."""
    have, want = have or {}, want or {}
    if same_resources(have, want) and same_resources(want, have):
        return "same"
    for part in ("requests", "limits"):
        h, w = have.get(part) or {}, want.get(part) or {}
        if set(h) != set(w):
            return "recreate"
        if any(quantity(h[k]) != quantity(w[k]) for k in h if k not in RESIZABLE):
            return "recreate"
    if any(k not in ("requests", "limits") for k in {*have, *want} if not _empty(
            have.get(k)) or not _empty(want.get(k))):
        return "recreate"
    return "resize"


def _compare_container(have: Mapping[str, Any], want: Mapping[str, Any], patched: bool,
                       ignore: Iterable[str], out: _Collector) -> None:
    name = want["name"]
    skip = set(ignore) | {"name", "resources"}
    for key in sorted({*want, *(k for k in USER_FIELDS if not _empty(have.get(k)))} - skip):
        h, w = _container_field(have, key), _container_field(want, key)
        if _empty(w) and _empty(h):
            continue
        if covers(h, w) and (not _empty(w) or _empty(h)):
            continue
        what = f"container {name} {key}"
        if key == "image":
            out.in_place.append(what)
        elif key in IN_PLACE_CONTAINER_FIELDS:
            (out.in_place if patched else out.recreate).append(
                what if patched else f"{what} (needs the patched apiserver)")
        else:
            out.recreate.append(what)
    kind = _resources_kind(have.get("resources"), want.get("resources"))
    if kind == "resize":
        out.resize[name] = dict(want.get("resources") or {})
    elif kind == "recreate":
        out.recreate.append(f"container {name} resources (QoS or a resource added/removed)")


def _volume_type(volume: Mapping[str, Any]) -> str | None:
    return next((k for k in volume if k != "name"), None)


def _compare_volumes(have: Iterable[Mapping[str, Any]], want: Iterable[Mapping[str, Any]],
                     patched: bool, out: _Collector) -> None:
    have_by = {v["name"]: v for v in have if not v["name"].startswith(TOKEN_VOLUME_PREFIX)}
    want_by = {v["name"]: v for v in want}
    for name in sorted(set(have_by) - set(want_by)):
        out.recreate.append(f"volume {name} removed")
    for name in sorted(want_by):
        w, h = want_by[name], have_by.get(name)
        if h is not None and covers(h, w):
            continue
        if h is not None and _volume_type(h) != _volume_type(w):
            out.recreate.append(f"volume {name} changes its type")
        elif patched:
            out.in_place.append(f"volume {name}")
        else:
            out.recreate.append(f"volume {name} (needs the patched apiserver)")


@dataclass
class _Collector:
    in_place: list[str]
    resize: dict[str, dict[str, Any]]
    recreate: list[str]


def classify(have: Mapping[str, Any], want: Mapping[str, Any], patched: bool,
             ignore: Mapping[str, Iterable[str]] | None = None) -> SpecDiff:
    """The differences between pod spec ``have`` and target pod spec ``want``.

    ``ignore``: container fields the caller drives itself, by container name (a swap moves the
    slots' images on its own schedule)."""
    out = _Collector([], {}, [])
    have_c = {c["name"]: c for c in have.get("containers") or []}
    want_c = {c["name"]: c for c in want.get("containers") or []}
    for name in sorted(set(have_c) - set(want_c)):
        out.recreate.append(f"container {name} removed")
    for name in sorted(set(want_c) - set(have_c)):
        out.recreate.append(f"container {name} added")
    for name in sorted(set(have_c) & set(want_c)):
        _compare_container(have_c[name], want_c[name], patched, (ignore or {}).get(name, ()),
                           out)
    _compare_volumes(have.get("volumes") or [], want.get("volumes") or [], patched, out)
    for key in sorted(set(want) - set(POD_OWN_FIELDS)):
        found = have.get(key)
        if key == "initContainers":  # the API mounts the token into them too
            found = [{**c, "volumeMounts": _container_field(c, "volumeMounts")}
                     for c in found or []]
        if not covers(found, want[key]):
            out.recreate.append(f"pod {key}")
    return SpecDiff(tuple(out.in_place), out.resize or None, tuple(out.recreate))


T = TypeVar("T")


class DiffMemo:
    """The comparisons of a release loop's passes, kept from one pass to the next.

    A pod's comparison with a target depends only on the pod's spec (its ``resourceVersion``
    changes with every write) and on what is wanted of it (the target revision, named by
    ``key``, and the pass's ``scope``: the parsed spec and the cluster's patch). During a
    batch of 2,000 pods most pods do not change between two passes, so each pass compares
    only the pods that did. Entries of the pass before the last are dropped, so the memo
    holds at most two passes' comparisons; a pod without uid or resourceVersion (not read
    from the API) is compared every time."""

    def __init__(self) -> None:
        self._scope: Hashable = None
        self._now: dict[tuple[str, str, Hashable], Any] = {}
        self._last: dict[tuple[str, str, Hashable], Any] = {}

    def begin(self, scope: Hashable) -> None:
        """A new pass with ``scope``: what an earlier pass of another scope found is dropped."""
        if scope != self._scope:
            self._scope, self._now, self._last = scope, {}, {}
        else:
            self._now, self._last = {}, self._now

    def diff(self, pod: Mapping[str, Any], key: Hashable, compare: Callable[[], T]) -> T:
        """``compare()``'s answer for ``pod`` and ``key``, from this or the last pass when the
        pod has not changed since."""
        meta = pod.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        if not (uid and version):
            return compare()
        entry = (uid, version, key)
        if entry in self._now:
            return self._now[entry]
        found = self._last.pop(entry) if entry in self._last else compare()
        self._now[entry] = found
        return found


def compared(memo: DiffMemo | None, pod: Mapping[str, Any], key: Hashable,
             compare: Callable[[], T]) -> T:
    """``compare()`` through ``memo`` when there is one."""
    return compare() if memo is None else memo.diff(pod, key, compare)
