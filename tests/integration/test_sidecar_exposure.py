"""Who may read the sidecar's ``/state`` and ``/metrics``: a real ``podkit sidecar`` on all
addresses, asked from this machine's own non-loopback address (a peer outside the pod, as far as
the sidecar can tell) and from loopback (the pod's own containers).

No NetworkPolicy is involved: the sidecar itself refuses, so the test fails on any network,
enforcing or not, when it does not.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from podkit_operator.inplace.sidecar import read_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "t0ken-for-this-test-only"
OPEN = ("/healthz", "/readyz", "/readyz/slot/a")
PRIVATE = ("/state", "/metrics")


def outside_address() -> str:
    """An IPv4 address of this machine that is not loopback."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        address = line.split()[3].split("/")[0]
        if not ipaddress.ip_address(address).is_loopback:
            return address
    pytest.fail("this test needs a non-loopback IPv4 address on the machine (ip -4 addr)",
                pytrace=False)


def status(host: str, port: int, path: str, token: str | None = None) -> int:
    request = urllib.request.Request(f"http://{host}:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return err.code


def start_sidecar(tmp_path: Path, cli, h, token: str | None) -> Iterator[int]:
    env = {"PODKIT_SIDECAR_TOKEN": token} if token is not None else {}
    proc = cli.start("sidecar", "--dir", str(tmp_path), "--address", "0.0.0.0", "--port", "0",
                     stdout=subprocess.PIPE, **env)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("podkit sidecar: serving"), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.fixture
def with_token(tmp_path: Path, cli, h) -> Iterator[int]:
    yield from start_sidecar(tmp_path, cli, h, TOKEN)


@pytest.fixture
def without_token(tmp_path: Path, cli, h) -> Iterator[int]:
    yield from start_sidecar(tmp_path, cli, h, None)


def test_outside_the_pod_state_and_metrics_need_the_token(with_token: int) -> None:
    host = outside_address()
    assert {p: status(host, with_token, p) for p in OPEN} == {
        "/healthz": 200, "/readyz": 503, "/readyz/slot/a": 503}  # the kubelet's probes
    for path in PRIVATE:
        assert status(host, with_token, path) == 401, path
        assert status(host, with_token, path, "wrong") == 401, path
        assert status(host, with_token, path, TOKEN) == 200, path


def test_inside_the_pod_loopback_reads_without_a_token(with_token: int) -> None:
    for path in PRIVATE:
        assert status("127.0.0.1", with_token, path) == 200, path


def test_without_a_token_nobody_outside_reads_state(without_token: int) -> None:
    host = outside_address()
    for path in PRIVATE:
        assert status(host, without_token, path) == 401, path
        assert status(host, without_token, path, "") == 401, path
        assert status("127.0.0.1", without_token, path) == 200, path


def test_the_operator_reads_state_with_the_pods_token_only(with_token: int) -> None:
    host = outside_address()
    state = read_state(host, TOKEN, port=with_token, timeout=10)
    assert state is not None and state["ready"] is False
    assert json.dumps(state)  # a JSON document, as the operator's config check reads it
    assert read_state(host, None, port=with_token, timeout=10) is None
