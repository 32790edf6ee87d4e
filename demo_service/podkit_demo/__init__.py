"""A demo stateful service: the reference for how a service adopts podkit.

``python -m podkit_demo`` under ``podkit run --mode warm`` serves TCP and UDP requests, keeps
a request counter and a blob of configurable size in shared memory, answers with its version
and a greeting from its config file, and hands its listeners and state to the next version.
"""
