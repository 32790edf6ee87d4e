"""``make chaos``: seeded, randomized, fault-injected releases, checked from the API alone.

Each run (one seed) is one release of a random kind on an API-only cluster (kwok nodes) with
random faults at random moments; an observer reads the pods and the StatefulSetPlus through
kubectl while it runs, and the invariants are checked on what it saw. Nothing here imports the
operator: the checker knows only the documented API (docs/operator.md), so a defect of the
operator cannot hide in a shared helper.
"""
