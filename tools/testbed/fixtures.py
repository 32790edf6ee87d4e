"""pytest fixtures for tests that need a cluster; a conftest imports the ones it uses.

- `cluster`: the full one-node cluster (session-wide). Started if it is not running (a cold
  start installs packages and may build Kubernetes) and stopped at the end of the session only
  if this session started it; PODKIT_KEEP_TESTBED=1 keeps it. A cluster that cannot start
  fails the tests, naming the component: an e2e run that skips would prove nothing.
- `podkit_images`: podkit's images, built (cached) and present in the cluster's containerd.
- `kube`, `namespace`: kubectl on the full cluster, and a fresh namespace per test.
- `operator`: the CRD installed and the operator as a local process for the test's namespace.
- `deployed_operator`: the operator's Deployment applied with `kubectl apply -k`, removed after
  the test.
- `api_clusters`: a factory of API-only clusters (kwok nodes), all removed after the session.
- `docker_images`: a Docker engine (started if none runs) holding podkit's images, for
  testcontainers.

`build_kubernetes_first` is for a conftest's ``pytest_sessionstart``: the patched Kubernetes
(and, for the full cluster, metrics-server) is built (or found cached) before any test starts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest

from testbed import docker, images, kubebin, metrics_server
from testbed.apicluster import ApiCluster
from testbed.cluster import Testbed
from testbed.errors import TestbedError
from testbed.failure_logs import attach_log
from testbed.images import Tags as Images
from testbed.kube import Kube
from testbed.operator_deploy import deploy_operator, remove_operator
from testbed.operator_proc import OperatorProcess
from testbed.stsp import install_crd


def build_kubernetes_first(session: pytest.Session, *, full_testbed: bool = False) -> None:
    """Build the patched Kubernetes (or find it cached) before any test starts: a cold build
    (10-15 minutes on 2 cores) takes longer than one test's time limit, and a build killed
    with its test leaves every later test without binaries. ``full_testbed``: metrics-server
    too (a few minutes cold), which only the full cluster runs."""
    if session.config.option.collectonly:
        return
    try:
        kubebin.bin_dir()
        if full_testbed:
            metrics_server.entry_dir()
    except TestbedError as err:
        pytest.exit(f"{session.name}: {err}", returncode=1)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests need root: the testbed runs a kubelet and containerd",
                    pytrace=False)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Testbed]:
    _need_root()
    bed = Testbed()
    was_up = bed.is_up()
    try:
        bed.up()  # quick when it runs: it only checks, or restarts what changed
        # An operator Deployment left by `make demo KEEP=1` watches every namespace: it would
        # fight the tests' own operators over their pods.
        remove_operator(bed.kube())
    except TestbedError as err:
        pytest.fail(f"the testbed did not come up: {err}", pytrace=False)
    yield bed
    if not was_up and os.environ.get("PODKIT_KEEP_TESTBED") != "1":
        bed.down()


@pytest.fixture(scope="session")
def podkit_images(cluster: Testbed) -> Images:
    try:
        images.load_into_testbed(images.build_all())
    except TestbedError as err:
        pytest.fail(f"podkit's images could not be built or loaded: {err}", pytrace=False)
    return images.tags()


@pytest.fixture(scope="session")
def docker_images() -> Iterator[Images]:
    _need_root()
    # testcontainers' reaper (Ryuk) comes from a registry, which is out of reach: containers
    # are removed by the tests themselves.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    try:
        with docker.engine():
            images.load_into_docker(images.build_all())
            yield images.tags()
    except TestbedError as err:
        pytest.fail(f"Docker or podkit's images are not available: {err}", pytrace=False)


@pytest.fixture(scope="session")
def kube(cluster: Testbed) -> Kube:
    return cluster.kube()


@pytest.fixture
def deployed_operator(kube: Kube, podkit_images: Images) -> Iterator[str]:
    """The operator's Deployment as a user applies it (its namespace is yielded), removed
    afterwards: other tests run their own operator."""
    try:
        yield deploy_operator(kube)
    finally:
        remove_operator(kube)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards.

    Yielded once its default service account exists: pods are refused until then.
    """
    name = kube.create_namespace(f"e2e-{uuid.uuid4().hex[:8]}")
    yield name
    kube.run("delete", "namespace", name, "--wait=false")


@pytest.fixture
def operator(request: pytest.FixtureRequest, cluster: Testbed, kube: Kube,
             namespace: str) -> Iterator[OperatorProcess]:
    """The CRD installed and the operator running as a local process for ``namespace``
    (tests may kill and restart it); its log is in the testbed's state directory, and a
    failed test is reported with its tail and the kubelet's lines about the namespace."""
    install_crd(kube)
    log = cluster.layout.state / f"operator-{namespace}.log"
    attach_log(request, "the operator's log", log)
    attach_log(request, f"the kubelet's lines about {namespace}",
               cluster.proc("kubelet").log_file, keep=lambda line: namespace in line)
    with OperatorProcess(cluster.kubeconfig, log, namespace) as running:
        yield running


@contextmanager
def running_api_cluster(name: str, nodes: int = 1, storage: bool = False
                        ) -> Iterator[ApiCluster]:
    """An API-only cluster for the ``with`` block, removed after it (``storage``: with the
    testbed's volume provisioner); a cluster that cannot start fails the test that asked
    for it."""
    cluster = ApiCluster(name)
    try:
        try:
            cluster.up(nodes, storage=storage)
        except (TestbedError, OSError) as err:
            pytest.fail(f"API-only cluster {name} did not come up: {err}", pytrace=False)
        yield cluster
    finally:
        cluster.down()


@contextmanager
def operator_on_api_cluster(name: str, nodes: int = 1, storage: bool = False
                            ) -> Iterator[tuple[Kube, OperatorProcess]]:
    """An API-only cluster (see :func:`running_api_cluster`) with the CRD, and the operator
    running against it for every namespace, for the ``with`` block."""
    with running_api_cluster(name, nodes=nodes, storage=storage) as api:
        kube = api.kube()
        install_crd(kube)
        with OperatorProcess(kube.kubeconfig, api.layout.state / "operator.log") as operator:
            yield kube, operator


@pytest.fixture(scope="session")
def api_clusters() -> Iterator[Callable[..., ApiCluster]]:
    """`make(nodes=1)` starts one more API-only cluster; all go down after the session."""
    with ExitStack() as stack:
        made: list[ApiCluster] = []

        def make(nodes: int = 1) -> ApiCluster:
            name = f"pytest-{os.getpid()}-{len(made)}"
            made.append(stack.enter_context(running_api_cluster(name, nodes)))
            return made[-1]

        yield make
