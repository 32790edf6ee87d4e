"""A run's plan, from its seed alone: the release, its pods and batches, and the faults.

Pure, so the same seed gives the same run (``make chaos SEED=n`` replays one).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

V1 = "podkit.local/podkit-demo:v1"
V2 = "podkit.local/podkit-demo:v2"
# the kwok stages of the testbed (tools/testbed/kwok/pod-stages.yaml): an image naming
# "crash-after-8s" crashes 8 s after it starts, one naming "broken" never starts
CRASHING = "podkit.local/podkit-demo:v2-crash-after-8s"
BROKEN = "podkit.local/podkit-demo:v2-broken"

# image: a new image; env: a new env value (in place); crash / broken: a bad version that
# must stop in batch 1 and swap back; rollback: a good release rolled back with the one-key
# annotation midway; scale: replicas change while the release runs
KINDS = ("image", "env", "crash", "broken", "rollback", "scale")
FAULTS = ("operator-kill", "operator-partition", "apiserver-restart", "etcd-restart",
          "pod-delete", "node-lost")
# how long a killed operator stays down, or a cut-off one stays cut off (its Lease is lost
# after 10 s without a renewal, so both sides of that are drawn)
OUTAGE_S = {"operator-kill": (0.0, 4.0), "operator-partition": (2.0, 16.0)}
BAD_KINDS = ("crash", "broken")
# the soak: longer than the 8 s to the crash, so the crash is caught in batch 1
MIN_READY_S = 10
BATCH_DEADLINE_S = 40
ENV_NAME = "CHAOS_RELEASE"


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float  # seconds after the release started
    pick: int  # which pod or node it hits (modulo what exists)
    outage_s: float  # how long a killed operator stays down, or a cut one cut (OUTAGE_S)


@dataclass(frozen=True)
class Scenario:
    seed: int
    kind: str
    replicas: int
    batches: int
    faults: tuple[Fault, ...]
    pod_management: str  # podManagementPolicy: "Parallel" or "OrderedReady"
    scale_to: int | None  # kind "scale": the replicas set during the release
    steer_at_s: float | None  # kinds "rollback" and "scale": when the annotation or the
    # new replicas are set

    @property
    def bad(self) -> bool:
        """A bad version: the release must fail in batch 1 and every pod end at v1."""
        return self.kind in BAD_KINDS

    @property
    def may_fail(self) -> bool:
        """A good release that may end Failed: a lost node's pods can change no more, so a
        batch with one of them fails at its deadline (``maxFailedPercent`` is 0)."""
        return not self.bad and any(f.kind == "node-lost" for f in self.faults)

    @property
    def target_image(self) -> str:
        """The image of the release (kind "env" keeps v1 and changes an env value)."""
        return {"crash": CRASHING, "broken": BROKEN, "env": V1}.get(self.kind, V2)

    @property
    def final_replicas(self) -> int:
        return self.scale_to if self.scale_to is not None else self.replicas

    @property
    def release_env(self) -> dict[str, str]:
        """The env the release gives the business container (kind "env": ``CHAOS_RELEASE``)."""
        return {ENV_NAME: str(self.seed)} if self.kind == "env" else {}

    @property
    def final_image(self) -> str:
        """What every pod serves at the end."""
        if self.bad or self.kind in ("env", "rollback"):
            return V1
        return V2


def scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    kind = rng.choice(KINDS)
    replicas = rng.randint(3, 12)
    batches = rng.randint(1, min(4, replicas))
    if kind in BAD_KINDS:
        batches = max(batches, 2)  # a batch beyond the first, that the bad version never reaches
    faults = tuple(sorted((fault(rng) for _ in range(rng.randint(1, 3))), key=lambda f: f.at_s))
    return Scenario(
        seed=seed, kind=kind, replicas=replicas, batches=batches, faults=faults,
        pod_management=rng.choice(("Parallel", "OrderedReady")),
        scale_to=rng.randint(2, 14) if kind == "scale" else None,
        steer_at_s=round(rng.uniform(1, 15), 1) if kind in ("rollback", "scale") else None)


def fault(rng: random.Random) -> Fault:
    kind = rng.choice(FAULTS)
    low, high = OUTAGE_S.get(kind, (0.0, 0.0))
    return Fault(kind, round(rng.uniform(0, 25), 1), rng.randrange(1000),
                 round(rng.uniform(low, high), 1))
