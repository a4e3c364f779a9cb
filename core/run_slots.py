"""How many runs one process executes at once: as many as its event loop keeps up with.

Streaming an answer costs CPU on the event loop for every chunk (the openai SDK and openai-agents
parse each one): a thousand answers streamed at once keep every callback waiting for seconds,
Slack's 3 s acknowledgement, Discord's heartbeat and every other channel's reply among them
(BENCHMARKS.md, section 13.6). A fixed bound is wrong both ways: answers from a slow model cost
almost nothing while they wait for it, so many can stream at once; answers from a fast one need
the loop for every chunk. So the bound adapts, as TCP's congestion window does: while the event
loop is on time and runs are waiting, it grows; when the loop falls behind, it shrinks to a
fraction of the runs in progress. It reads the lag smoothed over the last half second or so
(``SMOOTHING``): lag comes in spikes (a garbage collection, a burst of requests), and a bound that
shrank at every late look and grew at every on-time one between them swung between a few runs and its
ceiling; one spike now moves it a little, lateness that lasts moves it all the way (bench.replicas,
BENCHMARKS.md section 15). It stays between ``FLOOR`` and ``ceiling``
(THREADLINE_CONCURRENT_RUNS). A run past the bound stays queued in the database, claimed by
nobody, and starts in arrival order as a slot frees (core/lanes.py).

The lag is measured by a watcher that sleeps ``INTERVAL`` again and again and sees how late it
wakes; it runs only while runs are in progress or waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

__all__ = ["FLOOR", "INTERVAL", "TARGET_LAG", "RunSlots", "next_limit", "smoothed_lag"]

_log = logging.getLogger(__name__)

FLOOR = 4  # the bound never adapts below this many runs at once
INTERVAL = 0.05  # seconds between two looks at the event loop's lag
TARGET_LAG = 0.01  # seconds late the watcher may wake before the bound shrinks
DECREASE = 0.75  # on lag, the bound becomes this share of the runs in progress
SMOOTHING = 0.1  # each look's share of the smoothed lag (an exponential moving average of about 10 looks)
START = 16  # the bound at start (it doubles quickly while the loop keeps up)


def next_limit(limit: int, *, lag: float, running: int, waiting: int, ceiling: int) -> int:
    """The bound after one look at the loop: ``lag`` seconds late, ``running`` runs in progress, ``waiting`` waiting.

    Late: a share of what runs now (never below ``FLOOR``). On time with runs waiting and every
    slot taken: an eighth more (at least one). Otherwise unchanged. Always within FLOOR..ceiling.
    """
    floor = min(FLOOR, ceiling)
    if lag > TARGET_LAG:
        new = min(limit, int(running * DECREASE))
    elif lag < TARGET_LAG / 2 and waiting and running >= limit:
        new = limit + max(1, limit // 8)
    else:
        new = limit
    return max(floor, min(new, ceiling))


def smoothed_lag(smoothed: float | None, look: float) -> float:
    """The lag the bound adapts to after one more look ``look`` seconds late (None: the first look)."""
    return look if smoothed is None else smoothed + SMOOTHING * (look - smoothed)


class RunSlots:
    """Slots for runs: ``async with slots.slot():`` around executing one. ``ceiling`` 0: no bound at all."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = min(START, ceiling) if ceiling > 0 else 0
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.ceiling <= 0:
            yield
            return
        await self._acquire()
        try:
            yield
        finally:
            self.running -= 1
            self._admit()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _acquire(self) -> None:
        self._watch()
        if self.running < self.limit and not self._waiters:
            self.running += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # resolved by _admit, which counts this run in ``running``
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # admitted, then cancelled before it ran
                self.running -= 1
                self._admit()
            else:
                self._waiters.remove(waiter)
            raise

    def _admit(self) -> None:
        """Let waiting runs in, first come first, while there is room under the bound."""
        while self._waiters and self.running < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.running += 1
                waiter.set_result(None)

    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_lag(), name="run slots: event-loop lag")

    async def _watch_lag(self) -> None:
        lag: float | None = None
        while self.running or self._waiters:
            start = time.monotonic()
            await asyncio.sleep(INTERVAL)
            lag = smoothed_lag(lag, max(time.monotonic() - start - INTERVAL, 0.0))
            limit = next_limit(self.limit, lag=lag, running=self.running, waiting=self.waiting, ceiling=self.ceiling)
            if limit < self.limit:
                _log.debug("event loop %.0f ms late: at most %d runs at once (was %d)", lag * 1000, limit, self.limit)
            self.limit = limit
            self._admit()
