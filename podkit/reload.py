"""Config hot-reload: watch config directories, then run the service's hook.

The sidecar watches each config directory (watchdog, inotify underneath). A rename onto
``..data`` (the kubelet's swap) or, in a plain directory, a file written and closed, moved in or
removed, starts a short debounce; then the directory's content hash is compared with the last
one and, when it changed, the hook runs once:

* ``signal:<NAME>``  the active slot's podkit forwards the signal to its business process;
* ``restart``        the active slot's podkit restarts its business process in place;
* ``command:<CMD>``  the sidecar runs CMD (no shell) with a timeout;
* ``none``           only the hash is recorded (the service reloads by itself).

A failing hook is recorded (``/state``, ``/metrics``) and nothing else happens: the active
business process is never stopped because a reload failed.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .configdir import DATA_LINK, content_hash
from .errors import PodkitError
from .layout import CONTROL_SIGNALS, SharedDir
from .readiness import observe

HOOK_KINDS = ("signal", "restart", "command", "none")


@dataclass(frozen=True)
class Hook:
    kind: str
    argument: str = ""

    @classmethod
    def parse(cls, text: str) -> Hook:
        kind, _, argument = text.partition(":")
        if kind not in HOOK_KINDS:
            raise PodkitError(f"unknown config hook {text!r}; use signal:<NAME>, restart, "
                              "command:<CMD> or none")
        if kind in ("signal", "command") and not argument.strip():
            raise PodkitError(f"config hook {text!r} needs an argument, e.g. signal:HUP or "
                              "command:/app/reload.sh")
        if kind in ("restart", "none") and argument:
            raise PodkitError(f"config hook {kind!r} takes no argument; use {kind!r}")
        argument = argument.strip()
        if kind == "signal":
            name = argument.upper().removeprefix("SIG")
            if name not in CONTROL_SIGNALS:
                raise PodkitError(f"config hook {text!r}: signal {argument!r} is not a reload "
                                  f"signal; use one of "
                                  f"{', '.join(f'signal:{n}' for n in CONTROL_SIGNALS)}")
        if kind == "command":
            try:
                argv = shlex.split(argument)
            except ValueError as exc:
                raise PodkitError(f"config hook {text!r}: cannot split the command ({exc}); "
                                  "quote it as a shell would, e.g. command:/app/reload.sh "
                                  "--all") from None
            if "\0" in argument:
                raise PodkitError(f"config hook {text!r}: the command has a NUL character, "
                                  "which no program argument can hold")
            if not argv[0]:
                raise PodkitError(f"config hook {text!r}: the command's program is empty; "
                                  "name it, e.g. command:/app/reload.sh")
        return cls(kind, argument)

    def __str__(self) -> str:
        return f"{self.kind}:{self.argument}" if self.argument else self.kind


@dataclass(frozen=True)
class ReloadResult:
    hashes: dict[str, str]
    hook: str
    ok: bool
    message: str
    detected_ns: int  # CLOCK_MONOTONIC when the change was noticed
    finished_ns: int  # when the hook was done
    at: float = field(default_factory=time.time)


class HookRunner:
    """Runs a hook against the pod's active slot."""

    def __init__(self, shared: SharedDir, hook: Hook, timeout_s: float) -> None:
        self.shared = shared
        self.hook = hook
        self.timeout_s = timeout_s

    def run(self) -> tuple[bool, str]:
        try:
            if self.hook.kind == "none":
                return True, "no hook"
            if self.hook.kind == "command":
                return self._run_command()
            request = f"SIGNAL {self.hook.argument}" if self.hook.kind == "signal" else "RESTART"
            return self._ask_active_slot(request)
        except PodkitError as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 (reported on /state, never raised in a watcher)
            return False, f"hook {self.hook} failed: {type(exc).__name__}: {exc}"

    def _run_command(self) -> tuple[bool, str]:
        argv = shlex.split(self.hook.argument)
        try:
            # Its own process group, so a timeout kills what the command started too.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError:
            return False, f"hook command not found: {argv[0]}"
        except OSError as exc:
            return False, f"hook command {argv[0]} cannot run: {exc.strerror or exc}"
        try:
            stdout, _ = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            return False, f"hook command timed out after {self.timeout_s}s"
        output = stdout.decode(errors="replace").strip()[-200:]
        if proc.returncode != 0:
            return False, f"hook command exited {proc.returncode}: {output}"
        return True, output or "ok"

    def _ask_active_slot(self, request: str) -> tuple[bool, str]:
        active = observe(self.shared).active_slots
        if len(active) != 1:
            return False, f"no single active slot to run {self.hook} in ({active})"
        path = self.shared.control_socket(active[0])
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(self.timeout_s)
            try:
                conn.connect(str(path))
                conn.sendall(f"{request}\n".encode())
                answer = conn.recv(256).decode(errors="replace").strip()
            except PermissionError as exc:
                return False, (f"slot {active[0]} control socket {path}: {exc}; it is 0600, so "
                               f"the sidecar must run as the slots' uid (uid {os.geteuid()} "
                               "here): give the business container a runAsUser")
            except OSError as exc:
                return False, f"slot {active[0]} control socket {path}: {exc}"
        return answer.startswith("OK"), f"slot {active[0]}: {answer}"


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class _Debouncer(FileSystemEventHandler):
    """Turns a burst of relevant events into one call after a quiet period."""

    def __init__(self, directory: Path, delay_s: float, fire: Any) -> None:
        self.directory = directory
        self.delay_s = delay_s
        self.fire = fire
        self._timer: threading.Timer | None = None
        self._first_ns = 0
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not self._relevant(event):
            return
        with self._lock:
            if self._timer is None:
                self._first_ns = time.monotonic_ns()
            else:
                self._timer.cancel()
            self._timer = threading.Timer(self.delay_s, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self._timer = None
            first_ns = self._first_ns
        self.fire(first_ns)

    def _relevant(self, event: FileSystemEvent) -> bool:
        names = {Path(str(event.src_path)).name}
        if getattr(event, "dest_path", ""):
            names.add(Path(str(event.dest_path)).name)
        if (self.directory / DATA_LINK).exists() or DATA_LINK in names:
            # A kubelet-written directory: only the ..data swap means new content.
            return event.event_type == "moved" and DATA_LINK in names
        return (event.event_type in ("created", "moved", "deleted", "closed")
                and not event.is_directory and any(not n.startswith(".") for n in names))


class ConfigReloader:
    """Watches config directories and runs the hook once per content change."""

    def __init__(self, shared: SharedDir, directories: list[Path], hook: Hook,
                 registry: CollectorRegistry, debounce_s: float = 0.01,
                 timeout_s: float = 30.0) -> None:
        for directory in directories:
            if not directory.is_dir():
                raise PodkitError(f"config directory {directory} does not exist; mount the "
                                  "ConfigMap there or fix --config-dir")
        self.directories = directories
        self.runner = HookRunner(shared, hook, timeout_s)
        self.debounce_s = debounce_s
        self.hashes = {str(d): content_hash(d) for d in directories}
        self.last: ReloadResult | None = None
        self._fire_lock = threading.Lock()
        self._observer = Observer()
        self._reloads = Counter("podkit_config_reloads", "config reloads by result",
                                ["result"], registry=registry)
        self._last_time = Gauge("podkit_config_last_reload_timestamp_seconds",
                                "when the last config reload finished", registry=registry)
        self._duration = Histogram("podkit_config_reload_seconds",
                                   "from the change noticed to the hook done",
                                   registry=registry,
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30))

    def start(self) -> None:
        for directory in self.directories:
            handler = _Debouncer(directory, self.debounce_s, self._on_change)
            self._observer.schedule(handler, str(directory), recursive=False)
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join()

    def _on_change(self, detected_ns: int) -> None:
        with self._fire_lock:
            hashes = {str(d): content_hash(d) for d in self.directories}
            if hashes == self.hashes:
                return
            ok, message = self.runner.run()
            result = ReloadResult(hashes=hashes, hook=str(self.runner.hook), ok=ok,
                                  message=message, detected_ns=detected_ns,
                                  finished_ns=time.monotonic_ns())
            # The result first, then the hashes: ``status`` reads them in the other order, so
            # new hashes are never seen beside the previous result. Until the hook has
            # finished, ``status`` shows the content as it was: a reader polling for "this
            # content applied" must not take a hook still running for done.
            self.last = result
            self.hashes = hashes
            self._reloads.labels(result="ok" if ok else "failed").inc()
            self._last_time.set(result.at)
            self._duration.observe((result.finished_ns - detected_ns) / 1e9)

    def status(self) -> dict[str, Any]:
        return {"hook": str(self.runner.hook), "hashes": dict(self.hashes),
                "last_reload": asdict(self.last) if self.last else None}
