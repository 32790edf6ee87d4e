"""Start long-running processes detached, record them by PID, stop them by PID.

A process outlives the `up` command that started it (its own session, no terminal), so its
PID goes to `<name>.pid` beside its `<name>.log`, with the process's start time: before
signalling a recorded PID we check that the process with that PID started at that time, so a
recycled PID is never hit (the executable's path is no proof: its directory may be renamed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import TestbedError

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Proc:
    """One supervised process: its name, and the directory its pid and log files live in."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded PID, if the process with that PID is still the one we started."""
        try:
            pid_text, started = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if _start_time(pid) == started else None

    def alive(self) -> bool:
        pid = self.pid()
        return pid is not None and _running(pid)

    def start(self, argv: list[str], *, env: dict[str, str] | None = None) -> int:
        """Start `argv` detached with its output in the log; record and return its PID."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env, close_fds=True)
        self.pid_file.write_text(f"{child.pid} {_start_time(child.pid)}\n")
        return child.pid

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; forget the PID either way."""
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, timeout)
        self.pid_file.unlink(missing_ok=True)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return log_tail(self.log_file, lines)
        except OSError:
            return "(no log)"

    def failure(self, what: str) -> TestbedError:
        """An error that names this component and shows the end of its log."""
        return TestbedError(f"{self.name}: {what}; last lines of {self.log_file}:\n{self.tail()}")


def log_tail(path: Path, lines: int, keep: Callable[[str], bool] | None = None) -> str:
    """The last ``lines`` lines of the log at ``path`` (only those ``keep`` keeps, when
    given), read line by line so a large log costs no more memory than its tail; raises
    OSError when it cannot be read."""
    with open(path, errors="replace") as text:
        last = deque((line.rstrip("\n") for line in text if keep is None or keep(line)),
                     maxlen=lines)
    return "\n".join(last)


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """Terminate one process by PID, escalating to SIGKILL after `timeout` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _running(pid):
        time.sleep(0.05)


def _start_time(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _running(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(check, *, timeout: float, proc: Proc | None, what: str,
               interval: float = 0.25) -> None:
    """Poll `check()` until true; fail naming `proc` (and its log) if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure of a probe means "not yet"
            pass
        if proc is not None and not proc.alive():
            raise proc.failure(f"exited while waiting for {what}")
        if time.monotonic() > deadline:
            if proc is not None:
                raise proc.failure(f"not {what} after {timeout:.0f}s")
            raise TestbedError(f"not {what} after {timeout:.0f}s")
        time.sleep(interval)
