"""``podkit run -- CMD``: the business slot's entrypoint, PID 1 of the slot container.

It writes the slot's version file and state record, and the slot becomes active by holding
the hand-over lock:

* wrapped mode: podkit waits on the lock as the standby and starts CMD once it holds it
  (any program works). SIGTERM reaches CMD as its graceful-stop signal (``--stop-signal``);
  past ``--stop-timeout`` podkit kills what is left. Without listeners the lock is released
  when CMD exits, and connections that arrive until the successor's CMD has bound its port are
  refused. With listeners (``--listen``, :mod:`podkit.inherit`) podkit receives them from the
  active peer before it stands by (binding them only when nobody serves), holds them for its
  whole life, passes them to CMD in the declared way (``--pass``) and serves the hand-off
  socket while active; on the stop it releases the lock as soon as no process of CMD holds a
  listener any more (or CMD exited), while CMD finishes what it accepted. The kernel sockets
  live on in both podkits, so connections queue while the successor's CMD starts: none is
  refused.
* warm mode: CMD starts at once, initialises and takes the lock itself (see
  :mod:`podkit.slot`); podkit records what it reports (READY, ACTIVE, RELEASED). The lock
  belongs to the business process, so the kernel's wake-up of the waiter is the whole path
  from the old process to the new one, and a killed process frees it with its fd.

Signals are forwarded to the business process, zombies are reaped, and podkit exits with the
business process's exit code. The slot's control socket (``slot-<s>.ctl``) lets the sidecar
run config hooks in the active slot: ``SIGNAL <NAME>`` forwards a signal; ``RESTART`` restarts
the business process in place. In warm mode a restart is a swap inside the slot: a successor
starts, initialises (it receives the listeners and maps the state like any standby) and says
READY; only then is the running process told to hand over, so a successor that fails to start
leaves it serving. The answer (``OK ...`` or ``ERR ...``) comes once the restart is done:
when the successor says ACTIVE, whether or not its predecessor's exit was handled first.

CPU priorities (:mod:`podkit.cpu`), where the slot may undo them (``CAP_SYS_NICE`` or
``RLIMIT_NICE`` 20): a warm business process, a restart's successor included, starts
``SCHED_IDLE``, so its initialisation takes no CPU from the serving slot; when it says READY,
and again when it says ACTIVE, podkit returns every thread of it and of the processes it
started to ``SCHED_OTHER``, so a business in any language that follows the protocol waits on
the lock and serves at normal priority. podkit itself stays ``SCHED_OTHER``: it handles READY,
forwards the kubelet's signals and records the roles. Wrapped mode starts the business at
normal priority, since it serves at once; once it has handed over, podkit and CMD's process
group drop to nice 19, so their exit does not delay the successor.

Everything runs in one thread with a selector loop, except the wrapped-mode lock wait, which
blocks in the kernel in a one-shot thread, and the hand-off server of a wrapped slot with
listeners.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from . import cpu
from . import slot as warm
from .errors import PodkitError
from .handoff import HandoffServer, ListenerSet, acquire_listeners, parse_specs
from .inherit import STYLES, Passing, descendants, holders, socket_inodes
from .layout import CONTROL_SIGNALS, CONTROL_SOCKET_MODE, SlotEnv
from .lock import OfdLock
from .procs import become_subreaper, reap, spawn
from .slot_records import SlotState, write_state, write_version

MODES = ("wrapped", "warm")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
ROLES = {warm.READY: "standby", warm.ACTIVE: "active", warm.RELEASED: "stopping"}
# A warm business's messages are a word and a newline; what it writes beyond this without a
# newline is dropped, so a process that never ends a line cannot grow podkit's memory.
CHANNEL_LINE_MAX = 256
DEFAULT_STOP_TIMEOUT_S = 25.0  # under the kubelet's default grace period of 30 s
# How often a stopping wrapped slot looks whether its server still holds a listener: the
# successor waits this long at most beyond the server's close.
HOLD_POLL_S = 0.001


def signal_named(name: str) -> signal.Signals:
    """``TERM``, ``sigterm`` or ``SIGTERM`` as a signal; :class:`PodkitError` when unknown."""
    try:
        return signal.Signals[f"SIG{name.upper().removeprefix('SIG')}"]
    except KeyError:
        raise PodkitError(f"unknown signal {name}") from None


def control_signal(name: str) -> signal.Signals:
    """A signal the control socket may send (:data:`~podkit.layout.CONTROL_SIGNALS`), else
    :class:`PodkitError` saying which are."""
    signum = signal_named(name)
    if signum.name.removeprefix("SIG") not in CONTROL_SIGNALS:
        raise PodkitError(f"signal {signum.name} is not allowed on the control socket; use one "
                          f"of {', '.join(CONTROL_SIGNALS)}")
    return signum


def parse_control_request(data: bytes) -> signal.Signals | None:
    """A control socket request (docs/handoff-protocol.md): the signal of ``SIGNAL <NAME>``,
    ``None`` for ``RESTART``; :class:`PodkitError` saying what is wrong with anything else."""
    # Split as bytes: on ASCII whitespace only (str.split() would also split on \x1c-\x1f).
    request = [word.decode("ascii", "replace") for word in data.split()]
    if request[:1] == ["SIGNAL"] and len(request) == 2:
        return control_signal(request[1])
    if request == ["RESTART"]:
        return None
    raise PodkitError("unknown request; use SIGNAL <NAME> or RESTART")


@dataclass(eq=False)
class Business:
    """One business process of the slot, with its warm-mode channel."""

    proc: subprocess.Popen[bytes]
    channel: socket.socket | None = None
    buffer: bytes = b""

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` unless the process was reaped. Not ``Popen.send_signal``: it polls
        first, which reaps an exited child behind :func:`podkit.procs.reap`, and the slot would
        never handle that exit. Until podkit reaps the process, its pid cannot be reused."""
        if self.running:
            os.kill(self.proc.pid, signum)


class SlotRunner:
    """One business slot: its lock, its business process and its state record."""

    def __init__(self, env: SlotEnv, command: Sequence[str], mode: str,
                 listen: Sequence[str] = (), pass_style: str = "podkit",
                 stop_signal: int = signal.SIGTERM,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        if not command:
            raise PodkitError("no command given; use `podkit run -- CMD [ARGS...]`")
        if shutil.which(command[0]) is None:
            if os.sep in command[0] and os.path.isfile(command[0]):
                raise PodkitError(f"command not executable: {command[0]!r}; check its "
                                  "permissions (chmod +x)", exit_code=126)
            raise PodkitError(f"command not found: {command[0]!r}; check the command after "
                              "`--`", exit_code=127)
        if mode not in MODES:
            raise PodkitError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if mode == "warm" and (listen or stop_signal != signal.SIGTERM):
            raise PodkitError("--listen, --pass and --stop-signal are for wrapped mode; a warm "
                              "service receives its listeners itself (podkit.handoff) and stops "
                              "on SIGTERM")
        if pass_style not in STYLES:
            raise PodkitError(f"unknown way to pass listeners {pass_style!r}; use one of "
                              f"{', '.join(STYLES)}")
        if stop_timeout <= 0:
            raise PodkitError(f"--stop-timeout {stop_timeout:g} must be more than 0 seconds")
        assert env.version is not None
        self.env = env
        self.version: str = env.version
        self.command = list(command)
        self.mode = mode
        self.specs = parse_specs(listen)
        self.pass_style = pass_style
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.lock = OfdLock(env.shared.lock_file)
        self.listeners: ListenerSet | None = None  # held for the slot's life (wrapped)
        self._passing: Passing | None = None
        self._inodes: frozenset[int] = frozenset()
        self.handoff: HandoffServer | None = None  # served while active (wrapped, listeners)
        self._stop_deadline: float | None = None  # a wrapped slot's stop: kill the rest then
        self._watching = False  # stopping: release once the server holds no listener
        self._warned_unreadable = False
        self.current: Business | None = None
        self.successor: Business | None = None  # a warm restart under way
        self.role = "starting"
        self._restart_reply: socket.socket | None = None  # who waits for a restart's answer
        self._selector = selectors.DefaultSelector()
        self._signal_r, self._signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock_r, self._lock_w = os.pipe2(os.O_CLOEXEC)

    # --- start ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run the slot until the business process exits; return the exit code."""
        self.env.shared.check_writable()
        self._alive = self.env.shared.claim_slot(self.env.slot)
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
            self.current = self._start_business()
        else:
            if self.specs:
                self.listeners = acquire_listeners(self.env.shared, self.specs)
                self._passing = Passing(self.listeners, self.pass_style)
                self._inodes = socket_inodes(self.listeners)
            self._set_state("standby")
            threading.Thread(target=self._take_lock, name="handover-lock", daemon=True).start()
        return self._loop()

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        for signum in (*FORWARDED, signal.SIGCHLD):
            signal.signal(signum, lambda *_: None)

    def _serve_control_socket(self) -> socket.socket:
        """``slot-<s>.ctl``, mode 0600 from its creation: bound under a umask that leaves only
        the owner's bits (no other thread runs yet, so the process-wide umask is safe to
        change), and chmod-ed again before ``listen``, so no process of another uid ever
        connects (a connect before ``listen`` is refused anyway)."""
        path = self.env.shared.control_socket(self.env.slot)
        path.unlink(missing_ok=True)  # left by this slot's previous container
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o777 & ~CONTROL_SOCKET_MODE)
        try:
            server.bind(str(path))
        finally:
            os.umask(previous)
        os.chmod(path, CONTROL_SOCKET_MODE)
        server.listen(4)
        return server

    def _start_business(self) -> Business:
        if self._passing is not None:
            return Business(spawn(self.command, None, in_child=self._passing.in_child))
        if self.mode == "wrapped":
            return Business(spawn(self.command, os.environ))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ, **{warm.CONTROL_FD_ENV: str(theirs.fileno())})
        try:
            # It initialises behind the serving slot, where podkit can restore it (podkit.cpu).
            proc = spawn(self.command, env, pass_fds=[theirs.fileno()],
                         idle=cpu.may_leave_idle())
        finally:
            theirs.close()
        business = Business(proc, ours)
        self._selector.register(ours, selectors.EVENT_READ,
                                lambda: self._on_channel(business))
        return business

    def _take_lock(self) -> None:
        self.lock.acquire()
        os.write(self._lock_w, b"!")

    # --- loop ----------------------------------------------------------------------------
    def _loop(self) -> int:
        while True:
            for key, _ in self._selector.select(self._tick_timeout()):
                result = key.data()
                if result is not None:
                    return result
            self._on_tick()

    def _on_lock_acquired(self) -> int | None:
        os.read(self._lock_r, 1)
        self.current = self._start_business()
        if self.listeners is not None:
            self.handoff = HandoffServer(self.env.shared, self.listeners).start()
        self._set_state("active")
        return None

    def _release(self) -> None:
        """Hand over: the hand-off socket goes first (the protocol's order), then the lock."""
        if self.handoff is not None:
            self.handoff.stop()
            self.handoff = None
        self.lock.release()

    # --- a wrapped slot's stop -------------------------------------------------------------
    def _begin_stop(self) -> None:
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.stop_timeout
            self._watching = self.handoff is not None

    def _tick_timeout(self) -> float | None:
        if self._stop_deadline is None:
            return None
        if self._watching:
            return HOLD_POLL_S
        return max(0.0, self._stop_deadline - time.monotonic())

    def _on_tick(self) -> None:
        """While stopping: release once the server stopped accepting, kill it at the bound."""
        if self._stop_deadline is None or self.current is None or not self.current.running:
            return
        if self._watching and not self._server_holds_listeners():
            self._watching = False
            self._release()
            self._set_state("stopping")
            cpu.yield_cpu()
            with contextlib.suppress(OSError):  # nice 19 for another user's process: EPERM
                os.setpriority(os.PRIO_PGRP, self.current.proc.pid, 19)
        if time.monotonic() >= self._stop_deadline:
            print(f"podkit: the business did not exit within --stop-timeout "
                  f"{self.stop_timeout:g} s of the stop; killing it", flush=True)
            self._stop_deadline = None
            self._watching = False
            for pid in descendants(os.getpid()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _server_holds_listeners(self) -> bool:
        """Whether a process podkit started still holds a listener. One whose descriptors
        cannot be read counts as holding: the lock then goes when it exits."""
        found = holders(descendants(os.getpid()), self._inodes)
        if found.unreadable and not self._warned_unreadable:
            self._warned_unreadable = True
            print(f"podkit: cannot read the descriptors of pid "
                  f"{', '.join(map(str, found.unreadable))} (another user); the lock is "
                  "released when it exits. Run the server's processes as podkit's user, or "
                  "give the slot CAP_SYS_PTRACE", flush=True)
        return bool(found.holding or found.unreadable)

    # --- the warm channel ----------------------------------------------------------------
    def _on_channel(self, business: Business) -> int | None:
        if business.channel is None:
            return None  # closed as its process's exit was handled, in the same round of events
        try:
            data = business.channel.recv(256)
        except OSError:
            data = b""
        if not data:
            self._close_channel(business)
            return None  # the business process closed its end; its exit follows
        business.buffer += data
        while b"\n" in business.buffer:
            line, business.buffer = business.buffer.split(b"\n", 1)
            self._on_channel_message(business, line + b"\n")
        if len(business.buffer) > CHANNEL_LINE_MAX:
            print(f"podkit: ignoring a control message over {CHANNEL_LINE_MAX} bytes without "
                  "a newline", flush=True)
            business.buffer = b""
        return None

    def _close_channel(self, business: Business) -> None:
        if business.channel is not None:
            self._selector.unregister(business.channel)
            business.channel.close()
            business.channel = None

    def _on_channel_message(self, business: Business, message: bytes) -> None:
        if message not in ROLES:
            print(f"podkit: ignoring unknown control message {message!r}", flush=True)
            return
        if message != warm.RELEASED:
            # It started SCHED_IDLE; from READY on it waits on the lock or serves. Threads and
            # processes it started before are restored too; ACTIVE repeats it for any started
            # by a thread still idle at READY.
            cpu.foreground(business.proc.pid)
        if self.successor is not None:
            if business is not self.successor:
                return  # a restart's predecessor: the slot stays active
            if message == warm.READY:
                if self.current is not None:
                    self.current.signal(signal.SIGTERM)  # hand over to the successor
                return
        if message == warm.RELEASED:
            cpu.yield_cpu()  # this slot is done; the peer's business must not wait for us
        self._set_state(ROLES[message])
        if message == warm.ACTIVE:
            # Completes a restart under way: this is its successor, still ``self.successor``
            # or already ``self.current`` if its predecessor's exit was handled first.
            self._answer_restart(f"OK restarted, pid {business.proc.pid}")

    # --- the control socket --------------------------------------------------------------
    def _on_control_request(self) -> int | None:
        conn, _ = self._control_server.accept()
        conn.settimeout(1.0)
        try:
            answer = self._handle_control_request(conn.recv(256), conn)
            if answer is not None:
                conn.sendall(f"{answer}\n".encode())
        except OSError:
            answer = None  # the client went away; nothing was changed for it
        if conn is not self._restart_reply:
            conn.close()
        return None

    def _handle_control_request(self, data: bytes, conn: socket.socket) -> str | None:
        """The answer, or ``None`` when it will come later (a restart)."""
        current = self.current
        if self.role != "active" or current is None or not current.running:
            return f"ERR slot {self.env.slot} is not active (it is {self.role})"
        if self.successor is not None or self._restart_reply is not None:
            return "ERR a restart is under way; try again when it is done"
        try:
            signum = parse_control_request(data)
        except PodkitError as exc:
            return f"ERR {exc}"
        if signum is not None:
            current.signal(signum)
            return "OK"
        self._restart_reply = conn
        if self.mode == "warm":
            self.successor = self._start_business()
        else:
            current.signal(self.stop_signal)  # its exit starts the new one
        return None

    def _answer_restart(self, answer: str) -> None:
        """Answer the restart under way, if there is one."""
        conn, self._restart_reply = self._restart_reply, None
        if conn is not None:
            try:
                conn.sendall(f"{answer}\n".encode())
            except OSError:
                pass  # the sidecar gave up waiting; the slot's state says what happened
            conn.close()

    # --- signals and exits ---------------------------------------------------------------
    def _on_signals(self) -> int | None:
        try:
            received = os.read(self._signal_r, 64)
        except BlockingIOError:
            return None
        for signum in received:
            code = (self._on_child_exit() if signum == signal.SIGCHLD
                    else self._on_forwarded_signal(signum) if signum in FORWARDED else None)
            if code is not None:
                return code
        return None

    def _on_forwarded_signal(self, signum: int) -> int | None:
        if signum in STOP_SIGNALS:
            self._answer_restart(f"ERR slot {self.env.slot} is stopping")
        running = [b for b in (self.current, self.successor) if b is not None and b.running]
        if not running:
            if signum not in STOP_SIGNALS:
                return None
            self._set_state("exited")
            return 0
        if signum in STOP_SIGNALS and self.mode == "wrapped":
            self._begin_stop()
            if signum == signal.SIGTERM:
                signum = self.stop_signal
        for business in running:
            business.signal(signum)
        return None

    def _on_child_exit(self) -> int | None:
        children = {b.proc.pid: b.proc for b in (self.current, self.successor) if b is not None}
        for pid, code in reap(children):
            # For a restart still waiting for its answer: its successor exited before ACTIVE
            # (as ``self.current`` if its predecessor's exit came first).
            failed = f"ERR the new business process exited with {code} before it was active"
            if self.successor is not None and pid == self.successor.proc.pid:
                self._close_channel(self.successor)
                self.successor = None
                self._answer_restart(failed)
            elif self.current is not None and pid == self.current.proc.pid:
                self._close_channel(self.current)
                self.current, self.successor = self.successor, None
                if self.current is not None:
                    continue  # the successor carries on
                if self.mode == "wrapped" and self._restart_reply is not None:
                    self.current = self._start_business()
                    self._answer_restart(f"OK restarted, pid {self.current.proc.pid}")
                    continue
                self._answer_restart(failed)
                self._release()
                self._set_state("exited")
                return code
        return None

    def _set_state(self, role: str) -> None:
        self.role = role
        write_state(self.env.shared, SlotState.now(self.env.slot, role, self.version, self.mode))
