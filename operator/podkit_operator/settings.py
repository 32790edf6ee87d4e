"""The operator's settings, read from the environment in one place.

- ``PODKIT_PATCHED`` -> ``patched`` (default ``auto``): ``true`` or ``false`` says whether the
  apiserver lets opted-in pods change env and volumes in place; anything else (``auto``) lets
  the operator ask the apiserver's feature gates;
- ``PODKIT_OPERATOR_METRICS_PORT`` -> ``metrics_port`` (default ``9090``): the port of the
  Prometheus metrics; ``0`` serves none;
- ``PODKIT_OPERATOR_HEALTH_PORT`` -> ``health_port`` (default ``0``: none): the port of
  ``/healthz``, served from the start (a standby is alive too; the Deployment sets ``8080``);
- ``PODKIT_LEASE_NAMESPACE`` -> ``lease_namespace`` (default ``default``; the Deployment passes
  its own namespace), ``PODKIT_LEASE_NAME`` -> ``lease_name`` (default ``podkit-operator``)
  and ``PODKIT_OPERATOR_ID`` -> ``identity`` (default ``<hostname>-<pid>``;
  the Deployment passes the pod's name): the leader election's Lease and this candidate.
- ``PODKIT_FOLLOW_CRDS`` -> ``follow_crds`` (default ``true``): ``false`` turns kopf's scanning
  off (it follows CRDs and, for namespace patterns, namespaces: cluster-wide reads that the
  namespaced install, operator/deploy/namespaced, does not grant); the CRD must then exist when
  the operator starts.
- ``PODKIT_WRITERS`` -> ``writers`` (default ``16``): pod writes of one pass in flight at once
  (the controller's connection pool holds as many, and 4 more);
- ``PODKIT_MAX_STARTS`` -> ``max_starts`` (default ``2000``): pod updates one pass may start
  (updates under way always go on; a batch larger than this takes more passes);
- ``PODKIT_QPS`` -> ``qps`` (default ``1000``) and ``PODKIT_BURST`` -> ``burst`` (default
  ``2000``): the operator's own calls (not kopf's), on average and at once after a quiet
  spell (:mod:`.kube.ratelimit`).

A value of those four that is not a whole number of at least 1 is a :class:`SettingsError`
naming the variable. The other fields are tunables with no variable of their own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Settings:
    """What the operator is configured with (see the module docstring)."""

    patched: bool | None = None  # None: detect from the apiserver's feature gates
    metrics_port: int = 9090
    resync_s: float = 60.0  # a release loop with nothing to wait for still looks again this often
    config_poll_s: float = 0.3  # how often pods awaiting a config report are asked again
    writers: int = 16  # concurrent pod writes of one reconcile pass
    max_starts: int = 2000  # pod updates one pass may start
    qps: int = 1000  # the operator's own API calls a second, on average
    burst: int = 2000  # and at once
    health_port: int = 0
    lease_namespace: str = "default"
    lease_name: str = "podkit-operator"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    follow_crds: bool = True

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        forced = environ.get("PODKIT_PATCHED", "auto").lower()
        found = cls(patched=forced == "true" if forced in ("true", "false") else None,
                    metrics_port=int(environ.get("PODKIT_OPERATOR_METRICS_PORT", "9090")),
                    health_port=int(environ.get("PODKIT_OPERATOR_HEALTH_PORT", "0")))
        return replace(found,
                       lease_namespace=environ.get("PODKIT_LEASE_NAMESPACE")
                       or found.lease_namespace,
                       lease_name=environ.get("PODKIT_LEASE_NAME") or found.lease_name,
                       identity=environ.get("PODKIT_OPERATOR_ID") or found.identity,
                       follow_crds=environ.get("PODKIT_FOLLOW_CRDS", "true").lower() != "false",
                       writers=count(environ, "PODKIT_WRITERS", found.writers),
                       max_starts=count(environ, "PODKIT_MAX_STARTS", found.max_starts),
                       qps=count(environ, "PODKIT_QPS", found.qps),
                       burst=count(environ, "PODKIT_BURST", found.burst))


class SettingsError(ValueError):
    """A variable the operator cannot start with; the message says which and what to set."""


def count(environ: Mapping[str, str], variable: str, default: int) -> int:
    """A whole number of at least 1 from ``variable``, ``default`` when it is unset."""
    text = environ.get(variable, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{variable}={text!r}: set a whole number of at least 1 "
                            f"(default {default})")
    return int(text)
