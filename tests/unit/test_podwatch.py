"""testbed.podwatch.follow_pods: the benchmarks' list-then-watch loop, with fake requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from testbed.podwatch import follow_pods


def _pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


def test_watches_resume_from_the_last_version_and_an_error_lists_again() -> None:
    stopping = threading.Event()
    lists, watched_from, seen, relists = 0, [], [], []
    watches = iter([
        [{"type": "ADDED", "object": _pod("b", "11")},
         {"type": "BOOKMARK", "object": _pod("", "12")}],  # the server ends this watch
        [{"type": "DELETED", "object": _pod("a", "13")},
         {"type": "ERROR", "object": {"code": 410}}],  # too old: list again
    ])

    def listing() -> tuple[list[dict[str, Any]], str]:
        nonlocal lists
        lists += 1
        if lists == 2:
            stopping.set()  # the second list is the last thing this test needs
        return [_pod("a", "10")], "10"

    def watch(version: str) -> Iterator[dict[str, Any]]:
        watched_from.append(version)
        yield from next(watches)

    follow_pods(listing, watch, lambda pod, deleted: seen.append(
        (pod["metadata"]["name"], deleted)), stopping, "test",
        relisted=lambda: relists.append(lists))
    assert watched_from == ["10", "12"]  # the second watch resumes after the bookmark
    assert seen == [("a", False), ("b", False), ("a", True), ("a", False)]
    assert relists == [1, 2] and lists == 2


def test_a_failed_request_lists_again_and_stopping_ends_it() -> None:
    stopping = threading.Event()
    calls = []

    def listing() -> tuple[list[dict[str, Any]], str]:
        calls.append("list")
        if len(calls) == 1:
            raise OSError("connection refused")
        stopping.set()
        return [], "5"

    follow_pods(listing, lambda version: iter(()), lambda pod, deleted: None, stopping, "test")
    assert calls == ["list", "list"]
