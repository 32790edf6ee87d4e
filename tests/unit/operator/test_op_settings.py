"""The operator's settings from the environment, and the typed context in kopf's memo."""

from __future__ import annotations

import pytest

from podkit_operator.settings import Settings, SettingsError


@pytest.mark.parametrize("value, patched", [
    (None, None), ("auto", None), ("true", True), ("TRUE", True), ("false", False),
    ("maybe", None),
])
def test_podkit_patched_forces_or_leaves_it_to_the_feature_gates(value: str | None,
                                                                   patched: bool | None) -> None:
    environ = {} if value is None else {"PODKIT_PATCHED": value}
    assert Settings.from_environ(environ).patched is patched


def test_the_metrics_port_defaults_to_9090_and_0_serves_none() -> None:
    assert Settings.from_environ({}).metrics_port == 9090
    assert Settings.from_environ({"PODKIT_OPERATOR_METRICS_PORT": "0"}).metrics_port == 0


def test_writers_and_starts_per_pass_default_and_can_be_set() -> None:
    found = Settings.from_environ({})
    assert (found.writers, found.max_starts) == (16, 2000)
    given = Settings.from_environ({"PODKIT_WRITERS": "32", "PODKIT_MAX_STARTS": " 500 "})
    assert (given.writers, given.max_starts) == (32, 500)


def test_the_client_rate_limit_defaults_and_can_be_set() -> None:
    found = Settings.from_environ({})
    assert (found.qps, found.burst) == (1000, 2000)
    given = Settings.from_environ({"PODKIT_QPS": "50", "PODKIT_BURST": "100"})
    assert (given.qps, given.burst) == (50, 100)
    with pytest.raises(SettingsError, match=r"^PODKIT_QPS='0': set a whole number"):
        Settings.from_environ({"PODKIT_QPS": "0"})


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5"])
def test_a_count_that_is_not_a_whole_number_of_at_least_1_says_what_to_set(
        value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"PODKIT_WRITERS": value})
    assert str(raised.value) == (f"PODKIT_WRITERS={value!r}: set a whole number of at least 1 "
                                 "(default 16)")


def test_the_lease_and_health_settings() -> None:
    found = Settings.from_environ({})
    assert found.health_port == 0 and found.lease_namespace == "default"
    assert found.lease_name == "podkit-operator" and found.identity  # <hostname>-<pid>
    given = Settings.from_environ({"PODKIT_OPERATOR_HEALTH_PORT": "8080",
                                   "PODKIT_LEASE_NAMESPACE": "podkit-system",
                                   "PODKIT_OPERATOR_ID": "podkit-operator-7d9-x2"})
    assert (given.health_port, given.lease_namespace, given.identity) == (
        8080, "podkit-system", "podkit-operator-7d9-x2")
