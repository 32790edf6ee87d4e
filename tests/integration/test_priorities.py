"""CPU priorities of a warm business in any language: a C business built here from the
documented protocol alone (:mod:`podkit.slot`), with threads and a worker process started
before READY, starts ``SCHED_IDLE`` where the slot may come back from it, and every one of its
threads is ``SCHED_OTHER`` once it waits on the lock and once it is active, without doing
anything about priorities itself. Without ``CAP_SYS_NICE`` it never goes idle.

The test stands in for the active peer: it holds the hand-over lock until it lets the
business take it. The business waits at a gate before READY, so its idle start is observed,
not raced.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from podkit.cpu import has_cap_sys_nice
from podkit.localpod import LocalPod
from podkit.lock import OfdLock
from podkit.reload import Hook, HookRunner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

THREADS = 3  # started by the business before READY, besides its main thread
DROP_CAP_SYS_NICE = ["setpriv", "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", "--"]

BUSINESS_C = r"""
/* A warm-mode business from podkit's protocol alone. argv: GATE_DIR THREADS [--no-ready].
   It forks a worker (with a thread of its own), starts THREADS threads, creates
   GATE_DIR/<pid>.waiting and waits for GATE_DIR/<pid>.go; then it says READY (unless
   --no-ready), takes the hand-over lock, says ACTIVE and serves until SIGTERM, when it releases
   the lock, says RELEASED and exits. SIGTERM before it is active ends it (default action). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;
static int control;

static void on_term(int signum) { (void)signum; stopping = 1; }

static void say(const char *message) {
    if (write(control, message, strlen(message)) != (ssize_t)strlen(message)) {
        perror("PODKIT_CONTROL_FD");
        exit(2);
    }
}

static void *sleeper(void *arg) { (void)arg; for (;;) pause(); return NULL; }

static void start_thread(void) {
    pthread_t thread;
    int err = pthread_create(&thread, NULL, sleeper, NULL);
    if (err) { fprintf(stderr, "pthread_create: %s\n", strerror(err)); exit(2); }
}

int main(int argc, char **argv) {
    const char *fd = getenv("PODKIT_CONTROL_FD"), *dir = getenv("PODKIT_DIR");
    if (argc < 3 || !fd || !dir) {
        fprintf(stderr, "usage: PODKIT_CONTROL_FD=.. PODKIT_DIR=.. %s GATE_DIR THREADS\n", argv[0]);
        return 2;
    }
    control = atoi(fd);
    int ready = !(argc > 3 && strcmp(argv[3], "--no-ready") == 0);

    /* SIGTERM goes to the main thread only: the others and the worker block it. */
    sigset_t term, unblocked;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, &unblocked);
    int started[2];
    char byte = '!';
    if (pipe(started) != 0) { perror("pipe"); return 2; }
    pid_t worker = fork();
    if (worker < 0) { perror("fork"); return 2; }
    if (worker == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        start_thread();
        if (write(started[1], &byte, 1) != 1) _exit(2);
        for (;;) pause();
    }
    if (read(started[0], &byte, 1) != 1) { perror("the worker"); return 2; }
    for (int i = 0; i < atoi(argv[2]); i++) start_thread();
    pthread_sigmask(SIG_SETMASK, &unblocked, NULL);

    char path[4096];
    snprintf(path, sizeof path, "%s/%d.waiting", argv[1], (int)getpid());
    close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    snprintf(path, sizeof path, "%s/%d.go", argv[1], (int)getpid());
    while (access(path, F_OK) != 0) usleep(10000);

    if (ready) say("READY\n");
    snprintf(path, sizeof path, "%s/handover.lock", dir);
    int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock < 0) { perror(path); return 1; }
    struct flock whole = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(lock, F_OFD_SETLKW, &whole) != 0) { perror("F_OFD_SETLKW"); return 1; }

    pthread_sigmask(SIG_BLOCK, &term, NULL);  /* a SIGTERM from here on waits for sigsuspend */
    struct sigaction action = {.sa_handler = on_term};
    sigaction(SIGTERM, &action, NULL);
    say("ACTIVE\n");
    while (!stopping) sigsuspend(&unblocked);
    close(lock);
    say("RELEASED\n");
    kill(worker, SIGKILL);
    waitpid(worker, NULL, 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def business(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C business, compiled with gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the C business of these tests; install it "
                    "(apt-get install gcc)", pytrace=False)
    build = tmp_path_factory.mktemp("c-business")
    (build / "business.c").write_text(BUSINESS_C)
    done = subprocess.run([gcc, "-Wall", "-Werror", "-O1", "-pthread", "-o", "business",
                           "business.c"], cwd=build, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return build / "business"


@pytest.fixture(autouse=True)
def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests need root: they compare a slot with CAP_SYS_NICE to one "
                    "without, and read other processes' scheduling policies", pytrace=False)


def no_rlimit_nice() -> None:
    """In the slot's process before exec: leaving SCHED_IDLE then rests on CAP_SYS_NICE alone."""
    resource.setrlimit(resource.RLIMIT_NICE, (0, 0))


def start_slot(pod: LocalPod, cli, prefix: list[str]) -> subprocess.Popen[bytes]:
    """Slot a of ``pod`` at v1, as :meth:`LocalPod.start_business` starts it, under
    ``prefix``."""
    with open(pod.shared.root / "slot-a.log", "ab") as log:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "podkit", "run", "--mode", "warm", "--",
             *pod.command_for("a", "v1")],
            env=cli.env(PODKIT_SLOT="a", PODKIT_VERSION="v1", PODKIT_DIR=str(pod.shared.root)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=no_rlimit_nice)
    pod.procs["a"] = proc
    return proc


def thread_policies(pid: int) -> list[int]:
    return [os.sched_getscheduler(int(tid)) for tid in sorted(os.listdir(f"/proc/{pid}/task"))]


def tree_policies(pid: int, h: SimpleNamespace) -> dict[int, list[int]]:
    """The policy of every thread of ``pid`` and of each process under it, by process."""
    tree: dict[int, list[int]] = {}
    pending = [pid]
    while pending:
        process = pending.pop()
        tree[process] = thread_policies(process)
        pending += h.children_of(process)
    return tree


def assert_every_thread(pid: int, h: SimpleNamespace, policy: int) -> None:
    """Every thread of business ``pid`` (THREADS + 1) and of its worker (2) runs ``policy``."""
    [worker] = h.children_of(pid)
    assert tree_policies(pid, h) == {pid: [policy] * (THREADS + 1), worker: [policy] * 2}


def at_the_gate(gate: Path, slot: subprocess.Popen[bytes], h: SimpleNamespace,
                known: tuple[int, ...] = ()) -> int:
    """The slot's business process (not one of ``known``) once it waits at the gate."""
    def waiting() -> int | None:
        for pid in h.children_of(slot.pid):
            if pid not in known and (gate / f"{pid}.waiting").exists():
                return pid
        return None
    pid = h.wait_for(waiting, "the business to wait at its gate before READY")
    assert isinstance(pid, int)
    return pid


@pytest.fixture
def c_pod(tmp_path: Path, business: Path) -> Iterator[Callable[..., tuple[LocalPod, Path]]]:
    """A factory of pods whose business is the C program; ``c_pod("--no-ready")`` skips
    READY. Every pod is killed after."""
    pods: list[LocalPod] = []

    def make(*flags: str) -> tuple[LocalPod, Path]:
        gate = tmp_path / f"gate-{len(pods)}"
        gate.mkdir()
        pod = LocalPod(tmp_path / f"pod-{len(pods)}", lambda slot, version: [
            str(business), str(gate), str(THREADS), *flags], mode="warm")
        pods.append(pod)
        return pod, gate

    yield make
    for pod in pods:
        pod.close()


@pytest.mark.parametrize("says_ready", [True, False], ids=["ready-then-active", "active-only"])
def test_with_cap_sys_nice_the_business_starts_idle_and_serves_normal(says_ready: bool, c_pod,
                                                                     cli, h) -> None:
    pod, gate = c_pod(*([] if says_ready else ["--no-ready"]))
    peer = OfdLock(pod.shared.lock_file)
    assert peer.acquire(blocking=False)  # the active peer, until the test lets go
    slot = start_slot(pod, cli, prefix=[])
    pid = at_the_gate(gate, slot, h)
    assert has_cap_sys_nice(slot.pid)
    # it initialises behind the serving slot: every thread, the worker's too, is idle
    assert_every_thread(pid, h, os.SCHED_IDLE)

    (gate / f"{pid}.go").touch()
    if says_ready:
        pod.wait_role("a", "standby", "v1")  # recorded after the business was restored
        assert_every_thread(pid, h, os.SCHED_OTHER)
        # podkit handled READY, and forwards the kubelet's signals, at normal priority
        assert set(thread_policies(slot.pid)) == {os.SCHED_OTHER}
    peer.release()
    pod.wait_role("a", "active", "v1")
    assert_every_thread(pid, h, os.SCHED_OTHER)
    assert set(thread_policies(slot.pid)) == {os.SCHED_OTHER}
    assert pod.stop("a") == 0  # it released and exited


def test_without_cap_sys_nice_the_business_never_goes_idle(c_pod, cli, h) -> None:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to drop CAP_SYS_NICE", pytrace=False)
    pod, gate = c_pod()
    peer = OfdLock(pod.shared.lock_file)
    assert peer.acquire(blocking=False)
    slot = start_slot(pod, cli, prefix=DROP_CAP_SYS_NICE)
    pid = at_the_gate(gate, slot, h)
    assert not has_cap_sys_nice(slot.pid)
    assert_every_thread(pid, h, os.SCHED_OTHER)

    (gate / f"{pid}.go").touch()
    pod.wait_role("a", "standby", "v1")
    peer.release()
    pod.wait_role("a", "active", "v1")
    assert_every_thread(pid, h, os.SCHED_OTHER)
    assert pod.stop("a") == 0
    # podkit found nothing to restore: it never tried and failed
    assert "scheduling policy" not in (pod.shared.root / "slot-a.log").read_text()


def test_a_restarted_business_starts_idle_and_serves_normal(c_pod, cli, h) -> None:
    """The RESTART hook's successor initialises idle beside the business it replaces, which
    keeps serving at normal priority, and serves normal once it is active."""
    pod, gate = c_pod()
    slot = start_slot(pod, cli, prefix=[])
    old = at_the_gate(gate, slot, h)
    (gate / f"{old}.go").touch()
    pod.wait_role("a", "active", "v1")

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(HookRunner(pod.shared, Hook.parse("restart"), h.LIVENESS_S).run)
        new = at_the_gate(gate, slot, h, known=(old,))
        assert_every_thread(new, h, os.SCHED_IDLE)
        assert_every_thread(old, h, os.SCHED_OTHER)
        (gate / f"{new}.go").touch()
        assert answer.result(h.LIVENESS_S) == (True, f"slot a: OK restarted, pid {new}")
    h.wait_for(lambda: h.children_of(slot.pid) == [new], "the replaced business to exit")
    assert_every_thread(new, h, os.SCHED_OTHER)
    state = pod.state("a")
    assert state is not None and state.role == "active"
    slot.send_signal(signal.SIGTERM)
    assert slot.wait(h.LIVENESS_S) == 0
