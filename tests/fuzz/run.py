"""``make fuzz``: every target of ``fuzz_targets`` for a time budget, random inputs.

``FUZZ_SECONDS`` (default 300) is shared evenly by the targets; ``FUZZ_SEED`` fixes the
random inputs (default: a fresh seed, printed). Each target runs in rounds of hypothesis
examples until its share is spent; a crash is shrunk by hypothesis to its smallest input and
recorded (target, exception, input), and that target goes on fuzzing. The last line of
stdout is one JSON object: ``seconds``, ``seed``, ``targets`` (per target ``inputs`` tried
and ``crashes`` found), ``inputs``, ``crashes`` (the list). Exit status 1 if anything crashed.
An input that takes over 10 s is a crash (a hang), and so is a ``MemoryError`` under the run's
4 GiB address-space cap.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import time
import warnings
from typing import Any

from fuzz_targets import TARGETS, Target
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import HypothesisWarning

# Examples per round: small enough that a target overshoots its share by little.
ROUND_EXAMPLES = 500
# One input that takes this long is a hang, recorded as a crash (``Hang``); the address space
# is capped so that a parser's unbounded allocation is a crash (``MemoryError``), not an OOM.
HANG_S = 10.0
MEMORY_BYTES = 4 << 30


class Hang(Exception):
    """A parser spent HANG_S on one input."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang(f"one input took over {HANG_S:g} s")


def fuzz(target: Target, seconds: float, rng: random.Random) -> tuple[int, list[dict[str, Any]]]:
    """Inputs tried and the distinct crashes found (one per exception type and place)."""
    tried = 0
    crashes: dict[str, dict[str, Any]] = {}

    def check(example: object) -> None:
        nonlocal tried
        tried += 1
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            target.check(example)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = settings(max_examples=ROUND_EXAMPLES, database=None, deadline=None,
                       suppress_health_check=list(HealthCheck))(given(target.strategy)(check))
        try:
            seed(rng.getrandbits(64))(run)()
        except Exception as exc:  # noqa: BLE001 (a crash of the parser: recorded, go on)
            for one in _flat(exc):
                crash = _describe(target, one)
                crashes.setdefault(f"{crash['error']}@{crash['where']}", crash)
    return tried, list(crashes.values())


def _flat(exc: BaseException) -> list[BaseException]:
    """Hypothesis raises an ExceptionGroup when one round finds several distinct failures."""
    if isinstance(exc, BaseExceptionGroup):
        return [one for sub in exc.exceptions for one in _flat(sub)]
    return [exc]


def _describe(target: Target, exc: BaseException) -> dict[str, Any]:
    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    place = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else "?"
    example = [note for note in getattr(exc, "__notes__", []) if "example=" in note]
    return {"target": target.name, "error": type(exc).__name__, "message": str(exc)[:300],
            "where": os.path.relpath(place), "input": " ".join(example)[:1000]}


def main() -> int:
    warnings.filterwarnings("ignore", category=HypothesisWarning)  # reprs of big strategies
    signal.signal(signal.SIGALRM, _on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    seconds = float(os.environ.get("FUZZ_SECONDS", "300"))
    run_seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().getrandbits(32))
    rng = random.Random(run_seed)
    share = seconds / len(TARGETS)
    print(f"fuzzing {len(TARGETS)} targets for {seconds:g} s, seed {run_seed}", flush=True)
    per_target: dict[str, dict[str, int]] = {}
    crashes: list[dict[str, Any]] = []
    for target in TARGETS:
        tried, found = fuzz(target, share, rng)
        per_target[target.name] = {"inputs": tried, "crashes": len(found)}
        crashes += found
        print(f"  {target.name}: {tried} inputs, {len(found)} crashes", flush=True)
        for crash in found:
            print(f"    {crash['error']} at {crash['where']}: {crash['message']}\n"
                  f"    {crash['input']}", flush=True)
    print(json.dumps({"seconds": seconds, "seed": run_seed, "targets": per_target,
                      "inputs": sum(t["inputs"] for t in per_target.values()),
                      "crashes": crashes}))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
