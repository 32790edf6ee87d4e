"""The API side of a config release: the copies of a pass, their GC, and the ConfigMap watch.

The StatefulSetPlus reconcile pass calls :func:`resolve_copies` before it hashes the template
and :func:`collect_garbage` after it wrote the plan; an edit of a released ConfigMap wakes the
release loops of the StatefulSetPlus that release it (:func:`configmap_changed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kopf

from ..api.configcopy import ConfigCopy, copy_name
from ..api.statefulsetplus import SpecError, StsPlusSpec
from ..context import OperatorContext, context_of, namespace_of
from ..kube.client import KubeIO
from ..revisions.revision import CurrentAndUpdate
from .copies import (
    data_hash,
    newest,
    next_version,
    owners_with,
    parse_copy,
    referenced,
    to_delete,
    versioned_copy,
    with_copies,
)


def released_template(context: OperatorContext, stsp: dict[str, Any], spec: StsPlusSpec,
                      template: dict[str, Any]) -> tuple[dict[str, Any], ReleasedCopies]:
    """The template of StatefulSetPlus ``stsp`` as its revision is hashed, and the copies.

    Records the object as a user of its released ConfigMaps (an edit of one wakes its loop).
    On a patched cluster the template mounts each one's current copy, and every copy of them
    is returned by name; on a stock cluster the template is left as it is and there are none."""
    namespace, name = stsp["metadata"]["namespace"], stsp["metadata"]["name"]
    for source in spec.config_maps:
        context.config_users.setdefault((namespace, source), set()).add(name)
    if not (spec.config_maps and context.patched):
        return template, ReleasedCopies({}, ())
    current, copies = resolve_copies(context.io, stsp, spec)
    return with_copies(template, current), copies


@dataclass(frozen=True)
class ReleasedCopies:
    """Every copy of the released ConfigMaps by name, and the sources that are gone (their
    newest copy stays released until the source is back)."""

    by_name: dict[str, ConfigCopy]
    missing: tuple[str, ...]


def resolve_copies(io: KubeIO, stsp: dict[str, Any],
                   spec: StsPlusSpec) -> tuple[dict[str, str], ReleasedCopies]:
    """Make sure each released ConfigMap's current content has its copy, owned by ``stsp``.

    Returns ``{source: copy name of its current content}`` and the copies. A source that is
    gone keeps its newest copy (pods go on mounting it; a condition says so); only a source
    that never had a copy is a :class:`SpecError`."""
    namespace = stsp["metadata"]["namespace"]
    current: dict[str, str] = {}
    copies: dict[str, ConfigCopy] = {}
    missing: list[str] = []
    for source in spec.config_maps:
        configmap = io.get_configmap(namespace, source)
        raw = io.list_config_copies(namespace, source)
        listed = [c for c in (parse_copy(cm) for cm in raw)
                  if c is not None and c.source == source]
        for cm in raw:
            if (owners := owners_with(cm, stsp)) is not None:
                io.set_configmap_owners(namespace, cm["metadata"]["name"], owners)
        copies.update({c.name: c for c in listed})
        if configmap is None:
            last = newest(listed)
            if last is None:
                raise SpecError(f"ConfigMap {namespace}/{source} (spec.configMaps) does not "
                                "exist; create it")
            missing.append(source)
            current[source] = last.name
            continue
        content = data_hash(configmap)
        name = copy_name(source, content)
        if all(c.name != name for c in listed):  # the same data never makes a second copy
            made = ConfigCopy(name, source, next_version(listed), content)
            io.create_configmap(namespace, versioned_copy(configmap, content, made.version,
                                                          stsp))
            copies[name] = made
        current[source] = name
    return current, ReleasedCopies(copies, tuple(missing))


def collect_garbage(io: KubeIO, namespace: str, spec: StsPlusSpec, revisions: CurrentAndUpdate,
                    pods: Iterable[dict[str, Any]], logger: kopf.Logger) -> list[str]:
    """Delete the copies beyond ``spec.configHistoryLimit`` per source, never one that a pod
    of the namespace mounts (another StatefulSetPlus may release the same ConfigMap) or that
    the current, update or previous revision names. Returns the names deleted."""
    in_use = referenced([r.template.get("spec") or {} for r in revisions.in_use])
    in_use |= referenced([p.get("spec") or {} for p in pods])
    doomed = to_delete(revisions.copies.values(), spec.config_history_limit, in_use)
    if doomed:  # only then is the namespace's every pod worth a list
        in_use |= referenced([p.get("spec") or {} for p in io.list_namespace_pods(namespace)])
        doomed = [name for name in doomed if name not in in_use]
    for name in doomed:
        io.delete_configmap(namespace, name)
        logger.info("config GC: deleted %s/%s", namespace, name)
    return doomed


@kopf.on.event("", "v1", "configmaps")
async def configmap_changed(namespace: str | None, name: str, memo: kopf.Memo,
                            **_: Any) -> None:
    """An edit of a released ConfigMap starts a config release: wake its StatefulSetPlus."""
    context, namespace = context_of(memo), namespace_of(namespace)
    for stsp_name in context.config_users.get((namespace, name), ()):
        context.wake(namespace, stsp_name)
