"""A token bucket for the operator's own API calls: ``PODKIT_QPS`` calls a second on average,
``PODKIT_BURST`` at once after a quiet spell (client-go's flowcontrol, in the same terms).

The apiserver protects itself (the FlowSchema and PriorityLevel shipped in
operator/deploy/flowcontrol.yaml queue the operator's requests apart from everyone else's);
the bucket keeps the operator from taking more than its share of a small apiserver in the
first place. Shared by the threads of one process: callers block until their token is due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``qps`` tokens a second, at most ``burst`` saved up; :meth:`take` waits for one."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be above 0 and burst at least 1")
        self.qps, self.burst = qps, burst
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._at = clock()

    def reserve(self) -> float:
        """Take the next token: how long from now until it is due (0: at once). Tokens are
        handed out in order, so a waiting caller is never overtaken."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def take(self) -> float:
        """Wait for a token; the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
