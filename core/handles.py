"""A live view of one run for the adapter that asked for it: its events, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from core.events import Event, RunCompleted, RunFailed

__all__ = ["RunHandle"]


class RunHandle:
    """Events of one run. ``events()`` ends after ``RunCompleted`` or ``RunFailed``.

    An approval does not end it: the stream waits, and goes on once someone decides.
    """

    def __init__(self, run_id: str, channel: str) -> None:
        self.run_id = run_id
        self.channel = channel
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.done = False

    def put(self, event: Event) -> None:
        if isinstance(event, RunCompleted | RunFailed):
            self.done = True
        self._queue.put_nowait(event)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, RunCompleted | RunFailed):
                return

    async def result(self) -> Event:
        """Wait for the end of the run (answering no approval) and return its last event."""
        last: Event | None = None
        async for event in self.events():
            last = event
        assert last is not None
        return last
