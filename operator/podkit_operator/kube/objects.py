"""Generic readers of API objects as plain dicts (pods mostly), and times as the API writes them.

Pure: they take what the API returned and never call it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def rfc3339(t: datetime) -> str:
    """UTC time as Kubernetes writes it (second precision, ``Z``)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 time (``Z`` or an offset); None when absent or malformed."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    """The object's annotations (empty when it has none)."""
    return (obj.get("metadata") or {}).get("annotations") or {}


def terminating(obj: dict[str, Any]) -> bool:
    """The object carries a deletion timestamp: it is going away."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def deletion_overdue_at(obj: dict[str, Any]) -> datetime | None:
    """When a deletion under way is overdue: ``deletionTimestamp`` (the API sets it to the
    request time plus the grace period) plus the grace period once more; None when not
    deleting. A pod still there by then has a kubelet that does not answer (a dead node)."""
    meta = obj.get("metadata") or {}
    when = parse_time(meta.get("deletionTimestamp"))
    if when is None:
        return None
    return when + timedelta(seconds=int(meta.get("deletionGracePeriodSeconds") or 0))


def container_spec(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The pod's container ``name`` as its spec gives it (empty when absent)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == name:
            return c
    return {}


def container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The status the kubelet reports for container ``name`` (empty when none yet)."""
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c.get("name") == name:
            return c
    return {}


def pod_ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def available_at(pod: dict[str, Any], min_ready_s: int) -> datetime | None:
    """When the pod is (or becomes) available, a StatefulSet's sense: Running, Ready, and
    Ready for ``min_ready_s`` since its Ready condition last turned True; None while it is
    not Running and Ready."""
    if (pod.get("status") or {}).get("phase") != "Running" or not pod_ready(pod):
        return None
    ready = next(c for c in pod["status"]["conditions"] if c.get("type") == "Ready")
    since = parse_time(ready.get("lastTransitionTime"))
    if since is None:
        return datetime.min.replace(tzinfo=UTC) if min_ready_s == 0 else None
    return since + timedelta(seconds=min_ready_s)


def all_containers_ready(pod: dict[str, Any]) -> bool:
    """Every container of the pod's spec reports ready."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    names = {c.get("name") for c in (pod.get("spec") or {}).get("containers") or []}
    seen = {s.get("name") for s in statuses if s.get("ready")}
    return bool(statuses) and names <= seen


def container_id(status: dict[str, Any]) -> str:
    """The ID of the container a status is about: the running or waiting one's, else the one
    that last terminated (a container waiting to restart reports only that); "" when none."""
    last = ((status.get("lastState") or {}).get("terminated") or {}).get("containerID")
    return str(status.get("containerID") or last or "")


def running_fingerprint(status: dict[str, Any]) -> str | None:
    """What identifies one run of a container: its ID, restart count and start time (any
    restart changes it); None unless it is running."""
    running = (status.get("state") or {}).get("running")
    if running is None:
        return None
    return (f"{status.get('name')}|{status.get('containerID', '')}|{status.get('restartCount', 0)}|"
            f"{running.get('startedAt', '')}")
