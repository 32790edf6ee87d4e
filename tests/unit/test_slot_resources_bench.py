"""The pure parts of ``make bench-resources``: the pods of both designs and the figures."""

import pytest

from upgrade_demo.slot_resources import figures, pod


def test_the_pod_level_design_puts_the_resources_on_the_pod_only():
    body = pod("p", "pod_level", "img")
    assert body["spec"]["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    assert all("resources" not in c for c in body["spec"]["containers"])


def test_the_per_container_design_gives_the_standby_the_least_request_and_the_same_limit():
    serve, standby = pod("p", "per_container", "img")["spec"]["containers"]
    assert "resources" not in pod("p", "per_container", "img")["spec"]
    assert standby["resources"]["requests"] == {"cpu": "1m", "memory": "1Mi"}
    assert standby["resources"]["limits"] == serve["resources"]["limits"]


def test_figures_split_the_samples_into_calm_and_burst():
    log = "\n".join(f"{t / 10:.3f} {30.0 if 100 <= t < 130 else 2.0}" for t in range(240))
    found = figures(log + "\ndone\n")
    assert found["calm"] == {"p50_ms": 2.0, "max_ms": 2.0, "samples": 75}
    assert found["burst"] == {"p50_ms": 30.0, "max_ms": 30.0, "samples": 30}


def test_figures_refuse_a_log_without_samples():
    with pytest.raises(ValueError, match="no sample"):
        figures("done\n")
