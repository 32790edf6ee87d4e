"""Unit tests of podkit.reload.ConfigReloader: the real watchdog observer on a tmp directory,
hooks ``none`` and ``command:`` (real subprocesses), results read back through ``status()``
and the Prometheus registry.

Waits poll with a generous deadline (a liveness bound, never a timed assertion).
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from podkit.configdir import content_hash, hash_files, write_like_kubelet
from podkit.errors import PodkitError
from podkit.layout import SharedDir
from podkit.localpod import wait_until
from podkit.reload import ConfigReloader, Hook

LIVENESS_S = 30.0


class ProbedReloader(ConfigReloader):
    """The real reloader, counting the debounced checks it makes (whether or not the hash
    changed), so a test can wait for "the watcher looked" before asserting that nothing fired."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks = 0

    def _on_change(self, detected_ns: int) -> None:
        super()._on_change(detected_ns)
        self.checks += 1


def wait_for(check: Callable[[], Any], what: str) -> Any:
    try:
        return wait_until(check, what, LIVENESS_S)
    except PodkitError as exc:
        pytest.fail(str(exc), pytrace=False)


def wait_reload(reloader: ConfigReloader, previous: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """The next ``last_reload`` in ``status()`` that differs from ``previous``."""
    def fresh() -> dict[str, Any] | None:
        last = reloader.status()["last_reload"]
        return last if last is not None and last != previous else None
    return wait_for(fresh, "a config reload")


def reloads(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("podkit_config_reloads_total", {"result": result}) or 0.0


class Watch:
    def __init__(self, reloader: ProbedReloader, registry: CollectorRegistry,
                 directory: Path) -> None:
        self.reloader, self.registry, self.directory = reloader, registry, directory

    def counts(self) -> tuple[float, float]:
        return reloads(self.registry, "ok"), reloads(self.registry, "failed")


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[..., Watch]]:
    """A factory: ``watch("none", initial={...})`` starts a reloader on ``tmp_path/cfg``
    (written the kubelet's way when ``initial`` is given, else a plain empty directory)."""
    started: list[ConfigReloader] = []

    def make(hook: str, initial: dict[str, bytes] | None = None,
             timeout_s: float = 30.0) -> Watch:
        directory = tmp_path / f"cfg{len(started)}"
        if initial is None:
            directory.mkdir()
        else:
            write_like_kubelet(directory, initial)
        registry = CollectorRegistry()
        reloader = ProbedReloader(SharedDir(tmp_path / "pod"), [directory], Hook.parse(hook),
                                  registry, timeout_s=timeout_s)
        reloader.start()
        started.append(reloader)
        return Watch(reloader, registry, directory)

    yield make
    for reloader in started:
        reloader.stop()


def test_kubelet_update_fires_the_hook_once(watch: Callable[..., Watch], tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    hook = f"command:sh -c {shlex.quote(f'echo fired >> {log}')}"
    w = watch(hook, initial={"greeting": b"hello"})
    key = str(w.directory)
    assert w.reloader.status() == {"hook": hook, "hashes": {key: hash_files({"greeting":
                                                                             b"hello"})},
                                   "last_reload": None}

    new = {"greeting": b"bonjour", "extra": b"1"}
    write_like_kubelet(w.directory, new)
    last = wait_reload(w.reloader)
    assert last["ok"] is True, last
    assert last["hook"] == hook
    assert last["hashes"] == {key: hash_files(new)}
    assert w.reloader.status()["hashes"] == {key: hash_files(new)}
    assert last["detected_ns"] <= last["finished_ns"]
    assert last["at"] > 0
    assert w.counts() == (1.0, 0.0)
    assert log.read_text() == "fired\n"
    assert w.registry.get_sample_value("podkit_config_reload_seconds_count") == 1.0
    assert w.registry.get_sample_value(
        "podkit_config_last_reload_timestamp_seconds") == pytest.approx(last["at"])

    # the next change fires again, exactly once more
    newer = {"greeting": b"hola"}
    write_like_kubelet(w.directory, newer)
    again = wait_reload(w.reloader, last)
    assert again["hashes"] == {key: hash_files(newer)}
    assert w.counts() == (2.0, 0.0)
    assert log.read_text() == "fired\nfired\n"


def test_identical_content_fires_nothing(watch: Callable[..., Watch]) -> None:
    files = {"greeting": b"hello", "other": b"x"}
    w = watch("none", initial=files)
    before = w.reloader.status()

    write_like_kubelet(w.directory, dict(reversed(list(files.items()))))  # same data
    wait_for(lambda: w.reloader.checks >= 1, "the watcher to see the ..data swap")
    assert w.reloader.status() == before
    assert w.counts() == (0.0, 0.0)

    write_like_kubelet(w.directory, {"greeting": b"changed", "other": b"x"})
    last = wait_reload(w.reloader)
    assert last["ok"] is True and last["message"] == "no hook" and last["hook"] == "none"
    assert w.counts() == (1.0, 0.0)


def test_plain_directory_fires_on_a_written_file(watch: Callable[..., Watch]) -> None:
    w = watch("none")
    key = str(w.directory)
    assert w.reloader.status()["hashes"] == {key: hash_files({})}

    with open(w.directory / "greeting", "wb") as f:
        f.write(b"hello from a plain dir")
    last = wait_reload(w.reloader)
    assert last["ok"] is True
    assert last["hashes"] == {key: hash_files({"greeting": b"hello from a plain dir"})}

    (w.directory / "greeting").unlink()
    gone = wait_reload(w.reloader, last)
    assert gone["hashes"] == {key: hash_files({})}
    assert w.counts() == (2.0, 0.0)


@pytest.mark.parametrize("command, says", [
    ("false", "hook command exited 1"),
    ("sh -c 'echo broken config >&2; exit 3'", "hook command exited 3: broken config"),
    ("/nonexistent/reload-hook", "hook command not found: /nonexistent/reload-hook"),
    ("{not_executable}", "cannot run"),
])
def test_failing_command_hook_is_recorded(watch: Callable[..., Watch], tmp_path: Path,
                                          command: str, says: str) -> None:
    script = tmp_path / "reload.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    w = watch("command:" + command.format(not_executable=script), initial={"a": b"1"})

    write_like_kubelet(w.directory, {"a": b"2"})
    last = wait_reload(w.reloader)
    assert last["ok"] is False
    assert says in last["message"], last
    assert last["hashes"] == {str(w.directory): hash_files({"a": b"2"})}
    assert w.counts() == (0.0, 1.0)


def test_timed_out_hook_is_recorded(watch: Callable[..., Watch]) -> None:
    w = watch("command:sleep 5", initial={"a": b"1"}, timeout_s=0.5)
    write_like_kubelet(w.directory, {"a": b"2"})
    last = wait_reload(w.reloader)
    assert last["ok"] is False
    assert last["message"] == "hook command timed out after 0.5s"
    assert w.counts() == (0.0, 1.0)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_timed_out_hook_leaves_no_process_behind(watch: Callable[..., Watch],
                                                 tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    # 2 s is plenty for sh to start the sleep and write its pid before the timeout
    w = watch(f"command:sh -c {shlex.quote(script)}", initial={"a": b"1"}, timeout_s=2.0)
    write_like_kubelet(w.directory, {"a": b"2"})
    last = wait_reload(w.reloader)
    sleeper = int(pid_file.read_text())
    try:
        assert "timed out" in last["message"]
        wait_for(lambda: not _alive(sleeper), f"the hook's child sleep (pid {sleeper}) to die")
    finally:
        if _alive(sleeper):
            os.kill(sleeper, signal.SIGKILL)


def test_signal_hook_without_an_active_slot_is_reported(watch: Callable[..., Watch]) -> None:
    w = watch("signal:HUP", initial={"a": b"1"})
    write_like_kubelet(w.directory, {"a": b"2"})
    last = wait_reload(w.reloader)
    assert last["ok"] is False
    assert last["message"].startswith("no single active slot to run signal:HUP in"), last
    assert w.counts() == (0.0, 1.0)


def test_missing_config_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PodkitError, match="does not exist; mount the ConfigMap there"):
        ConfigReloader(SharedDir(tmp_path), [tmp_path / "absent"], Hook.parse("none"),
                       CollectorRegistry())
    assert content_hash(tmp_path) == hash_files({})
