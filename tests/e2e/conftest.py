"""The e2e tier's fixtures live in tools/testbed/fixtures.py (other suites import them too)."""

import pytest

from testbed import kubebin
from testbed.errors import TestbedError
from testbed.fixtures import (  # noqa: F401
    api_clusters,
    cluster,
    deployed_operator,
    docker_images,
    kube,
    namespace,
    operator,
    podkit_images,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Build the patched Kubernetes (or find it cached) before any test starts.

    A cold build takes longer than one test's time limit, so it must not run in a fixture.
    """
    if session.config.option.collectonly:
        return
    try:
        kubebin.bin_dir()
    except TestbedError as err:
        pytest.exit(f"e2e: {err}", returncode=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)
