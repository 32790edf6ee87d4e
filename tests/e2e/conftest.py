"""The e2e tier's fixtures live in tools/testbed/fixtures.py (other suites import them too);
a failed test is reported with the logs its fixtures attached (testbed.failure_logs)."""

import pytest

from testbed.failure_logs import pytest_runtest_makereport  # noqa: F401
from testbed.fixtures import (  # noqa: F401
    api_clusters,
    build_kubernetes_first,
    cluster,
    deployed_operator,
    docker_images,
    kube,
    namespace,
    operator,
    podkit_images,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    build_kubernetes_first(session, full_testbed=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)
