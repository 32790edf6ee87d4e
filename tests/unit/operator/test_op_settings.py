"""The operator's settings from the environment, and the typed context in kopf's memo."""

from __future__ import annotations

import pytest

from podkit_operator.settings import Settings


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
