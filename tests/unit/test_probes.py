"""podkit.probes: the business's probes as the sidecar reads them, and their verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podkit.errors import PodkitError
from podkit.layout import SharedDir
from podkit.probes import Probe, ProbeRunner, parse_probes


def test_parse_keeps_http_and_tcp_with_kubernetes_defaults() -> None:
    probes = parse_probes(json.dumps({
        "readiness": {"httpGet": {"path": "/ok", "port": 8080}, "periodSeconds": 2},
        "liveness": {"tcpSocket": {"port": 7000}},
        "startup": {"exec": {"command": ["true"]}}}))  # exec: not run by the sidecar
    assert [(p.kind, p.action, p.port) for p in probes] == [("readiness", "http", 8080),
                                                            ("liveness", "tcp", 7000)]
    ready, live = probes
    assert (ready.path, ready.period_s, ready.failure_threshold, ready.host) == (
        "/ok", 2.0, 3, "127.0.0.1")
    assert (live.period_s, live.timeout_s, live.success_threshold) == (10.0, 1.0, 1)
    assert parse_probes("") == [] and parse_probes(None) == []


@pytest.mark.parametrize("text, message", [
    ("{", "PODKIT_PROBES is not JSON"),
    ('{"ready": {}}', "keys among startup, readiness, liveness"),
    ('{"readiness": {"httpGet": {"port": "http"}}}', "is not a port number"),
])
def test_bad_probes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PodkitError, match=message):
        parse_probes(text)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_verdicts_follow_thresholds_and_never_fail_another_slot(tmp_path: Path,
                                                                monkeypatch) -> None:
    """The runner over a fake view of the slots (the active one is ``a``, pid 1)."""
    from types import SimpleNamespace

    import podkit.probes as probes_module

    active = {"slot": "a", "pid": 1}
    monkeypatch.setattr(probes_module, "observe", lambda shared: SimpleNamespace(
        active_slots=[active["slot"]],
        slots={active["slot"]: SimpleNamespace(state=SimpleNamespace(**active))}))
    results = {"readiness": True}
    probe = Probe("readiness", "http", 80, period_s=1, failure_threshold=2, success_threshold=2)
    clock = Clock()
    runner = ProbeRunner(SharedDir(tmp_path), [probe],
                         run=lambda p: (results[p.kind], "HTTP 200" if results[p.kind]
                                        else "HTTP 500"), clock=clock)

    def tick(seconds: float = 1.0) -> None:
        clock.now += seconds
        runner.tick()

    tick()
    assert runner.verdict("a") == (True, "slot a: the business's probes pass")
    results["readiness"] = False
    tick()
    assert runner.verdict("a")[0]  # one failure of two
    tick()
    ok, reason = runner.verdict("a")
    assert not ok and "failed 2 times: HTTP 500" in reason
    assert runner.verdict("b")[0]  # not the active slot
    results["readiness"] = True
    tick()
    assert not runner.verdict("a")[0]  # one success of two
    tick()
    assert runner.verdict("a")[0]
    results["readiness"] = False
    tick()
    tick()
    assert not runner.verdict("a")[0]
    active["pid"] = 2  # another process took over the slot: it starts ready
    tick(0.01)
    assert runner.verdict("a")[0]
    assert runner.status()["pid"] == 2
