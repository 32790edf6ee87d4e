"""``podkit run -- CMD``: the business slot's entrypoint, PID 1 of the slot container.

It writes the slot's version file and state record, and the slot becomes active by holding
the hand-over lock:

* wrapped mode: podkit waits on the lock as the standby and starts CMD once it holds it
  (any program works; the gap includes its start-up). The lock is released when CMD exits.
* warm mode: CMD starts at once, initialises and takes the lock itself (see
  :mod:`podkit.slot`); podkit records what it reports (READY, ACTIVE, RELEASED). The lock
  belongs to the business process, so the kernel's wake-up of the waiter is the whole path
  from the old process to the new one, and a killed process frees it with its fd.

Signals are forwarded to the business process, zombies are reaped, and podkit exits with the
business process's exit code. The slot's control socket (``slot-<s>.ctl``) lets the sidecar
run config hooks in it: ``SIGNAL <NAME>`` forwards a signal, ``RESTART`` restarts the business
process inside the slot (the wrapped slot keeps the lock meanwhile). Everything runs in one thread with a selector loop, except the
wrapped-mode lock wait, which blocks in the kernel in a one-shot thread.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import threading
from typing import Sequence

from . import slot as warm
from .errors import PodkitError
from .layout import SlotEnv
from .lock import HandoverLock
from .procs import become_subreaper, reap, spawn
from .state import SlotState, write_state, write_version

MODES = ("wrapped", "warm")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class SlotRunner:
    """One business slot: its lock, its business process and its state record."""

    def __init__(self, env: SlotEnv, command: Sequence[str], mode: str) -> None:
        if not command:
            raise PodkitError("no command given; use `podkit run -- CMD [ARGS...]`")
        if mode not in MODES:
            raise PodkitError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        assert env.version is not None
        self.env = env
        self.version: str = env.version
        self.command = list(command)
        self.mode = mode
        self.lock = HandoverLock(env.shared.lock_file)
        self.child: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None
        self._selector = selectors.DefaultSelector()
        self._channel_buffer = b""
        self._restarting = False
        self._signal_r, signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock_r, self._lock_w = os.pipe2(os.O_CLOEXEC)
        self._signal_w = signal_w

    # --- start ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run the slot until the business process exits; return the exit code."""
        self.env.shared.check_writable()
        write_version(self.env.shared, self.env.slot, self.version)
        self._set_state("starting")
        become_subreaper()
        self._install_signals()
        self._selector.register(self._signal_r, selectors.EVENT_READ, self._on_signals)
        self._selector.register(self._lock_r, selectors.EVENT_READ, self._on_lock_acquired)
        self._control_server = self._serve_control_socket()
        self._selector.register(self._control_server, selectors.EVENT_READ,
                                self._on_control_request)
        if self.mode == "warm":
            self._start_warm_child()
        else:
            self._set_state("standby")
            self._wait_for_lock_in_background()
        return self._loop()

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        for signum in (*FORWARDED, signal.SIGCHLD):
            signal.signal(signum, lambda *_: None)

    def _serve_control_socket(self) -> socket.socket:
        path = self.env.shared.control_socket(self.env.slot)
        path.unlink(missing_ok=True)  # left by this slot's previous container
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(4)
        return server

    def _start_warm_child(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ, **{warm.CONTROL_FD_ENV: str(theirs.fileno())})
        self.child = spawn(self.command, env, pass_fds=[theirs.fileno()])
        theirs.close()
        self.channel = ours
        self._selector.register(ours, selectors.EVENT_READ, self._on_channel)

    def _wait_for_lock_in_background(self) -> None:
        threading.Thread(target=self._take_lock, name="handover-lock", daemon=True).start()

    def _take_lock(self) -> None:
        self.lock.acquire()
        os.write(self._lock_w, b"!")

    # --- loop ----------------------------------------------------------------------------
    def _loop(self) -> int:
        while True:
            for key, _ in self._selector.select():
                result = key.data()
                if result is not None:
                    return result

    def _on_lock_acquired(self) -> int | None:
        os.read(self._lock_r, 1)
        self._start_wrapped_child()
        return None

    def _start_wrapped_child(self) -> None:
        self.child = spawn(self.command, os.environ)
        self._set_state("active")

    def _on_control_request(self) -> int | None:
        conn, _ = self._control_server.accept()
        with conn:
            conn.settimeout(1.0)
            try:
                request = conn.recv(256).decode("ascii", "replace").split()
                conn.sendall(self._handle_control_request(request).encode())
            except OSError:
                pass  # the client went away; nothing was changed for it
        return None

    def _handle_control_request(self, request: list[str]) -> str:
        if self.child is None or self.child.returncode is not None:
            return "ERR no business process runs in this slot\n"
        if request[:1] == ["SIGNAL"] and len(request) == 2:
            try:
                signum = signal.Signals[f"SIG{request[1].upper().removeprefix('SIG')}"]
            except KeyError:
                return f"ERR unknown signal {request[1]}\n"
            self.child.send_signal(signum)
            return "OK\n"
        if request == ["RESTART"]:
            self._restarting = True
            self.child.send_signal(signal.SIGTERM)
            return "OK restarting\n"
        return "ERR unknown request; use SIGNAL <NAME> or RESTART\n"

    def _on_channel(self) -> int | None:
        assert self.channel is not None
        try:
            data = self.channel.recv(256)
        except OSError:
            data = b""
        if not data:
            self._close_channel()
            return None  # the business process closed its end; its exit follows
        self._channel_buffer += data
        while b"\n" in self._channel_buffer:
            line, self._channel_buffer = self._channel_buffer.split(b"\n", 1)
            self._on_channel_message(line + b"\n")
        return None

    def _close_channel(self) -> None:
        if self.channel is not None:
            self._selector.unregister(self.channel)
            self.channel.close()
            self.channel = None
            self._channel_buffer = b""

    def _on_channel_message(self, message: bytes) -> None:
        roles = {warm.READY: "standby", warm.ACTIVE: "active",
                 warm.RELEASED: "stopping"}
        if message in roles:
            self._set_state(roles[message])
        else:
            print(f"podkit: ignoring unknown control message {message!r}", flush=True)

    def _on_signals(self) -> int | None:
        try:
            received = os.read(self._signal_r, 64)
        except BlockingIOError:
            return None
        for signum in received:
            if signum == signal.SIGCHLD:
                code = self._on_child_exit()
                if code is not None:
                    return code
            elif signum in FORWARDED:
                code = self._on_forwarded_signal(signum)
                if code is not None:
                    return code
        return None

    def _on_forwarded_signal(self, signum: int) -> int | None:
        if signum in STOP_SIGNALS:
            self._restarting = False
        if self.child is None:
            if signum not in STOP_SIGNALS:
                return None
            self._set_state("exited")
            return 0
        if self.child.returncode is None:
            self.child.send_signal(signum)
        return None

    def _on_child_exit(self) -> int | None:
        children = {self.child.pid: self.child} if self.child is not None else {}
        for pid, code in reap(children):
            if self.child is None or pid != self.child.pid:
                continue
            if self._restarting:
                self._restarting = False
                self._restart_child()
                continue
            self.lock.release()
            self._set_state("exited")
            return code
        return None

    def _restart_child(self) -> None:
        if self.mode == "warm":
            self._close_channel()
            self._set_state("starting")
            self._start_warm_child()
        else:
            self._start_wrapped_child()

    def _set_state(self, role: str) -> None:
        write_state(self.env.shared, SlotState.now(self.env.slot, role, self.version, self.mode))
