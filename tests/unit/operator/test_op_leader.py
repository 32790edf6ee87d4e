"""Leader election's pure parts (podkit_operator.leader): the record a candidate writes and
expiry by the candidate's own clock; the operator client's default request timeout, against a
socket that accepts and never answers; ``/healthz`` on a real port. The election against a
real apiserver is tests/integration/test_operator_leader.py."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import urllib3

from podkit_operator import liveness
from podkit_operator.kube.client import API_ERRORS, KubeIO, TimeoutApiClient
from podkit_operator.leader import LeaseTimes, Observed, claim

T0 = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = datetime(2026, 12, 1, 12, 0, 2, tzinfo=UTC)


def test_a_new_lease_a_renewal_and_a_takeover() -> None:
    first = claim({}, "a", 15, T0)
    assert first == {"holderIdentity": "a", "leaseDurationSeconds": 15,
                     "acquireTime": "2026-12-01T12:00:00.123456Z",
                     "renewTime": "2026-12-01T12:00:00.123456Z", "leaseTransitions": 0}
    renewed = claim(first, "a", 15, T1)
    assert renewed["acquireTime"] == first["acquireTime"]
    assert renewed["renewTime"] == "2026-12-01T12:00:02.000000Z"
    assert renewed["leaseTransitions"] == 0
    taken = claim(renewed, "b", 15, T1)
    assert taken["holderIdentity"] == "b" and taken["leaseTransitions"] == 1
    assert taken["acquireTime"] == taken["renewTime"]
    released = {**taken, "holderIdentity": None}
    assert claim(released, "a", 15, T1)["leaseTransitions"] == 2


def test_expiry_counts_from_when_the_record_last_changed_on_our_clock() -> None:
    seen = Observed()
    record = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "whatever"}
    seen.see(record, now=100.0)
    assert seen.held_by_other("b", now=114.9)
    seen.see(dict(record), now=110.0)  # the same record again: the clock does not restart
    assert not seen.held_by_other("b", now=115.1)
    seen.see({**record, "renewTime": "later"}, now=116.0)  # renewed: held again
    assert seen.held_by_other("b", now=130.0)
    assert not seen.held_by_other("a", now=116.0)  # ours: never "held by another"
    seen.see({**record, "holderIdentity": None}, now=117.0)
    assert not seen.held_by_other("b", now=117.0)  # handed back: free at once


def test_lease_times_keep_the_leader_gone_before_a_standby_may_take_over() -> None:
    assert LeaseTimes().renew_deadline_s < LeaseTimes().duration_s
    with pytest.raises(ValueError):
        LeaseTimes(duration_s=10, renew_deadline_s=10)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_call_without_a_timeout_of_its_own_times_out(silent_server: int) -> None:
    api = TimeoutApiClient("test", timeout=(1.0, 0.3))
    api.configuration.host = f"http://127.0.0.1:{silent_server}"
    with pytest.raises(API_ERRORS) as raised:
        KubeIO(api).get_stsp("default", "web")  # the generated call passes no timeout
    assert isinstance(raised.value, urllib3.exceptions.MaxRetryError)
    assert isinstance(raised.value.reason, urllib3.exceptions.ReadTimeoutError)


def test_healthz_answers_from_the_start_and_says_who_leads() -> None:
    async def probe() -> list[str]:
        port = free_port()
        leading = [False]
        runner = await liveness.serve(port, lambda: leading[0])
        try:
            answers = [await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz")]
            leading[0] = True
            answers.append(await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz"))
            return answers
        finally:
            await runner.cleanup()

    assert asyncio.run(probe()) == ["ok: standby\n", "ok: leader\n"]


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())
