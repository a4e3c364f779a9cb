"""This process's part in a database that other processes share: its lease, recovery, notices.

One background task renews the process's lease, takes over what processes that are gone left
(core/store/processes.py decides what), hands runs cancelled from elsewhere to the service, and
delivers notices waiting for a platform served here. It runs once before the service is handed
to an adapter, then every third of the lease (every 5 s at the most), and at once when a notice is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from core.store.processes import Notice, ProcessStore, Recovered

__all__ = ["ProcessLease"]

_log = logging.getLogger(__name__)

MAX_NOTICE_ATTEMPTS = 6  # then a notice is dropped, with a log line (the channel may be gone)
TICK_SECONDS = 5.0  # at most this long between two ticks, however long the lease


class ProcessLease:
    def __init__(
        self,
        processes: ProcessStore,
        *,
        lease_seconds: float,
        restart_reason: str,
        on_recovered: Callable[[Recovered], Awaitable[None]],
        deliver: Callable[[Notice], Awaitable[None]],
        on_tick: Callable[[], Awaitable[None]],
    ) -> None:
        """``deliver`` raises when a notice could not be delivered (it is tried again later);
        ``on_tick``: the service's own periodic work (runs cancelled by another process, files left half-indexed)."""
        self.processes = processes
        self._lease_seconds = lease_seconds
        self._interval = min(lease_seconds / 3, TICK_SECONDS)
        self._reason = restart_reason
        self._on_recovered = on_recovered
        self._deliver = deliver
        self._on_tick = on_tick
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register, recover what is left from before, deliver what waits; then keep at it in the background."""
        await self.processes.register()
        await self._tick()
        self._task = asyncio.create_task(self._loop(), name="process lease")

    def poke(self) -> None:
        """A notice was queued: deliver it now rather than at the next tick."""
        self._poke.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.processes.retire()
        except Exception as exc:  # the others take this process for gone when its lease runs out instead
            _log.warning("could not sign this process off the database: %s: %s", type(exc).__name__, exc)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self._interval)
            self._poke.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is busy or gone: /readyz says so; try again next tick
                _log.exception("could not renew this process's lease or recover runs; trying again")

    async def _tick(self) -> None:
        if not await self.processes.renew():
            _log.error(
                "this process was taken for gone (its lease of %.0f s ran out: was it paused?); "
                "runs it was answering may have been taken over by another process",
                self._lease_seconds,
            )
        found = await self.processes.recover(self._reason)
        if found.adopted or found.failed:
            _log.warning(
                "took over %d runs and closed %d left by processes that are gone", len(found.adopted), len(found.failed)
            )
        await self._on_recovered(found)
        await self._on_tick()
        for notice in await self.processes.take_notices():
            try:
                await self._deliver(notice)
            except Exception as exc:
                if notice.attempts >= MAX_NOTICE_ATTEMPTS:
                    _log.error("dropped a notice for %s after %d failed attempts", notice.channel, notice.attempts)
                    await self.processes.delivered(notice.id)
                    continue
                _log.warning(
                    "could not deliver a notice to %s (%s: %s); trying again", notice.channel, type(exc).__name__, exc
                )
                await self.processes.undelivered(notice.id, retry_after=min(2.0**notice.attempts, 300.0))
            else:
                await self.processes.delivered(notice.id)
