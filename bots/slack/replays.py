"""A short memory of what Slack already delivered, for the deliveries the core does not de-duplicate.

Messages need none: the core stores each under its platform id (the message's ``ts``) and answers
a redelivery with nothing. A slash command stores nothing, so the adapter remembers each invocation
for as long as Slack could send it again: in HTTP mode a request older than five minutes fails its
signature check, so a few minutes more is enough. The memory is the adapter's own, bounded, and lost
on a restart.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["RecentKeys"]


class RecentKeys:
    """Keys seen in the last ``ttl`` seconds, at most ``limit`` of them (past that, the oldest are forgotten)."""

    def __init__(self, ttl: float, *, limit: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._limit = limit
        self._clock = clock
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()  # oldest first: each expires ttl after it came

    def first_time(self, key: Hashable) -> bool:
        """Remember ``key``; False when it was seen in the last ``ttl`` seconds already."""
        now = self._clock()
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)
        if key in self._expiry:
            return False
        self._expiry[key] = now + self._ttl
        while len(self._expiry) > self._limit:
            self._expiry.popitem(last=False)
        return True
