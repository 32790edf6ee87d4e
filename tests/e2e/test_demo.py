"""``make demo``'s path, short: the operator's Deployment swaps the demo service's pod under
1 kHz probes. Invariants only, never a timing: through the A/B swap no request is lost on the
pod-IP path nor through the Service whose endpoints podkit keeps, and the shared-memory state
is the pod's own, intact. The figures are ``make demo``'s to report."""

from __future__ import annotations

import json

from testbed.fixtures import Images
from testbed.kube import Kube
from testbed.stsp import wait_crd_established
from upgrade_demo.command import deploy_workloads
from upgrade_demo.report import records, write_json
from upgrade_demo.run import upgrade_under_probes
from upgrade_demo.workloads import method_named


def test_ab_swap_under_probes_loses_nothing_and_keeps_its_state(
        deployed_operator: str, kube: Kube, namespace: str, podkit_images: Images,
        tmp_path) -> None:
    wait_crd_established(kube)
    abswap = method_named("abswap")
    deploy_workloads(kube, namespace, [abswap], podkit_images)
    run = upgrade_under_probes(kube, namespace, abswap, podkit_images, baseline_s=1.0,
                               settle_s=1.0)
    rows = {row["path"]: row for row in records(run)}
    write_json(list(rows.values()), tmp_path / "report.json", {"rate_hz": 1000})
    written = json.loads((tmp_path / "report.json").read_text())["records"]
    assert {"method", "path", "max_gap_ms", "p99_ms", "lost", "sent",
            "state_intact"} <= set(written[0])

    assert run.pod_ips == [run.pod_ips[0]], "the pod was recreated"
    for path in ("pod-ip", "service"):
        row = rows[path]
        assert row["sent"] > 1000, row  # the probes ran through the whole swap
        assert row["lost"] == 0, (path, row["protocols"])
        assert row["versions"] == ["v1", "v2"], row
    assert run.state_intact, (run.state_before, run.state_after)
