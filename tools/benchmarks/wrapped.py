"""``make bench-wrapped``: an unmodified nginx swapped in wrapped mode, without and with
listeners held by podkit, under an HTTP client.

Two :class:`~podkit.localpod.LocalPod` runs of ``--swaps`` swaps each, in one process, one
after the other, the same nginx configuration (Debian's nginx, installed if missing):

* ``wrapped``: ``podkit run --mode wrapped -- nginx ...``, as before: nginx binds its port when
  its slot is active, and SIGTERM reaches it as it is (nginx's fast stop);
* ``inherited``: ``podkit run --mode wrapped --listen web=tcp://... --pass nginx --stop-signal
  QUIT -- nginx ...``: podkit holds the listener, nginx inherits it (``NGINX=3;``) and stops
  gracefully; podkit hands over once nginx closed it.

The client sends ``GET /`` at ``--rate`` per second from a few threads, one connection per
request (reset after the reply, so no TIME_WAIT piles up); a request fails when it is refused,
reset, times out or gets no 200. ``max_gap_ms`` is the longest time between two consecutive
replies. The last stdout line is one JSON object: per mode ``failed``, ``sent``,
``max_gap_ms`` and the failures by reason.

Self-contained (nginx's configuration, the client and the swap loop are here), so that the
integration tests of wrapped mode run the same code: ``tests/integration/
test_wrapped_listeners.py``.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from podkit.errors import PodkitError
from podkit.localpod import LocalPod, wait_until
from testbed import host
from testbed.errors import TestbedError

from .swaps import free_port

NGINX = "/usr/sbin/nginx"
DEFAULT_RATE = 1000
CLIENT_THREADS = 4
REQUEST_TIMEOUT_S = 5.0
SERVE_TIMEOUT_S = 20.0  # a liveness bound: the new version must answer within it
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with a reset


def ensure_nginx() -> str:
    """Debian's nginx, installed when missing (root, apt); its version."""
    try:
        host.ensure_packages(["nginx"])
    except TestbedError as exc:
        raise PodkitError(f"cannot install Debian's nginx: {exc}") from None
    done = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=True)
    return done.stderr.strip().rsplit("/", 1)[-1]


def nginx_command(directory: Path, port: int, reply: str) -> list[str]:
    """An nginx that answers ``reply`` on 127.0.0.1:``port``, a non-daemon with its pid, logs
    and temporary files in ``directory`` (one per slot: both slots' nginx run at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    temp = {kind: directory / kind for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                "scgi")}
    config = directory / "nginx.conf"
    config.write_text(f"""
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} notice;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    {"".join(f"{kind}_temp_path {path}; " for kind, path in temp.items())}
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{reply}\\n"; }}
    }}
}}
""")
    return [NGINX, "-e", str(directory / "error.log"), "-c", str(config),
            "-g", "daemon off;"]


def inherited_args(port: int, style: str, stop_signal: str) -> list[str]:
    """``podkit run`` options that hold listener ``web`` on 127.0.0.1:``port``."""
    return ["--listen", f"web=tcp://127.0.0.1:{port}", "--pass", style,
            "--stop-signal", stop_signal]


def nginx_pod(root: Path, port: int, inherited: bool) -> LocalPod:
    """Two wrapped slots running nginx; each replies ``<version> <slot>``."""
    return LocalPod(root / "pod", lambda slot, version: nginx_command(
        root / f"nginx-{slot}", port, f"{version} {slot}"), mode="wrapped",
        run_args=inherited_args(port, "nginx", "QUIT") if inherited else ())


# --- the client ------------------------------------------------------------------------------

@dataclass
class LoadResult:
    sent: int
    failed: int
    failures: dict[str, int]
    max_gap_ms: float
    replies: dict[str, int]  # reply body -> count

    def summary(self) -> dict[str, Any]:
        return {"failed": self.failed, "sent": self.sent, "max_gap_ms": self.max_gap_ms,
                "failures": self.failures}


@dataclass
class HttpLoad:
    """``GET /`` at ``rate`` per second over ``threads`` threads, a connection per request."""

    port: int
    rate: int = DEFAULT_RATE
    threads: int = CLIENT_THREADS
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done_ns: list[int] = field(default_factory=list)  # when each reply came
    _replies: Counter[str] = field(default_factory=Counter)
    _failures: Counter[str] = field(default_factory=Counter)
    _sent: int = 0
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> HttpLoad:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, n: int) -> None:
        interval = self.threads / self.rate
        due = time.monotonic() + n * interval / self.threads
        while not self._stop.is_set():
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due = max(due + interval, time.monotonic())  # late: skip, never burst
            outcome = self._request()
            with self._lock:
                self._sent += 1
                if outcome.startswith("ok "):
                    self._done_ns.append(time.monotonic_ns())
                    self._replies[outcome[3:]] += 1
                else:
                    self._failures[outcome] += 1

    def _request(self) -> str:
        """``ok <body>`` or why the request failed."""
        try:
            with socket.create_connection(("127.0.0.1", self.port),
                                          timeout=REQUEST_TIMEOUT_S) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: podkit\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error {exc.errno}"
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return "no 200" if data else "closed without a reply"
        return f"ok {body.decode(errors='replace').strip()}"

    def has_reply(self, body: str) -> bool:
        with self._lock:
            return self._replies[body] > 0

    def stop(self) -> LoadResult:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        done = sorted(self._done_ns)
        gaps = [(b - a) / 1e6 for a, b in zip(done, done[1:])]
        return LoadResult(sent=self._sent, failed=sum(self._failures.values()),
                          failures=dict(self._failures),
                          max_gap_ms=round(max(gaps, default=0.0), 3),
                          replies=dict(self._replies))


# --- swaps under the client ------------------------------------------------------------------

def swaps_under_load(pod: LocalPod, port: int, swaps: int,
                     progress: Callable[[int], None] = lambda n: None,
                     rate: int = DEFAULT_RATE) -> LoadResult:
    """``swaps`` swaps v1 -> v2 -> ... under an :class:`HttpLoad`; each new version must answer
    before the next swap (as the operator waits for readiness)."""
    pod.start("v0")
    load = HttpLoad(port, rate).start()
    try:
        _wait_served(load, pod, "v0 a")
        for n in range(1, swaps + 1):
            slot = pod.swap(f"v{n}")
            _wait_served(load, pod, f"v{n} {slot}")
            progress(n)
    finally:
        result = load.stop()
        pod.close(graceful=True)
    return result


def _wait_served(load: HttpLoad, pod: LocalPod, reply: str) -> None:
    wait_until(lambda: load.has_reply(reply), f"a reply {reply!r} (logs in {pod.shared.root})",
               SERVE_TIMEOUT_S)


def _progress(mode: str, swaps: int, done: int) -> None:
    print(f"bench-wrapped: {mode} swap {done}/{swaps}", file=sys.stderr, flush=True)


def run(swaps: int, root: Path, rate: int = DEFAULT_RATE) -> dict[str, Any]:
    """Both modes, one after the other; the JSON document."""
    result: dict[str, Any] = {"swaps": swaps, "rate_per_s": rate, "nginx": ensure_nginx()}
    for mode, inherited in (("wrapped", False), ("inherited", True)):
        port = free_port()
        pod = nginx_pod(root / mode, port, inherited)
        load = swaps_under_load(pod, port, swaps, rate=rate,
                                progress=partial(_progress, mode, swaps))
        result[mode] = load.summary()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE,
                        help="requests per second")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="podkit-bench-wrapped-") as tmp:
            result = run(args.swaps, Path(tmp), args.rate)
    except PodkitError as exc:
        print(f"bench-wrapped: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
