"""``make bench-handover``: hand-overs between two warm slot processes.

Each hand-over is a real A/B swap of :class:`podkit.localpod.LocalPod`: a new ``podkit run
--mode warm`` stands by in the idle slot, the active one gets SIGTERM, says RELEASED and
exits. The gap is from the old business process's release to the new one's activation. The
last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from podkit.localpod import LocalPod

from .intervals import gaps_ms, overlaps, percentile, read_intervals


def run(handovers: int, root: Path) -> dict[str, object]:
    log = root / "events.log"
    pod = LocalPod(root / "pod", lambda slot, version: [
        sys.executable, "-m", "benchmarks.stub", "--log", str(log)], mode="warm")
    try:
        pod.start("v0")
        for n in range(1, handovers + 1):
            pod.swap(f"v{n}")
            if n % 100 == 0:
                print(f"bench-handover: {n}/{handovers}", file=sys.stderr, flush=True)
    finally:
        pod.close()
    intervals = read_intervals(log)
    gaps = gaps_ms(intervals)
    return {
        "handovers": len(gaps),
        "p50_ms": round(percentile(gaps, 50), 3),
        "p99_ms": round(percentile(gaps, 99), 3),
        "max_ms": round(max(gaps), 3) if gaps else None,
        "double_active": overlaps(intervals),
        "mode": "warm",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handovers", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="podkit-bench-") as tmp:
        result = run(args.handovers, Path(tmp))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
