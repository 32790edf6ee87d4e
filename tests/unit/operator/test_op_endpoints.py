"""EndpointSlices from serving pods (podkit_operator.endpoints): the serving rule and the
slices' shape, on pod objects as the API returns them."""

from __future__ import annotations

from typing import Any

from podkit_operator.endpoints.slices import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE,
    MAX_PER_SLICE,
    PodsOf,
    as_written,
    endpoint,
    members,
    place,
    serves,
    slice_ports,
    slices,
)

PAUSE = "podkit.local/podkit-pause:dev"
V1, V2 = "podkit.local/podkit-demo:v1", "podkit.local/podkit-demo:v2"
TEMPLATE = {"spec": {"containers": [{"name": "web", "image": V1, "ports": [
    {"name": "tcp", "containerPort": 7000}, {"name": "udp", "containerPort": 7001,
                                             "protocol": "UDP"}]}]}}
SPEC = PodsOf(TEMPLATE, "web", PAUSE)
SERVICE = {"metadata": {"name": "web-lb", "namespace": "ns", "uid": "svc-uid"},
           "spec": {"ports": [{"name": "tcp", "port": 80, "targetPort": "tcp"},
                              {"name": "udp", "port": 7001, "protocol": "UDP"}]}}


def swap_pod(name: str, images: tuple[str, str], ready: tuple[bool, bool],
             ip: str | None = "10.0.0.1", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T05:00:00Z"
    return {"metadata": meta,
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "web-a", "image": images[0]}, {"name": "web-b", "image": images[1]},
                {"name": "podkit-sidecar", "image": "podkit.local/podkit-sidecar:dev"}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [
                           {"name": "web-a", "ready": ready[0]},
                           {"name": "web-b", "ready": ready[1]},
                           {"name": "podkit-sidecar", "ready": False}]}}


def test_a_swap_pod_serves_through_both_steps_of_a_swap() -> None:
    # converged: a serves v1, b idles on pause
    assert serves(swap_pod("w", (V1, PAUSE), (True, True)), "web", PAUSE)
    # step 1: b restarts with v2 (not ready yet); a still serves although the pod is not Ready
    assert serves(swap_pod("w", (V1, V2), (True, False)), "web", PAUSE)
    # step 2: a restarts with pause; b stands by, and takes over as a's process exits
    assert serves(swap_pod("w", (PAUSE, V2), (False, True)), "web", PAUSE)


def test_a_swap_pod_whose_business_slots_are_not_ready_does_not_serve() -> None:
    assert not serves(swap_pod("w", (V1, PAUSE), (False, True)), "web", PAUSE)
    assert not serves(swap_pod("w", (PAUSE, PAUSE), (True, True)), "web", PAUSE)


def test_a_pod_without_slots_serves_while_ready() -> None:
    plain = {"metadata": {"name": "w"}, "spec": {"containers": [{"name": "web", "image": V1}]},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert serves(plain, "web", PAUSE)
    plain["status"]["conditions"][0]["status"] = "False"
    assert not serves(plain, "web", PAUSE)


def test_endpoint_conditions_and_reference() -> None:
    found = endpoint(swap_pod("w-0", (V1, PAUSE), (True, True)), "web", PAUSE)
    assert found == {"addresses": ["10.0.0.1"],
                     "conditions": {"ready": True, "serving": True, "terminating": False},
                     "targetRef": {"kind": "Pod", "namespace": "ns", "name": "w-0",
                                   "uid": "uid-w-0"},
                     "nodeName": "node-1"}
    leaving = endpoint(swap_pod("w-0", (V1, PAUSE), (True, True), deleting=True), "web", PAUSE)
    assert leaving is not None
    assert leaving["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert endpoint(swap_pod("w-0", (V1, PAUSE), (True, True), ip=None), "web", PAUSE) is None


def test_ports_resolve_named_and_missing_target_ports() -> None:
    assert slice_ports(SERVICE, TEMPLATE) == [
        {"name": "tcp", "port": 7000, "protocol": "TCP"},
        {"name": "udp", "port": 7001, "protocol": "UDP"}]
    unknown = {**SERVICE, "spec": {"ports": [{"port": 80, "targetPort": "nope"}]}}
    assert slice_ports(unknown, TEMPLATE) == []


def test_slices_are_labelled_owned_ordered_by_ordinal_and_split() -> None:
    pods = [swap_pod(f"w-{i}", (V1, PAUSE), (True, True), ip=f"10.0.{i // 250}.{i % 250}")
            for i in range(MAX_PER_SLICE + 5)]
    made = slices(SERVICE, SPEC, list(reversed(pods)))
    assert list(made) == ["web-lb-podkit-0", "web-lb-podkit-1"]
    assert [len(s["endpoints"]) for s in made.values()] == [MAX_PER_SLICE, 5]
    first = made["web-lb-podkit-0"]
    assert first["metadata"]["labels"] == {LABEL_SERVICE: "web-lb",
                                           LABEL_MANAGED_BY: "operator.podkit.io"}
    assert first["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    names = [e["targetRef"]["name"] for s in made.values() for e in s["endpoints"]]
    assert names == [f"w-{i}" for i in range(MAX_PER_SLICE + 5)]  # w-9 before w-10


def test_a_service_with_no_pods_gets_one_empty_slice() -> None:
    made = slices(SERVICE, SPEC, [])
    assert list(made) == ["web-lb-podkit-0"] and made["web-lb-podkit-0"]["endpoints"] == []


def pods_named(count: int) -> list[str]:
    return [f"w-{i}" for i in range(count)]


def test_a_pod_keeps_its_slice_when_others_come_and_go() -> None:
    current = place({}, pods_named(300), "s-")
    assert [len(v) for v in current.values()] == [100, 100, 100]
    # one pod gone: only its slice changes; back again (same name): into the same slice
    without = place(current, set(pods_named(300)) - {"w-150"}, "s-")
    assert {n for n in current if current[n] != without.get(n)} == {"s-1"}
    again = place(without, pods_named(300), "s-")
    assert again == current


def test_new_pods_fill_changed_slices_then_the_fullest_then_new_ones() -> None:
    current = {"s-0": ["a-1", "a-2"], "s-1": [f"b-{i}" for i in range(99)], "s-2": ["c-1"]}
    wanted = set(current["s-1"]) | {"a-1", "c-1", "n-1", "n-2", "n-3"}
    placed = place(current, wanted, "s-", limit=100)
    assert placed["s-0"] == ["a-1", "n-1", "n-2", "n-3"]  # s-0 changed (a-2 left): it takes them
    assert placed["s-1"] == current["s-1"] and placed["s-2"] == ["c-1"]
    full = place({"s-0": pods_named(100)}, pods_named(101), "s-", limit=100)
    assert full == {"s-0": pods_named(100), "s-1": ["w-100"]}


def test_emptied_slices_go_but_one_stays() -> None:
    current = place({}, pods_named(300), "s-")
    shrunk = place(current, pods_named(50), "s-")
    assert shrunk == {"s-0": pods_named(50)}
    assert place(shrunk, [], "s-") == {"s-0": []}
    # a pod listed twice (slices of an older writer) stays in the first slice only
    assert place({"s-0": ["w-1"], "s-1": ["w-1", "w-2"]}, ["w-1", "w-2"], "s-") == {
        "s-0": ["w-1"], "s-1": ["w-2"]}


def test_a_listed_slice_compares_equal_to_the_one_written() -> None:
    (written,) = slices(SERVICE, SPEC, [swap_pod("w-0", (V1, PAUSE), (True, True))]).values()
    listed = {**written, "metadata": {**written["metadata"], "resourceVersion": "7",
                                      "uid": "x", "generation": 1,
                                      "creationTimestamp": "2026-12-01T00:00:00Z"}}
    assert as_written(listed) == written
    assert members(listed) == ["w-0"]


def test_a_spec_the_parser_rejects_still_reads_for_the_slices() -> None:
    bad = {"template": {"spec": {"containers": [{"name": "web", "image": V1,
                                                 "command": ["nope"], "ports": [
                                                     {"name": "tcp", "containerPort": 7000}]}]}},
           "podkit": {"pauseImage": PAUSE}}
    assert PodsOf.read(bad) == PodsOf(bad["template"], "web", PAUSE)
    assert PodsOf.read(None) == PodsOf({}, "", "podkit.local/podkit-pause:dev")
    assert PodsOf.read({"template": "junk"}).template == {}
    # nothing known: no named ports, and pods serve while Ready
    assert slice_ports(SERVICE, PodsOf.read(None).template) == [
        {"name": "udp", "port": 7001, "protocol": "UDP"}]
