"""The demo's wire protocol, shared by the service and its clients.

TCP (one line per request, any number of requests per connection) and UDP (one datagram):

* ``GET <seq>``  -> ``<version> <slot> <seq> <served> <greeting>``
* ``WHO``        -> ``<version> <slot> <pid> <started-ns>`` (TCP): which process answers, its
  pid in its PID namespace and when it started (a restarted container's new namespace gives
  the same pids again), so a checker can tell two processes of one slot apart
* ``STATE``      -> one JSON line: version, slot, served, blob size and checksums (TCP only;
  it reads the whole blob, so it is for tests, not for load)
* ``GET /healthz HTTP/1.x`` (TCP) -> ``HTTP/1.0 200 OK``: an HTTP request line, so a
  Kubernetes ``httpGet`` probe can ask whether the serving loop answers

Failure switches for tests (env of the business container; off unless set):

* ``PODKIT_DEMO_CRASH_AFTER_S=N`` with ``PODKIT_DEMO_CRASH_VERSION=<version>``: a process of
  that version exits with status 70, N seconds after it took over;
* ``PODKIT_DEMO_HANG_COMMAND=1``: ``HANG`` (TCP) stops the serving loop for good: the process
  lives, holds the hand-over lock and answers nothing (alive but hung).
"""

from __future__ import annotations

import struct

# The shared-memory payload: a small counters area, then the blob.
COUNTERS = struct.Struct("<QIQ")  # served requests, blob crc32 at creation, blob size
COUNTERS_SIZE = 64
LAYOUT_VERSION = 1


def get_request(seq: int) -> bytes:
    return f"GET {seq}\n".encode()


def parse_reply(line: bytes) -> tuple[str, str, int, int, str]:
    """(version, slot, seq, served, greeting) of a GET reply."""
    version, slot, seq, served, greeting = line.decode().rstrip("\n").split(" ", 4)
    return version, slot, int(seq), int(served), greeting
