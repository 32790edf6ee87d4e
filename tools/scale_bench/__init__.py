"""``make bench-scale``: the operator at 10,000 pods on an API-only cluster (kwok)."""
