"""The figures of ``make bench-scale`` from what its watchers saw (pure: no cluster).

Each pod's swap is seen twice: when one of its containers first has the new image in its spec
(the operator's first write of that pod's swap) and when the operator recorded it at the new
revision (the finish annotations, no update under way). The status is seen as a series of
``(time, updatedReplicas, batchOrder)`` samples. Batches are the operator's own split
(``podsNumToUpdate`` unset: even, highest ordinals first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from podkit_operator.releases.batches import batch_members, batch_targets, update_order


@dataclass(frozen=True)
class StatusSample:
    at: float
    updated: int
    batch: int
    revision: str  # status.updateRevision: which release the sample is of


def _first(samples: Sequence[StatusSample], after: float, ok: Any) -> float | None:
    return next((s.at for s in samples if s.at >= after and ok(s)), None)


def batch_figures(pods: int, batches: int, release_at: float, started: Mapping[int, float],
                  done: Mapping[int, float], samples: Sequence[StatusSample]
                  ) -> list[dict[str, Any]]:
    """Per batch: ``processing_s`` (its first pod write to its last), ``batch_s`` (its start,
    as the status first names it, the release's start for batch 1, to every pod of it
    updated) and ``status_lag_s`` (its last pod updated to the status counting every pod of
    batches 1..k). Only samples of the release count (the update revision of the last one):
    the status of the release before it names its last batch too. A figure not observed is
    None (a pod never seen updated, a status never seen)."""
    release = samples[-1].revision if samples else None
    samples = [s for s in samples if s.revision == release]
    out = []
    order, targets = update_order(range(pods)), batch_targets(pods, batches)
    for batch in range(1, batches + 1):
        members = batch_members(order, targets, batch)
        counted = targets[batch - 1]
        starts = [started[o] for o in members if o in started]
        finishes = [done[o] for o in members if o in done]
        complete = len(finishes) == len(members)
        last = max(finishes) if complete else None
        begin = release_at if batch == 1 else _first(samples, release_at,
                                                     lambda s, b=batch: s.batch >= b)
        shown = (None if last is None
                 else _first(samples, 0.0, lambda s, c=counted, t=last: s.updated >= c
                             and s.at >= t))
        out.append({
            "batch": batch,
            "pods": len(members),
            "updated": len(finishes),
            "processing_s": _round(last - min(starts)) if last is not None and starts else None,
            "batch_s": _round(last - begin) if last is not None and begin is not None else None,
            "status_lag_s": _round(shown - last) if shown is not None and last is not None
            else None,
        })
    return out


def _round(seconds: float) -> float:
    return round(seconds, 3)


TKEX = {"processing_s": 30.0, "batch_s": 70.0, "status_lag_s": 10.0}  # published, per batch


def table(figures: Sequence[Mapping[str, Any]],
          peer: Sequence[Mapping[str, Any]] = ()) -> str:
    """The batches beside TKEx's published figures (one 10,000-pod StatefulSetPlus in 5
    batches of 2,000), and a peer's batches (OpenKruise's, rows ``kr1``, ``kr2``, ...)."""
    head = f"{'batch':>5} {'pods':>6} {'processing_s':>13} {'batch_s':>9} {'status_lag_s':>13}"
    rows = [head, f"{'TKEx':>5} {2000:>6} {TKEX['processing_s']:>13} {TKEX['batch_s']:>9} "
                  f"{TKEX['status_lag_s']:>13}"]
    for label, f in [(str(f["batch"]), f) for f in figures] + [
            (f"kr{f['batch']}", f) for f in peer]:
        rows.append(f"{label:>5} {f['pods']:>6} {_cell(f['processing_s']):>13} "
                    f"{_cell(f['batch_s']):>9} {_cell(f['status_lag_s']):>13}")
    return "\n".join(rows)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


_REQUEST_TOTAL = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$',
                            re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})


def request_counts(metrics: str) -> dict[str, int]:
    """The requests the apiserver answered so far, by its ``/metrics`` text
    (``apiserver_request_total``, any code): ``writes``, over the verbs that write (``POST``,
    ``PUT``, ``PATCH``, ``DELETE``, ``APPLY``) and any resource; ``pod_lists`` and
    ``pod_watches``, the LISTs and WATCHes of pods (a client whose watch broke lists every pod
    again)."""
    counts = {"writes": 0.0, "pod_lists": 0.0, "pod_watches": 0.0}
    for match in _REQUEST_TOTAL.finditer(metrics):
        labels = dict(_LABEL.findall(match["labels"]))
        verb, value = labels.get("verb"), float(match["value"])
        if verb in WRITE_VERBS:
            counts["writes"] += value
        elif labels.get("resource") == "pods" and not labels.get("subresource"):
            if verb == "LIST":
                counts["pod_lists"] += value
            elif verb == "WATCH":
                counts["pod_watches"] += value
    return {name: int(n) for name, n in counts.items()}


def cpu_share(used: Mapping[str, float], seconds: float, cores: int) -> dict[str, Any]:
    """Where the machine's CPU went over ``seconds``: each process's CPU seconds and
    ``busy``, the share of all ``cores`` they used together (1.0: every core the whole
    time)."""
    return {"by_process_s": {name: round(s, 1) for name, s in used.items()},
            "busy": round(sum(used.values()) / (seconds * cores), 2) if seconds > 0 else None}
