"""One lane per thread: a task that does the thread's work for this process, one run at a time.

A lane claims the thread's next piece of work from the store (core/store/store.py ``claim``: one
run per thread is active across every process on the database) and hands it to the run executor,
in the order the messages arrived; it waits while a run needs people, and looks again soon while
another process answers in the thread. Lanes exist only while there is work; every piece of
state they act on is in the database.

How many lanes of a process execute a run at once is bounded (core/run_slots.py: the bound
adapts to the event loop's lag, up to THREADLINE_CONCURRENT_RUNS). Past it, a thread's next run
stays queued in the database, claimed by nobody, and starts in arrival order as a slot frees; a
lane that only waits (for a decision on an approval, for another process) holds no slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.logs import log_context
from core.models import Approval, Run
from core.run_slots import RunSlots
from core.runner import SegmentOutcome
from core.store import Store
from core.store.store import ClaimKind

__all__ = ["BUSY_POLL_SECONDS", "Lane", "Lanes"]

_log = logging.getLogger(__name__)

BUSY_POLL_SECONDS = 0.5  # how often a lane looks again at a thread another process is answering in

# Does claimed work: (kind: start | resume | expire, the run, its approvals, the lane holding it).
Work = Callable[[ClaimKind, Run, list[Approval], "Lane"], Awaitable[None]]


@dataclass
class Lane:
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    run: str | None = None  # the run the lane holds (claimed; maybe not yet in a segment)
    segment: asyncio.Task[SegmentOutcome] | None = None  # the stretch of ``run`` being executed
    cancelled: bool = False  # someone asked to cancel ``run``

    def cancel(self) -> None:
        self.cancelled = True
        if self.segment is not None:
            self.segment.cancel()


class Lanes:
    def __init__(
        self,
        store: Store,
        work: Work,
        resolve: Callable[[str | None], tuple[str, str]],
        *,
        concurrent_runs: int = 0,
    ) -> None:
        """``resolve``: a chat run's assistant name (None: the default) → (name, model), when it starts;
        ``concurrent_runs``: the most runs this process executes at once (0: no bound)."""
        self._store = store
        self.slots = RunSlots(concurrent_runs)
        self._work = work
        self._resolve = resolve
        self._lanes: dict[str, Lane] = {}
        self._closing = False

    def wake(self, thread_id: str) -> None:
        """There may be work in the thread: its lane looks (starting one if it has none)."""
        if self._closing:
            return
        lane = self._lanes.get(thread_id)
        if lane is None:
            lane = self._lanes[thread_id] = Lane()
        lane.wake.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._lane(thread_id, lane), name=f"lane {thread_id}")

    def has(self, thread_id: str) -> bool:
        return thread_id in self._lanes

    def get(self, thread_id: str) -> Lane | None:
        return self._lanes.get(thread_id)

    def holding(self) -> dict[str, Lane]:
        """The lanes holding a run, by run id."""
        return {lane.run: lane for lane in self._lanes.values() if lane.run}

    def busy(self) -> list[asyncio.Task[None]]:
        return [lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()]

    def stop_claiming(self) -> None:
        """A graceful stop begins: no lane takes new work. A lane holding a run ends once that run is
        done; the others (waiting for people, or for another process) end now. Queued runs stay queued."""
        self._closing = True
        for lane in self._lanes.values():
            lane.wake.set()

    async def close(self) -> None:
        """Stop every lane at once. A run a lane held is left as it was (in progress, owned here): the
        service hands it over (``Threadline.close``)."""
        self._closing = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        await self.slots.close()

    async def _lane(self, thread_id: str, lane: Lane) -> None:
        try:
            while True:
                lane.wake.clear()
                if self._closing:  # stop_claiming(): nothing more for this lane
                    return
                try:
                    worked = await self._step(thread_id, lane)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _log.exception("lane %s: unexpected error; continuing with the next run", thread_id)
                    worked = True
                if not worked and not lane.wake.is_set():
                    return
        finally:
            if self._lanes.get(thread_id) is lane and not self._closing:
                del self._lanes[thread_id]

    async def _step(self, thread_id: str, lane: Lane) -> bool:
        """Do the thread's next piece of work; False when there is none for this process."""
        async with self.slots.slot():
            if self._closing:  # the stop began while this lane waited for a slot: its run stays queued
                return False
            kind, run, approvals = await self._store.claim(thread_id, self._resolve)
            if run is not None and kind in ("start", "take", "resume", "expire"):
                with log_context(channel=run.channel, thread=thread_id, run=run.id):
                    lane.run, lane.cancelled = run.id, False
                    try:
                        await self._work(kind, run, approvals, lane)
                    finally:
                        lane.run, lane.cancelled = None, False
                return True
        # Waiting holds no slot.
        if kind == "busy":  # another process answers in this thread now; a run queued here waits its turn
            await self._sleep(lane, BUSY_POLL_SECONDS)
            return True
        if kind == "paused" and run is not None:  # until someone decides, or the first approval expires
            expires = min(a.expires_at for a in approvals if a.status == "pending")
            await self._sleep(lane, expires - time.time())
            return True
        return False

    @staticmethod
    async def _sleep(lane: Lane, seconds: float) -> None:
        """Until the lane is woken, or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.wake.wait(), timeout=max(seconds, 0))
