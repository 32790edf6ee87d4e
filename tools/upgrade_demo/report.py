"""The demo's report: one record per method and path, as JSON and as a terminal table.

A record joins the TCP and UDP streams of one path: ``sent`` and ``lost`` add up, ``max_gap_ms``
and ``p99_ms`` are the worse of the two (each protocol's own figures are kept under ``protocols``).
Figures cover the requests due from the upgrade's start to the end of the run;
``baseline_max_gap_ms`` is the same gap measured before the upgrade began, the noise floor of the
machine and the probe, so a reader can tell the upgrade's jitter from the machine's;
``lost_by_reason`` counts the lost requests by the prober's reason (``timeout``, an errno name such
as ``ECONNREFUSED``, ``closed``); ``handover_gap_ms`` is the gap just before the new version's
first reply (the hand-over, or the restart, itself), where ``max_gap_ms`` is the worst anywhere in
the upgrade.

Beside them, the prober's own part, so that no figure is read as the service's that is the
prober's: ``send_lateness_p99_ms`` and ``send_lateness_max_ms`` (how long after they were due
the path's requests left, during the upgrade; ``baseline_send_lateness_max_ms`` before it), and
the prober process's CPU time over the method's whole run, every stream together
(``prober_cpu_percent`` of one core, ``prober_cpu_us_per_request``, user+sys from its rusage;
``prober_realtime`` whether it ran at real-time priority).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from podkit.files import atomic_write
from upgrade_demo.probe_stats import Window, answering_versions, figures, handover_gap_ms
from upgrade_demo.run import PROTOCOLS, MethodRun

TARGETS = {"method": "abswap", "path": "pod-ip", "max_gap_ms": 2.0, "lost": 0,
           "state_intact": True}


def records(run: MethodRun) -> list[dict[str, Any]]:
    """The report's records of one method: one per path."""
    upgrade = Window(run.upgrade_ns)
    baseline = Window(run.started_ns, run.upgrade_ns)
    out = []
    for path in run.paths:
        per_proto = {proto: figures(run.streams[path, proto], upgrade) for proto in PROTOCOLS}
        base = [figures(run.streams[path, proto], baseline) for proto in PROTOCOLS]
        out.append({
            "method": run.method.name,
            "path": path,
            "max_gap_ms": max(f.max_gap_ms for f in per_proto.values()),
            "p99_ms": max(f.p99_ms for f in per_proto.values()),
            "lost": sum(f.lost for f in per_proto.values()),
            "sent": sum(f.sent for f in per_proto.values()),
            "lost_by_reason": dict(sum((Counter(f.lost_by_reason) for f in per_proto.values()),
                                       Counter())),
            "state_intact": run.state_intact,
            "baseline_max_gap_ms": max(f.max_gap_ms for f in base),
            "send_lateness_p99_ms": max(f.lateness_p99_ms for f in per_proto.values()),
            "send_lateness_max_ms": max(f.lateness_max_ms for f in per_proto.values()),
            "baseline_send_lateness_max_ms": max(f.lateness_max_ms for f in base),
            "prober_cpu_percent": run.prober.cpu_percent,
            "prober_cpu_us_per_request": run.prober.cpu_us_per_request,
            "prober_realtime": run.prober.realtime,
            "handover_gap_ms": _worst([handover_gap_ms(run.streams[path, proto])
                                       for proto in PROTOCOLS]),
            "upgrade_s": round((run.done_ns - run.upgrade_ns) / 1e9, 2),
            "versions": answering_versions(run.streams[path, "tcp"]),
            "protocols": {proto: asdict(f) for proto, f in per_proto.items()},
            "label": run.method.label,
        })
    return out


def _worst(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def target_met(rows: list[dict[str, Any]]) -> bool | None:
    """Whether the A/B swap's pod-IP record meets the targets (None: it was not run)."""
    for row in rows:
        if row["method"] == TARGETS["method"] and row["path"] == TARGETS["path"]:
            return (row["max_gap_ms"] <= TARGETS["max_gap_ms"] and row["lost"] == TARGETS["lost"]
                    and row["state_intact"] is TARGETS["state_intact"])
    return None


def write_json(rows: list[dict[str, Any]], path: Path, context: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**context, "targets": TARGETS, "targets_met": target_met(rows), "records": rows}
    atomic_write(path, (json.dumps(body, indent=2) + "\n").encode())


def table(rows: list[dict[str, Any]]) -> str:
    """The records as aligned text columns."""
    head = ("method", "path", "max gap ms", "hand-over gap ms", "p99 ms", "lost", "sent",
            "state intact", "baseline gap ms", "send late max ms", "prober cpu %", "upgrade s")
    lines = [head] + [(r["method"], r["path"], f"{r['max_gap_ms']:.2f}",
                       "-" if r["handover_gap_ms"] is None else f"{r['handover_gap_ms']:.2f}",
                       f"{r['p99_ms']:.2f}", str(r["lost"]), str(r["sent"]),
                       "yes" if r["state_intact"] else "no",
                       f"{r['baseline_max_gap_ms']:.2f}", f"{r['send_lateness_max_ms']:.2f}",
                       f"{r['prober_cpu_percent']:.1f}", f"{r['upgrade_s']:.1f}")
                      for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths)))
                     for line in lines)
