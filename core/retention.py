"""The retention job: deletes conversation data older than ``THREADLINE_RETENTION_DAYS``.

The service owns one :class:`RetentionJob`: it runs a pass at start and then every
``interval`` seconds, until the service closes. A pass deletes old turns of chat channels'
threads (keeping a current thread's last ``THREADLINE_RETENTION_KEEP_LAST`` messages and every
turn of an active run), their runs with steps and approvals, closed threads left empty, and
knowledge-base files added before the cutoff; it logs one line with the counts. A thread's
rolling summary of what left its context window stays. What the Assistants-compatible API
created (threads, files, vector stores) is left to its client; see core/store/retention.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from core.knowledge.base import KnowledgeBase
from core.store import Store
from core.store.retention import RetentionCounts, RetentionStore

__all__ = ["RetentionJob"]

_log = logging.getLogger(__name__)

DAY = 86400.0
INTERVAL = 3600.0


class RetentionJob:
    """Call :meth:`start` once the service is open and :meth:`close` when it closes."""

    def __init__(
        self,
        store: Store,
        knowledge: KnowledgeBase,
        *,
        days: float | None,
        keep_last: int,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = RetentionStore(store)
        self._knowledge = knowledge
        self._days = days
        self._keep_last = keep_last
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._days is not None

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> RetentionCounts:
        """One pass now (nothing when retention is off); returns what it deleted."""
        if self._days is None:
            return RetentionCounts()
        cutoff = self._clock() - self._days * DAY
        counts = await self._store.prune_conversations(cutoff, self._keep_last)
        files = await self._knowledge.forget_older_than(cutoff)
        counts += RetentionCounts(files=len(files))
        _log.info(
            "retention: deleted %d threads, %d messages, %d runs, %d run steps, %d approvals, %d files"
            " older than %g days",
            counts.threads,
            counts.messages,
            counts.runs,
            counts.run_steps,
            counts.approvals,
            counts.files,
            self._days,
        )
        return counts

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("retention pass failed; the next one runs in %g seconds", self._interval)
            await asyncio.sleep(self._interval)
