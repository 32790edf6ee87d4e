"""``podkit sidecar``: the referee of a swap pod.

It serves, over HTTP:

* ``/readyz``  200 when the pod is converged (see :mod:`podkit.readiness`), else 503 with the
  reason; the pod's readiness probe points here (or runs ``podkit probe ready``);
* ``/readyz/slot/<a|b>`` 200 while that slot's process lives and has initialised: the slot
  containers' readiness probe (an HTTP probe costs the node nothing, where an exec probe starts a
  process in the container every period);
* ``/healthz`` 200 while the sidecar runs;
* ``/state``   JSON of both slots, the lock, and the last config reload;
* ``/metrics`` Prometheus text format.

``/state`` and ``/metrics`` are private: they name versions and carry the end of a command
hook's output. They answer a peer on the pod's loopback (the pod's own containers) and anyone
else only with ``Authorization: Bearer <token>``, the token the operator puts into the sidecar's
``PODKIT_SIDECAR_TOKEN`` (and reads back from the pod to ask ``/state``); without a token, only
loopback peers get them. The probes' paths stay open: the kubelet probes the pod IP, and they say
no more than the pod's readiness does. Why a token and not a bind address or a NetworkPolicy:
docs/operator.md, "Pod security".
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .layout import SharedDir
from .readiness import observe

DEFAULT_PORT = 9901
SLOT_READYZ = "/readyz/slot/"
TOKEN_ENV = "PODKIT_SIDECAR_TOKEN"
PRIVATE_PATHS = ("/state", "/metrics")

StatusProvider = Callable[[], dict[str, Any]]
SlotHealth = Callable[[str], tuple[bool, str]]  # the business's probes' verdict on a slot


class SlotCollector(Collector):
    """Exports the slots' state at scrape time, read fresh from the shared directory."""

    def __init__(self, shared: SharedDir) -> None:
        self.shared = shared

    def collect(self) -> Iterable[Metric]:
        view = observe(self.shared)
        ready, _ = view.readiness()
        yield GaugeMetricFamily("podkit_ready", "1 when the pod is converged and serving",
                                value=int(ready))
        yield GaugeMetricFamily("podkit_handover_lock_held", "1 while a slot holds the lock",
                                value=int(view.lock_held))
        info = GaugeMetricFamily("podkit_slot_info", "the slot's version, role and mode",
                                 labels=["slot", "version", "role", "mode"])
        active = GaugeMetricFamily("podkit_slot_active", "1 for the active slot",
                                   labels=["slot"])
        for slot, slot_view in view.slots.items():
            state = slot_view.state
            if state is not None:
                info.add_metric([slot, slot_view.version or "", state.role, state.mode], 1)
            active.add_metric([slot], int(state is not None and state.role == "active"))
        yield info
        yield active


class Sidecar:
    """The sidecar's HTTP server; ``extra_status`` adds sections to ``/state``;
    ``slot_health`` (:meth:`podkit.probes.ProbeRunner.verdict`) can fail a slot's readiness
    and the pod's on top of the slot rule."""

    def __init__(self, shared: SharedDir, address: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 registry: CollectorRegistry | None = None,
                 extra_status: dict[str, StatusProvider] | None = None,
                 slot_health: SlotHealth | None = None, token: str | None = None) -> None:
        self.shared = shared
        self.slot_health = slot_health
        self.token = token or None
        self.registry = registry or CollectorRegistry()
        self.registry.register(SlotCollector(shared))
        self.extra_status = extra_status or {}
        self.server = ThreadingHTTPServer((address, port), self._handler_class())
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def state(self) -> dict[str, Any]:
        document = observe(self.shared).as_json()
        for name, provider in self.extra_status.items():
            document[name] = provider()
        return document

    def may_read_private(self, peer: str, authorization: str | None) -> bool:
        """``/state`` and ``/metrics`` for a loopback peer, or one that shows the token."""
        if ipaddress.ip_address(peer.removeprefix("::ffff:")).is_loopback:
            return True
        if self.token is None or authorization is None:
            return False
        return hmac.compare_digest(authorization.encode(), f"Bearer {self.token}".encode())

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.5)

    def start_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="sidecar-http", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                path = self.path.split("?", 1)[0]
                if path in PRIVATE_PATHS and not sidecar.may_read_private(
                        self.client_address[0], self.headers.get("Authorization")):
                    self._send(401, f"{path} needs 'Authorization: Bearer <token>' from "
                               f"outside the pod (the sidecar's ${TOKEN_ENV})\n".encode(),
                               "text/plain")
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    view = observe(sidecar.shared)
                    ready, reason = view.readiness()
                    if ready and sidecar.slot_health:
                        ready, reason = sidecar.slot_health(view.active_slots[0])
                    self._send(200 if ready else 503, f"{reason}\n".encode(), "text/plain")
                elif path.startswith(SLOT_READYZ) and path[len(SLOT_READYZ):] in ("a", "b"):
                    ready, reason = observe(sidecar.shared).slot_readiness(
                        path[len(SLOT_READYZ):])
                    if ready and sidecar.slot_health:
                        ready, reason = sidecar.slot_health(path[len(SLOT_READYZ):])
                    self._send(200 if ready else 503, f"{reason}\n".encode(), "text/plain")
                elif path == "/state":
                    body = json.dumps(sidecar.state(), indent=2, sort_keys=True) + "\n"
                    self._send(200, body.encode(), "application/json")
                elif path == "/metrics":
                    self._send(200, generate_latest(sidecar.registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found: try /readyz /readyz/slot/a /healthz /state "
                               b"/metrics\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes hit these endpoints every second; keep the log for events

        return Handler
