"""Following a namespace's pods from a tool (the benchmarks' watchers), as an informer would.

LIST, then WATCH from the list's resourceVersion, resuming after each watch the server ends,
and LISTing again when the apiserver reports an ERROR event (410 Gone: the version is too old)
or a request fails; every pod version seen goes to ``saw``. The caller supplies the requests
(the operator's labelled-pod calls, or a plain list and watch of every pod).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

RETRY_S = 1.0  # after a failed request, before listing again

Listing = Callable[[], tuple[list[dict[str, Any]], str]]  # -> (pods, resourceVersion)
Watching = Callable[[str], Iterator[dict[str, Any]]]  # one watch from a resourceVersion


def _events(watch: Watching, version: str,
            stopping: threading.Event) -> Iterator[dict[str, Any]]:
    """The ADDED, MODIFIED and DELETED events after ``version``, watch after watch, until an
    ERROR event (list again) or ``stopping``."""
    while not stopping.is_set():
        for event in watch(version):
            if event["type"] == "ERROR":
                return
            version = event["object"]["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                yield event


def follow_pods(listing: Listing, watch: Watching, saw: Callable[[dict[str, Any], bool], None],
                stopping: threading.Event, who: str,
                relisted: Callable[[], None] | None = None) -> None:
    """Until ``stopping``: every pod the lists and watches return, to ``saw(pod, deleted)``;
    ``relisted`` is called before each list's pods (what the caller holds may be stale)."""
    while not stopping.is_set():
        try:
            pods, version = listing()
            if relisted is not None:
                relisted()
            for pod in pods:
                saw(pod, False)
            for event in _events(watch, version, stopping):
                saw(event["object"], event["type"] == "DELETED")
        except (ApiException, HTTPError, OSError, ValueError) as err:
            if stopping.is_set():
                return  # the cluster is going down
            print(f"{who}: pod watch: {err}; listing again", file=sys.stderr)
            stopping.wait(RETRY_S)
