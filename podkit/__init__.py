"""podkit: the in-pod runtime that turns an upgrade into a process hand-over.

A pod built for swaps has two business slots (``a`` and ``b``) and a sidecar sharing one
directory (``/podkit``). See ``docs/architecture.md`` for the protocol.
"""

__version__ = "0.1.0"
