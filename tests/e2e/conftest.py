"""Fixtures of the e2e tier: the full cluster, podkit's images in it, and a namespace per test.

The cluster is started if it is not running (a cold start installs packages and may build
Kubernetes) and stopped at the end of the session only if this session started it; set
PODKIT_KEEP_TESTBED=1 to keep it. A cluster that cannot start fails the session, naming the
component: an e2e run that skips would prove nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from e2e import images
from e2e.errors import TestbedError
from e2e.kube import Kube
from e2e.testbed import Testbed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def cluster() -> Iterator[Testbed]:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests need root: the testbed runs a kubelet and containerd",
                    pytrace=False)
    bed = Testbed()
    was_up = bed.is_up()
    try:
        bed.up()
    except TestbedError as err:
        pytest.fail(f"the testbed did not come up: {err}", pytrace=False)
    yield bed
    if not was_up and os.environ.get("PODKIT_KEEP_TESTBED") != "1":
        bed.down()


@dataclass(frozen=True)
class Images:
    """Tags of podkit's images, built and present in the cluster's containerd."""

    base: str
    pause: str
    sidecar: str
    demo_v1: str
    demo_v2: str


@pytest.fixture(scope="session")
def podkit_images(cluster: Testbed) -> Images:
    try:
        images.load_into_testbed(images.build_all())
    except TestbedError as err:
        pytest.fail(f"podkit's images could not be built or loaded: {err}", pytrace=False)
    tags = {image.tag.split("/", 1)[1]: image.tag for image in images.IMAGES}
    return Images(base=tags["podkit-base:dev"], pause=tags["podkit-pause:dev"],
                  sidecar=tags["podkit-sidecar:dev"], demo_v1=tags["podkit-demo:v1"],
                  demo_v2=tags["podkit-demo:v2"])


@pytest.fixture(scope="session")
def kube(cluster: Testbed) -> Kube:
    return cluster.kube()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.run("delete", "namespace", name, "--wait=false")
