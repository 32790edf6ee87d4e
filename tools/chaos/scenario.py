"""A run's plan, from its mode and seed alone: the release, its pods and batches, the faults.

Pure, so the same seed gives the same run (``make chaos SEED=n`` replays one). Two modes:
``kwok`` (an API-only cluster: many pods, kwok plays the kubelet) and ``kubelet`` (the full
testbed: the demo service's real processes swapped by the real kubelet and containerd, so the
faults reach processes and the checker probes every pod).
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
# kubelet mode: crash is v2 exiting N s after it took over (the demo's failure switch, in the
# template from the start; 0 is at takeover); crash-start an env release whose value makes
# the business exit as it starts (an unreadable PODKIT_DEMO_STATE_MB)
KUBELET_KINDS = ("image", "env", "crash", "crash-start", "rollback")
# one real node: no node-lost; the processes' own faults instead
KUBELET_FAULTS = ("operator-kill", "operator-partition", "apiserver-restart", "etcd-restart",
                  "pod-delete", "kubelet-restart", "containerd-restart", "active-kill",
                  "standby-kill")
CRASH_LATER_S = (5, 8)  # kubelet mode: a crash after takeover, inside the soak
# how long a killed operator stays down, or a cut-off one stays cut off (its Lease is lost
# after 10 s without a renewal, so both sides of that are drawn)
OUTAGE_S = {"operator-kill": (0.0, 4.0), "operator-partition": (2.0, 16.0)}
BAD_KINDS = ("crash", "broken", "crash-start")
CRASH_START_ENV = {"PODKIT_DEMO_STATE_MB": "not-a-number"}
# the soak: longer than the 8 s to the crash, so the crash is caught in batch 1
MIN_READY_S = 10
BATCH_DEADLINE_S = {"kwok": 40,
                    # a real pod deleted mid-batch is made again, starts its three containers,
                    # swaps and soaks 10 s: about 30 s on a loaded 2-core node (seed 2)
                    "kubelet": 120}
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
    mode: str = "kwok"  # "kwok" or "kubelet"
    crash_after_s: int | None = None  # kubelet mode, kind "crash": v2 exits this long after
    # it took over

    @property
    def bad(self) -> bool:
        """A bad version: the release must fail in batch 1 and every pod end at v1."""
        return self.kind in BAD_KINDS

    @property
    def may_fail(self) -> bool:
        """A good release that may end Failed (``maxFailedPercent`` is 0): a lost node's pods
        can change no more, so a batch with one of them fails at its deadline; and a killed
        active process is, to the operator, the release's process crashing during its soak
        (kubelet seed 3)."""
        return not self.bad and any(f.kind in ("node-lost", "active-kill")
                                    for f in self.faults)

    @property
    def batch_deadline_s(self) -> int:
        return BATCH_DEADLINE_S[self.mode]

    @property
    def target_image(self) -> str:
        """The image of the release (kinds "env" and "crash-start" keep v1 and change env;
        in kubelet mode "crash" is v2 itself, its crash switched on by the template's env)."""
        if self.kind in ("env", "crash-start"):
            return V1
        if self.mode == "kubelet":
            return V2
        return {"crash": CRASHING, "broken": BROKEN}.get(self.kind, V2)

    @property
    def template_env(self) -> dict[str, str]:
        """The business container's env before the release (kubelet mode, kind "crash":
        the demo's failure switch for v2)."""
        if self.crash_after_s is None:
            return {}
        return {"PODKIT_DEMO_CRASH_AFTER_S": str(self.crash_after_s),
                "PODKIT_DEMO_CRASH_VERSION": "v2"}

    @property
    def final_replicas(self) -> int:
        return self.scale_to if self.scale_to is not None else self.replicas

    @property
    def release_env(self) -> dict[str, str]:
        """The env the release adds to the business container (kind "env": ``CHAOS_RELEASE``;
        kind "crash-start": a value the business cannot start with)."""
        if self.kind == "crash-start":
            return {ENV_NAME: str(self.seed), **CRASH_START_ENV}
        return {ENV_NAME: str(self.seed)} if self.kind == "env" else {}

    @property
    def final_image(self) -> str:
        """What every pod serves at the end."""
        if self.bad or self.kind in ("env", "rollback"):
            return V1
        return V2


def scenario(seed: int, mode: str = "kwok") -> Scenario:
    if mode not in ("kwok", "kubelet"):
        raise ValueError(f"unknown chaos mode {mode!r}: use kwok or kubelet")
    rng = random.Random(seed)
    kubelet = mode == "kubelet"
    kind = rng.choice(KUBELET_KINDS if kubelet else KINDS)
    # the real node runs every pod's processes (a sidecar and two slots each): a few pods
    replicas = rng.randint(2, 4) if kubelet else rng.randint(3, 12)
    batches = rng.randint(1, min(4, replicas))
    if kind in BAD_KINDS:
        batches = max(batches, 2)  # a batch beyond the first, that the bad version never reaches
    faults = tuple(sorted((fault(rng, KUBELET_FAULTS if kubelet else FAULTS)
                           for _ in range(rng.randint(1, 3))), key=lambda f: f.at_s))
    crash_after_s = None
    if kubelet and kind == "crash":
        crash_after_s = rng.choice((0, rng.randint(*CRASH_LATER_S)))
    return Scenario(
        seed=seed, kind=kind, replicas=replicas, batches=batches, faults=faults,
        pod_management=rng.choice(("Parallel", "OrderedReady")),
        # the CRD refuses fewer replicas than batches: a scale goes no lower than batchNum
        scale_to=max(batches, rng.randint(2, 14)) if kind == "scale" else None,
        steer_at_s=round(rng.uniform(1, 15), 1) if kind in ("rollback", "scale") else None,
        mode=mode, crash_after_s=crash_after_s)


def fault(rng: random.Random, kinds: tuple[str, ...] = FAULTS) -> Fault:
    kind = rng.choice(kinds)
    low, high = OUTAGE_S.get(kind, (0.0, 0.0))
    return Fault(kind, round(rng.uniform(0, 25), 1), rng.randrange(1000),
                 round(rng.uniform(low, high), 1))
