"""The pod index the watch and the operator's own writes feed (pure): newer versions only,
a change reported for its StatefulSetPlus only, no ghost of a deleted pod, relists."""

from __future__ import annotations

from typing import Any

from podkit_operator.kube.podindex import PodIndex


def pod(name: str, rv: int, stsp: str | None = "web", uid: str | None = None,
        **extra: Any) -> dict[str, Any]:
    labels = {"podkit.io/stsp": stsp} if stsp else {}
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}",
                         "resourceVersion": str(rv), "labels": labels,
                         "managedFields": [{"manager": "kubectl"}]}, **extra}


def names(index: PodIndex, stsp: str = "web") -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["resourceVersion"]
            for p in index.pods("ns", stsp)}


def test_events_add_change_and_delete_the_pods_of_their_statefulsetplus() -> None:
    index = PodIndex()
    assert index.apply("ADDED", pod("web-0", 10)) == ("ns", "web")
    assert index.apply("ADDED", pod("api-0", 11, stsp="api")) == ("ns", "api")
    assert index.apply("MODIFIED", pod("web-0", 12)) == ("ns", "web")
    assert names(index) == {"web-0": "12"} and names(index, "api") == {"api-0": "11"}
    assert "managedFields" not in index.pods("ns", "web")[0]["metadata"]
    assert index.apply("DELETED", pod("web-0", 13)) == ("ns", "web")
    assert names(index) == {}


def test_an_older_version_or_the_echo_of_an_own_write_changes_nothing() -> None:
    index = PodIndex()
    index.apply("MODIFIED", pod("web-0", 20))  # the answer to the operator's patch
    assert index.apply("MODIFIED", pod("web-0", 20)) is None  # the watch's echo of it
    assert index.apply("MODIFIED", pod("web-0", 19)) is None  # an event from before it
    assert names(index) == {"web-0": "20"}


def test_an_answer_after_the_pod_was_seen_deleted_brings_back_no_ghost() -> None:
    index = PodIndex()
    index.apply("ADDED", pod("web-0", 5))
    index.apply("DELETED", pod("web-0", 8))
    assert index.apply("MODIFIED", pod("web-0", 7, deletionTimestamp="t")) is None
    assert names(index) == {}
    # the pod made again under the same name is another pod (another UID)
    assert index.apply("ADDED", pod("web-0", 9, uid="second")) == ("ns", "web")
    assert index.apply("DELETED", pod("web-0", 8)) is None  # the first one's, late
    assert names(index) == {"web-0": "9"}


def test_a_pod_that_loses_its_label_is_no_longer_held() -> None:
    index = PodIndex()
    index.apply("ADDED", pod("web-0", 5))
    assert index.apply("MODIFIED", pod("web-0", 6, stsp=None)) == ("ns", "web")
    assert names(index) == {}
    assert index.apply("ADDED", pod("other", 7, stsp=None)) is None


def test_a_relist_reports_what_differs_and_keeps_an_answer_newer_than_it() -> None:
    index = PodIndex()
    for name, rv in (("web-0", 5), ("web-1", 6), ("web-2", 7)):
        index.apply("ADDED", pod(name, rv))
    index.apply("ADDED", pod("api-0", 8, stsp="api"))
    index.apply("MODIFIED", pod("web-9", 40))  # created by the operator after the list
    changed = index.replace("ns", [pod("web-0", 5), pod("web-1", 30), pod("api-0", 8)], "35")
    assert changed == {("ns", "web")}  # web-1 changed, web-2 gone; api untouched
    assert names(index) == {"web-0": "5", "web-1": "30", "web-9": "40"}
    assert index.replace("ns", [pod("web-0", 5), pod("web-1", 30), pod("api-0", 8)],
                         "50") == {("ns", "web")}  # web-9 is older than this list: gone
    assert names(index) == {"web-0": "5", "web-1": "30"}


def test_each_change_and_no_echo_is_passed_to_on_change() -> None:
    woken: list[tuple[str, str]] = []
    index = PodIndex(woken.append)
    index.apply("MODIFIED", pod("web-0", 20))  # an own write's answer: the loop's next step
    index.apply("MODIFIED", pod("web-0", 20))  # the watch's echo of it
    index.apply("ADDED", pod("api-0", 21, stsp="api"))
    assert woken == [("ns", "web"), ("ns", "api")]
    index.replace("ns", [pod("api-0", 21)], "25")  # web-0 gone, api-0 as it was
    assert woken[2:] == [("ns", "web")]
