"""Batch arithmetic: how many pods each batch of a release covers, and which ones.

Targets are cumulative (batch k covers the first ``targets[k-1]`` pods of the update order),
like TKEx's ``podsNumToUpdate`` and a StatefulSet's partition moving down. A batch counts
pods: the pods the release has reached come first in the order (:func:`update_order`), so a
scale during a release moves no pod out of a batch it is in, and a pod the scale adds joins a
batch only when that batch's count calls for one more (as OpenKruise's CloneSet counts its
partition).

Decisions:
- a percentage is of the current replicas, rounded up (``"50%"`` of 5 is 3), so a small
  percentage still updates at least one pod;
- without ``podsNumToUpdate`` the split is even with the *smaller batches first*:
  ``floor(replicas * k / batchNum)``, the last batch takes the remainder (10 replicas in 3
  batches -> [3, 6, 10]); the first batch is the canary, so it is never the largest;
- targets are clamped to ``replicas`` and made non-decreasing, and the last batch always takes
  the rest: its target is ``replicas`` whatever the last entry says, so a count list written
  for 6 pods still releases all 10 after ``kubectl scale`` or an HPA (the CRD checks only the
  entries' form and order, never against ``replicas``, so a scale is never refused);
- a batch adds 0 pods only when replicas < batchNum (even split) or the user's list repeats a
  target; such a batch converges at once.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

from ..api.statefulsetplus import parse_pods_num


def batch_targets(replicas: int, batch_num: int,
                  pods_num_to_update: Sequence[int | str] | None = None) -> list[int]:
    """Cumulative pod counts per batch; ``len == batch_num``, last == replicas (the last
    entry of ``pods_num_to_update`` is read for its form only)."""
    if batch_num < 1:
        raise ValueError("batch_num must be >= 1")
    replicas = max(0, replicas)
    if pods_num_to_update is None:
        raw = [replicas * k // batch_num for k in range(1, batch_num + 1)]
    else:
        if len(pods_num_to_update) != batch_num:
            raise ValueError(f"podsNumToUpdate has {len(pods_num_to_update)} entries for "
                             f"{batch_num} batches")
        raw = []
        for entry in pods_num_to_update:
            kind, n = parse_pods_num(entry)
            raw.append(math.ceil(replicas * n / 100) if kind == "percent" else n)
    targets: list[int] = []
    for n in raw:
        n = min(max(n, targets[-1] if targets else 0), replicas)
        targets.append(n)
    targets[-1] = replicas
    return targets


def update_order(ordinals: Iterable[int], done: Collection[int] = (),
                 reached: Collection[int] = (), absent: Collection[int] = ()) -> list[int]:
    """The order pods are updated in: highest ordinal first (a partition moving down), but
    the ``done`` ordinals (pods recorded at the update revision) first, then the others
    ``reached`` (on their way there, or failed there), then the ``absent`` ones (no pod: one a
    ``Recreate`` deleted is made again at the update revision when its batch still counts it),
    then the pods not reached yet. Done before the rest of the reached: a batch completes
    before the next one starts, so after a scale its pods stay ahead of the later batch's."""
    def key(ordinal: int) -> tuple[int, int]:
        rank = (0 if ordinal in done else 1 if ordinal in reached
                else 2 if ordinal in absent else 3)
        return rank, -ordinal
    return sorted(set(ordinals), key=key)


def batch_members(order: Sequence[int], targets: Sequence[int], k: int) -> list[int]:
    """Ordinals in batch ``k`` (1-based): those batch k adds to the batches before it."""
    if k < 1 or k > len(targets):
        return []
    start = targets[k - 2] if k > 1 else 0
    return list(order[start:targets[k - 1]])


def started_members(order: Sequence[int], targets: Sequence[int], k: int) -> list[int]:
    """Ordinals in batches 1..k (the pods the release has reached so far)."""
    if k < 1:
        return []
    return list(order[:targets[min(k, len(targets)) - 1]])
