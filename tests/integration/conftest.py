"""Shared fixtures of the slot tests: the real ``podkit`` CLI, a two-slot pod of local
processes running the business stub, an in-process sidecar, and /proc helpers.

Every wait here is a liveness bound (a broken protocol fails instead of hanging), never a
timed assertion: the machine is shared and slow moments are normal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from podkit.errors import PodkitError
from podkit.layout import SharedDir
from podkit.localpod import LocalPod, wait_until
from podkit.sidecar import Sidecar
from testbed.fixtures import build_kubernetes_first

LIVENESS_S = 20.0  # how long a step may take before the test calls it broken
PODKIT = (sys.executable, "-m", "podkit")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The API-only clusters' tests need the patched Kubernetes: built before any test."""
    build_kubernetes_first(session)


# --- the CLI ---------------------------------------------------------------------------------

@dataclass
class Cli:
    """Runs ``python -m podkit`` with a controlled environment."""

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PODKIT_")}
        for key, value in overrides.items():
            if value is not None:
                env[key] = value
        return env

    def run(self, *args: str, timeout: float = LIVENESS_S,
            **env: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PODKIT, *args], env=self.env(**env), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, *args: str, stdout: int | None = subprocess.DEVNULL,
              **env: str | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*PODKIT, *args], env=self.env(**env), stdout=stdout,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def probe(self, shared: SharedDir) -> tuple[int, str]:
        """``podkit probe ready``: (exit code, the reason it printed)."""
        done = self.run("probe", "ready", "--dir", str(shared.root))
        return done.returncode, done.stdout.strip()


@pytest.fixture
def cli() -> Cli:
    return Cli()


# --- a pod of two slots running the stub -------------------------------------------------------

@dataclass
class StubPod:
    pod: LocalPod
    log: Path

    @property
    def shared(self) -> SharedDir:
        return self.pod.shared

    def events(self) -> list[tuple[str, str, str, int]]:
        """(event, slot, version, pid) of every line the stubs logged so far."""
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            event, slot, version, pid, _ = line.split()
            rows.append((event, slot, version, int(pid)))
        return rows

    def wait_event(self, event: str, slot: str, version: str) -> int:
        """Wait until a stub logs ``event`` for (slot, version); return its pid."""
        pid = wait_for(lambda: next((p for e, s, v, p in reversed(self.events())
                                     if (e, s, v) == (event, slot, version)), None),
                       f"stub event {event} {slot} {version}")
        assert pid is not None
        return pid


@pytest.fixture
def stub_pod(tmp_path: Path) -> Iterator[Callable[[str], StubPod]]:
    """A factory: ``stub_pod("warm")`` or ``stub_pod("wrapped")``; every pod is killed after."""
    pods: list[LocalPod] = []

    def make(mode: str) -> StubPod:
        log = tmp_path / f"events-{len(pods)}.log"
        pod = LocalPod(tmp_path / f"pod-{len(pods)}", lambda slot, version: [
            sys.executable, "-m", "benchmarks.stub", "--log", str(log), "--mode", mode],
            mode=mode)
        pods.append(pod)
        return StubPod(pod, log)

    yield make
    for pod in pods:
        pod.close()


# --- the sidecar ---------------------------------------------------------------------------------

@dataclass
class Http:
    status: int
    body: str


def http_get(port: int, path: str) -> Http:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=LIVENESS_S) as r:
            return Http(r.status, r.read().decode())
    except urllib.error.HTTPError as err:
        return Http(err.code, err.read().decode())


@pytest.fixture
def sidecar_for() -> Iterator[Callable[[SharedDir], Sidecar]]:
    """A factory of in-process sidecars on a free loopback port; all shut down after."""
    started: list[Sidecar] = []

    def make(shared: SharedDir) -> Sidecar:
        sidecar = Sidecar(shared, address="127.0.0.1", port=0)
        sidecar.start_in_background()
        started.append(sidecar)
        return sidecar

    yield make
    for sidecar in started:
        sidecar.shutdown()


def state_json(port: int) -> dict:
    reply = http_get(port, "/state")
    assert reply.status == 200, reply
    return json.loads(reply.body)


# --- waiting and /proc -----------------------------------------------------------------------

def wait_for(check: Callable[[], object], what: str, timeout: float = LIVENESS_S) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    try:
        return wait_until(check, what, timeout)
    except PodkitError as exc:
        pytest.fail(str(exc), pytrace=False)


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (of all its threads)."""
    children: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for task in tasks:
        try:
            children += [int(c) for c in
                         Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            pass
    return children


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (tells a process from a later one with its pid);
    ``None`` when no such process runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def wait_gone(pid: int, started: int, what: str) -> None:
    wait_for(lambda: start_time(pid) != started, f"{what} (pid {pid}) to die")


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def h() -> SimpleNamespace:
    """The helpers above, for test modules (a conftest is not imported by name)."""
    return SimpleNamespace(wait_for=wait_for, children_of=children_of, start_time=start_time,
                           wait_gone=wait_gone, sigkill=sigkill, http_get=http_get,
                           state_json=state_json, LIVENESS_S=LIVENESS_S)
