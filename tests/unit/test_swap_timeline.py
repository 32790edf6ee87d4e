"""make bench-swap's reading of one swap from the pod's watch events (upgrade_demo.timeline)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from podkit_operator.api.keys import ANN_ACTIVE_SLOT, ANN_TARGET
from upgrade_demo.timeline import MILESTONES, milestones, slots_before, step_figures

V1, V2 = "podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v2"
PAUSE = "podkit.local/podkit-pause:dev"


def _status(name: str, image: str, cid: str, running: bool, ready: bool) -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-12-07T00:00:00Z"}} if running else {
        "waiting": {"reason": "ContainerCreating"}}
    return {"name": name, "image": image, "imageID": "", "containerID": cid, "state": state,
            "ready": ready, "restartCount": 0}


def _pod(a: str, b: str, active: str = "a") -> dict[str, Any]:
    """Slot a runs ``a``, slot b runs ``b``, both running and ready, the pod Ready."""
    return {"metadata": {"name": "ab-0", "annotations": {ANN_ACTIVE_SLOT: active}},
            "spec": {"containers": [{"name": "demo-a", "image": a},
                                    {"name": "demo-b", "image": b}]},
            "status": {"containerStatuses": [_status("demo-a", a, "a1", True, True),
                                             _status("demo-b", b, "b1", True, True)],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _then(pod: dict[str, Any], **change: Any) -> dict[str, Any]:
    """A copy of ``pod`` with: ``spec_<slot>`` (its spec image), ``run_<slot>`` ((image, id,
    ready) of its status), ``ready`` (the pod's), ``ann`` (annotations to set, None removes)."""
    out = copy.deepcopy(pod)
    for key, value in change.items():
        if key.startswith("spec_"):
            next(c for c in out["spec"]["containers"]
                 if c["name"] == f"demo-{key[5:]}")["image"] = value
        elif key.startswith("run_"):
            name = f"demo-{key[4:]}"
            statuses = out["status"]["containerStatuses"]
            i = next(n for n, s in enumerate(statuses) if s["name"] == name)
            image, cid, ready = value
            statuses[i] = _status(name, image, cid, True, ready)
        elif key == "ready":
            out["status"]["conditions"] = [{"type": "Ready", "status": str(value)}]
        elif key == "ann":
            for k, v in value.items():
                if v is None:
                    out["metadata"]["annotations"].pop(k, None)
                else:
                    out["metadata"]["annotations"][k] = v
    return out


def _swap_events() -> list[tuple[float, dict[str, Any]]]:
    """One swap v1 -> v2 with slot a serving, edited at t=1.0."""
    p0 = _pod(V1, PAUSE)
    p1 = _then(p0, spec_b=V2, ann={ANN_TARGET: "ab-2"})
    p2 = _then(p1, run_b=(V2, "b2", False), ready="False")
    p3 = _then(p2, run_b=(V2, "b2", True), ready="True")
    p4 = _then(p3, spec_a=PAUSE)
    p5 = _then(p4, run_a=(PAUSE, "a2", False), ready="False")
    p6 = _then(p5, run_a=(PAUSE, "a2", True), ready="True")
    p7 = _then(p6, ann={ANN_TARGET: None, ANN_ACTIVE_SLOT: "b"})
    return [(0.5, p0), (1.2, p1), (1.9, p2), (2.8, p3), (2.9, p4), (3.5, p5), (4.1, p6),
            (4.2, p7)]


def test_each_milestone_is_the_first_event_after_the_one_before_that_shows_it() -> None:
    found = milestones(_swap_events(), 1.0, "demo", V2, PAUSE)
    assert found == {"new_slot_patched": 0.2, "new_slot_running": 0.9, "new_slot_ready": 1.8,
                     "old_slot_patched": 1.9, "old_slot_paused": 2.5, "pod_ready": 3.1,
                     "recorded": 3.2}


def test_a_swap_that_stalls_reaches_none_of_the_later_milestones() -> None:
    stalled = _swap_events()[:3]  # the new slot never turns ready
    found = milestones(stalled, 1.0, "demo", V2, PAUSE)
    assert found["new_slot_running"] == 0.9
    assert [found[m.name] for m in MILESTONES[2:]] == [None] * (len(MILESTONES) - 2)


def test_the_pod_before_the_edit_is_not_read_as_a_milestone() -> None:
    events = _swap_events()
    # the pod already at pause in slot b before the edit: slot b's image at the target counts
    # only from the edit on
    found = milestones(events, 2.0, "demo", V2, PAUSE)  # edited after the step-1 patch landed
    assert found["new_slot_patched"] == 0.8  # the first event after the edit, not before it


def test_the_slot_that_serves_before_the_swap_is_the_one_that_gets_pause() -> None:
    assert slots_before(_pod(PAUSE, V1, active="b"), "demo").old == "demo-b"
    assert slots_before(_pod(V1, PAUSE), "demo").new == "demo-b"


def test_no_event_before_the_edit_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="before the swap started"):
        milestones(_swap_events()[1:], 1.0, "demo", V2, PAUSE)


def test_step_figures_give_each_step_its_own_span_over_the_swaps_that_reached_it() -> None:
    runs: list[dict[str, float | None]] = [
        {m.name: float(i + 1) for i, m in enumerate(MILESTONES)},  # 1 s per step
        {m.name: 3.0 * (i + 1) if i < 2 else None for i, m in enumerate(MILESTONES)},
    ]
    rows = {r["step"]: r for r in step_figures(runs)}
    assert rows["new_slot_patched"]["median_s"] == 2.0  # 1 and 3, from the edit
    assert rows["new_slot_running"]["max_s"] == 3.0
    assert rows["new_slot_ready"]["swaps"] == 1 and rows["new_slot_ready"]["median_s"] == 1.0
