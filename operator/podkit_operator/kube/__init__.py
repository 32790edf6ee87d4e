"""Kubernetes I/O: the client (:mod:`.client`) and generic readers of API objects
(:mod:`.objects`). It knows the API's names (:mod:`podkit_operator.api`), no domain logic."""
