"""Wrapped slots that hold their listeners (``podkit run --listen ... --pass ...``): servers
nobody here wrote swap under an HTTP client without a failed request.

* Debian's nginx, unmodified, inherits the listener through ``NGINX`` and stops on ``QUIT``;
* a small C server built here from the socket-activation protocol alone (``sd_listen_fds(3)``:
  ``LISTEN_PID``, ``LISTEN_FDS``, ``LISTEN_FDNAMES``, descriptors from 3).

The swaps and the client are :mod:`benchmarks.wrapped`'s, which ``make bench-wrapped``
runs. The gap each run saw is printed, never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.swaps import free_port
from benchmarks.wrapped import (
    HttpLoad,
    LoadResult,
    ensure_nginx,
    inherited_args,
    nginx_pod,
    swaps_under_load,
)
from podkit.layout import SharedDir
from podkit.localpod import LocalPod
from podkit.lock import lock_is_held
from podkit.slot_records import read_state
from testbed import host

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SWAPS = 50

SOCKET_ACTIVATED_C = r"""
/* An HTTP server that takes its listeners from socket activation, as sd_listen_fds(3) says:
   LISTEN_PID must be this process, LISTEN_FDS listeners start at descriptor 3, and
   LISTEN_FDNAMES names them. It serves the one named "web" (the others stay open, unused),
   answering every request with REPLY. On SIGTERM, its graceful stop, it closes its
   listeners, finishes the connection in hand and, if GATE is not "-", waits for the file GATE
   to exist (in-flight work that takes a while) before it exits 0.
   argv: REPLY GATE */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;
static void on_term(int signum) { (void)signum; stopping = 1; }

static int fail(const char *what) { fprintf(stderr, "socket-activated: %s\n", what); return 3; }

static void answer(int conn, const char *reply) {
    struct timeval limit = {.tv_sec = 5};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    char request[4096];
    size_t have = 0;
    while (have < sizeof request - 1) {
        ssize_t got = read(conn, request + have, sizeof request - 1 - have);
        if (got < 0 && errno == EINTR) continue;     /* SIGTERM: this request is in hand */
        if (got <= 0) return;
        have += got;
        request[have] = '\0';
        if (strstr(request, "\r\n\r\n")) break;
    }
    char response[512];
    int n = snprintf(response, sizeof response, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n", strlen(reply) + 1, reply);
    if (write(conn, response, n) != n) perror("write");
}

int main(int argc, char **argv) {
    if (argc != 3) return fail("usage: socket-activated REPLY GATE");
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (!pid || atol(pid) != (long)getpid()) return fail("LISTEN_PID is not this process");
    if (!fds || atoi(fds) < 1 || !names) return fail("no LISTEN_FDS or LISTEN_FDNAMES");
    int count = atoi(fds), web = -1, index = 0;
    char *list = strdup(names);
    for (char *name = strtok(list, ":"); name; name = strtok(NULL, ":"), index++)
        if (strcmp(name, "web") == 0) web = 3 + index;
    if (index != count) return fail("LISTEN_FDNAMES does not name LISTEN_FDS listeners");
    if (web < 0) return fail("no listener named web in LISTEN_FDNAMES");
    struct sigaction term = {.sa_handler = on_term, .sa_flags = SA_RESTART};
    sigaction(SIGTERM, &term, NULL);
    while (!stopping) {
        struct pollfd wait = {.fd = web, .events = POLLIN};
        if (poll(&wait, 1, 50) <= 0) continue;      /* 50 ms: to see the stop flag */
        int conn = accept(web, NULL, NULL);
        if (conn < 0) continue;                      /* EAGAIN: nothing for us after all */
        answer(conn, argv[1]);
        close(conn);
    }
    for (int fd = 3; fd < 3 + count; fd++) close(fd);
    while (strcmp(argv[2], "-") != 0 && access(argv[2], F_OK) != 0) usleep(10000);
    return 0;
}
"""

# The environment and descriptors a wrapped slot's business sees, written to argv[1].
REPORT_WHAT_I_GOT = """
import json, os, socket, sys, time
fds = {}
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue  # the listing's own descriptor, closed by now
    if fd > 2 and target.startswith("socket:"):
        with socket.socket(fileno=os.dup(fd)) as sock:
            fds[fd] = ["tcp" if sock.type == socket.SOCK_STREAM else "udp",
                       sock.getsockname()[1]]
    elif fd > 2:
        fds[fd] = target
variables = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NGINX", "PODKIT_LISTENERS")
json.dump({"pid": os.getpid(), "fds": fds,
           "env": {k: os.environ[k] for k in variables if k in os.environ}},
          open(sys.argv[1] + ".tmp", "w"))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(3600)
"""


def report(result: LoadResult, what: str) -> None:
    print(f"{what}: {SWAPS} swaps, {result.sent} requests, {result.failed} failed, "
          f"longest gap {result.max_gap_ms} ms")


@pytest.fixture(scope="module")
def socket_activated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C server, compiled with gcc (installed when missing)."""
    host.ensure_packages(["gcc", "libc6-dev"])
    build = tmp_path_factory.mktemp("socket-activated")
    (build / "server.c").write_text(SOCKET_ACTIVATED_C)
    done = subprocess.run(["gcc", "-Wall", "-Werror", "-O1", "-o", "server", "server.c"],
                          cwd=build, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return build / "server"


@pytest.fixture
def pods() -> Iterator[list[LocalPod]]:
    started: list[LocalPod] = []
    yield started
    for pod in started:
        pod.close(graceful=True)


def c_pod(root: Path, server: Path, web: int, rtp: int, gate: Callable[[str, str], str],
          *extra: str) -> LocalPod:
    """Wrapped slots running the C server with listeners rtp (udp, fd 3) and web (fd 4)."""
    return LocalPod(root, lambda slot, version: [str(server), f"{version} {slot}",
                                                 gate(slot, version)], mode="wrapped",
                    run_args=["--listen", f"rtp=udp://127.0.0.1:{rtp}",
                              *inherited_args(web, "systemd", "TERM"), *extra])


# --- the proof: real servers swapped under a client -------------------------------------------

def test_unmodified_nginx_swaps_50_times_without_a_failed_request(tmp_path: Path,
                                                                  pods: list[LocalPod]) -> None:
    ensure_nginx()
    port = free_port()
    pod = nginx_pod(tmp_path, port, inherited=True)
    pods.append(pod)
    result = swaps_under_load(pod, port, SWAPS)
    report(result, "nginx, inherited listeners")
    assert result.failed == 0, result.failures
    # every version answered (swaps_under_load waited for each), and nothing else did
    assert set(result.replies) == {f"v{n} {'ab'[n % 2]}" for n in range(SWAPS + 1)}
    for slot in "ab":  # nginx took the socket podkit passed; it bound nothing itself
        assert 'using inherited sockets from "3;"' in (tmp_path / f"nginx-{slot}" /
                                                        "error.log").read_text()
    assert processes_logging_to(tmp_path) == []  # the pod's stop stopped every nginx


def processes_logging_to(directory: Path) -> list[int]:
    """The processes whose stderr is a file below ``directory``."""
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.readlink(f"/proc/{name}/fd/2").startswith(f"{directory}/"):
                found.append(int(name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def test_socket_activated_server_swaps_50_times_without_a_failed_request(
        tmp_path: Path, socket_activated: Path, pods: list[LocalPod]) -> None:
    web, rtp = free_port(), free_port()
    pod = c_pod(tmp_path / "pod", socket_activated, web, rtp, lambda slot, version: "-")
    pods.append(pod)
    result = swaps_under_load(pod, web, SWAPS)
    report(result, "socket-activated C server")
    assert result.failed == 0, result.failures
    assert set(result.replies) == {f"v{n} {'ab'[n % 2]}" for n in range(SWAPS + 1)}


# --- the stop ------------------------------------------------------------------------------

def test_the_lock_goes_when_the_server_closes_its_listeners_not_when_it_exits(
        tmp_path: Path, socket_activated: Path, pods: list[LocalPod], h) -> None:
    """The old server, stopped, closes its listeners and then works on (until its gate file
    exists): the successor is active and answers meanwhile, and the old slot says stopping."""
    web, rtp = free_port(), free_port()
    pod = c_pod(tmp_path / "pod", socket_activated, web, rtp,
                lambda slot, version: str(tmp_path / f"gate-{slot}-{version}"))
    pods.append(pod)
    pod.start("v1")
    load = HttpLoad(web, rate=200).start()
    try:
        h.wait_for(lambda: load.has_reply("v1 a"), "v1 to answer")
        assert pod.stop("b") == 0  # the pause
        pod.start_business("b", "v2")
        pod.wait_role("b", "standby", "v2")
        old = pod.procs["a"]
        old.send_signal(signal.SIGTERM)
        pod.wait_role("b", "active", "v2")
        h.wait_for(lambda: load.has_reply("v2 b"), "v2 to answer")
        state = read_state(pod.shared, "a")
        assert state is not None and state.role == "stopping"
        assert old.poll() is None  # its server still works on, behind its gate
        (tmp_path / "gate-a-v1").touch()
        assert old.wait(h.LIVENESS_S) == 0
        del pod.procs["a"]
    finally:
        result = load.stop()
    assert result.failed == 0, result.failures
    assert lock_is_held(pod.shared.lock_file)


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None


def test_a_server_that_ignores_its_stop_signal_is_killed_at_the_bound(
        tmp_path: Path, cli, h) -> None:
    shared = SharedDir(tmp_path)
    proc = cli.start("run", "--listen", f"web=tcp://127.0.0.1:{free_port()}",
                     "--stop-timeout", "1", "--", "sh", "-c", "trap '' TERM; exec sleep 600",
                     PODKIT_SLOT="a", PODKIT_VERSION="v1", PODKIT_DIR=str(tmp_path))
    try:
        # sleep, exec'd by the shell once SIGTERM is ignored (it inherits that)
        h.wait_for(lambda: any(comm(child) == "sleep" for child in h.children_of(proc.pid)),
                   "the server to start")
        assert lock_is_held(shared.lock_file)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(h.LIVENESS_S) == 128 + signal.SIGKILL
        state = read_state(shared, "a")
        assert state is not None and state.role == "exited"
        assert not lock_is_held(shared.lock_file)
        assert not shared.handoff_socket.exists()
    finally:
        proc.kill()
        proc.wait()


# --- what the server gets --------------------------------------------------------------------

EXPECTED_ENV = {
    "systemd": lambda pid: {"LISTEN_FDS": "2", "LISTEN_PID": str(pid),
                            "LISTEN_FDNAMES": "web:rtp"},
    "nginx": lambda pid: {"NGINX": "3;4;"},
}


@pytest.mark.parametrize("style", ["systemd", "nginx", "podkit"])
def test_each_style_passes_the_listeners_at_3_and_4_and_nothing_else(
        style: str, tmp_path: Path, cli, h) -> None:
    web, rtp = free_port(), free_port()
    out = tmp_path / "got.json"
    stray_r, stray_w = os.pipe()  # inheritable in podkit: it must not reach the server
    os.set_inheritable(stray_r, True)
    # PODKIT_LISTENERS and LISTEN_FDS in podkit's own environment: the server sees only its
    # style's variables
    env = cli.env(PODKIT_SLOT="a", PODKIT_VERSION="v1", PODKIT_DIR=str(tmp_path),
                  PODKIT_LISTENERS="[]", LISTEN_FDS="9")
    proc = subprocess.Popen(
        [sys.executable, "-m", "podkit", "run", "--listen", f"web=tcp://127.0.0.1:{web}",
         "--listen", f"rtp=udp://127.0.0.1:{rtp}", "--pass", style, "--",
         sys.executable, "-c", REPORT_WHAT_I_GOT, str(out)],
        env=env, pass_fds=[stray_r], stdin=subprocess.DEVNULL)
    os.close(stray_r)
    try:
        h.wait_for(lambda: out.exists() or proc.poll() is not None, "the server's report")
        assert out.exists(), f"podkit exited with {proc.returncode} before the server reported"
        got = json.loads(out.read_text())
    finally:
        proc.kill()
        proc.wait()
        os.close(stray_w)
    assert got["fds"] == {"3": ["tcp", web], "4": ["udp", rtp]}
    if style == "podkit":
        assert list(got["env"]) == ["PODKIT_LISTENERS"]
        entries = json.loads(got["env"]["PODKIT_LISTENERS"])
        assert [(e["name"], e["type"], e["fd"], e["address"]["port"]) for e in entries] == [
            ("web", "tcp", 3, web), ("rtp", "udp", 4, rtp)]
    else:
        assert got["env"] == EXPECTED_ENV[style](got["pid"])


# --- what podkit run refuses ----------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--pass", "nginx"], "--pass says how to pass the listeners of --listen"),
    (["--listen", "web=tcp:0.0.0.0:80"], "is not valid; write NAME=tcp://HOST:PORT"),
    (["--listen", "web=tcp://127.0.0.1:0", "--stop-signal", "NOPE"],
     "--stop-signal: unknown signal NOPE"),
    (["--listen", "web=tcp://127.0.0.1:0", "--stop-timeout", "0"],
     "--stop-timeout 0 must be more than 0 seconds"),
    (["--mode", "warm", "--listen", "web=tcp://127.0.0.1:0"],
     "--listen, --pass and --stop-signal are for wrapped mode"),
])
def test_run_refuses_bad_listener_options(args: list[str], message: str, tmp_path: Path,
                                          cli) -> None:
    done = cli.run("run", *args, "--", "true", PODKIT_SLOT="a", PODKIT_VERSION="v1",
                   PODKIT_DIR=str(tmp_path))
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr
