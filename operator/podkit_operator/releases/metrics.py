"""The release loop's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SWAPS = Counter("podkit_operator_swaps", "pod updates finished, by result", ["result"])
BATCHES = Counter("podkit_operator_batches", "batches finished, by result", ["result"])
SWAP_SECONDS = Histogram("podkit_operator_swap_duration_seconds",
                         "from a pod's first swap patch to its swap done",
                         buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
RECONCILE_SECONDS = Histogram("podkit_operator_reconcile_duration_seconds",
                              "one pass of the release loop over one StatefulSetPlus",
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
