"""What this process does with what others left, and how it reaches channels outside a run's stream.

- Runs taken over from a process that is gone (core/store/processes.py decides which): answered
  here, shown by the adapter's renderer when it gave one, else their answer is posted as a message.
- Runs that were cut off after a tool started: each is told of once, by the adapter's ``cut_off`` where it gave
  one (in place of the half-written answer, or in the question's thread), else in its channel.
- Messages for a channel (``tell``): sent at once when this process serves the channel; kept in
  the database for a process that does otherwise, or when sending fails, and delivered later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.events import Event, RunCompleted, RunFailed
from core.handles import RunHandle
from core.models import Run
from core.notices import CUT_OFF_AFTER_TOOL, CUT_OFF_AFTER_TOOL_MANY
from core.run_handles import RunHandles
from core.store import Store
from core.store.processes import Notice, ProcessStore, Recovered

__all__ = ["AdoptedRenderer", "CutOff", "CutOffRenderer", "Notifier", "Takeover"]

_log = logging.getLogger(__name__)

Notifier = Callable[[str, str], Awaitable[None]]
# Shows a run this process took over: (its handle, the platform message id of the question or None).
AdoptedRenderer = Callable[[RunHandle, str | None], Awaitable[None]]


@dataclass(frozen=True)
class CutOff:
    """A run a restart cut off after it had started a tool, to be told of where its answer was going."""

    channel: str  # the run's conversation
    run_id: str
    text: str  # what to say (core/notices.py)
    question: str | None  # the platform message id of its question, if it was asked in one
    earlier: str | None  # the message in which the stopped process had begun the answer (``Store.reply_ref``)


# Tells of a cut-off run in its conversation, as the platform shows answers (raises: the notice waits in the
# database and is tried again).
CutOffRenderer = Callable[[CutOff], Awaitable[None]]


class Takeover:
    def __init__(
        self,
        store: Store,
        processes: ProcessStore,
        handles: RunHandles,
        notify: Notifier | None,
        wake: Callable[[str], None],
        has_lane: Callable[[str], bool],
    ) -> None:
        """``wake``: a thread has work for this process; ``has_lane``: whether a thread's lane runs here."""
        self._store = store
        self._processes = processes
        self._handles = handles
        self._notify = notify
        self._wake = wake
        self._has_lane = has_lane
        self._render: AdoptedRenderer | None = None
        self._show_cut_off: CutOffRenderer | None = None
        self._adopted: dict[str, RunHandle] = {}  # taken over, not yet handed to a renderer
        self._tasks: set[asyncio.Task[None]] = set()
        self.poke: Callable[[], None] = lambda: None  # the lease loop delivers queued notices at once
        handles.on_end = self._ended

    async def tell(self, channel: str, text: str, run_id: str | None = None) -> None:
        """A message for a channel outside any run's stream; about the run ``run_id`` when one is given."""
        if self._processes.serves(channel):
            if self._notify is None:
                _log.info("no notifier; a message for %s was not delivered", channel)
                return
            try:
                await self._post(channel, text, run_id)
                return
            except Exception as exc:
                _log.warning("could not tell channel %s (%s: %s); trying again later", channel, type(exc).__name__, exc)
        await self._processes.queue_notice(channel, text, run_id)
        self.poke()

    async def deliver(self, notice: Notice) -> None:
        """A notice waiting in the database for this process's platforms (raises: tried again later)."""
        if self._notify is None:
            raise RuntimeError("this process has no way to post to its channels")
        await self._post(notice.channel, notice.text, notice.run_id)

    async def _post(self, channel: str, text: str, run_id: str | None) -> None:
        """A notice about a run through the adapter's ``cut_off``, where it gave one; else to the channel."""
        if run_id is None or self._show_cut_off is None:
            assert self._notify is not None
            await self._notify(channel, text)
            return
        question = await self._store.question_msg_id(run_id)
        earlier = await self._store.reply_ref(run_id)
        await self._show_cut_off(CutOff(channel, run_id, text, question, earlier))

    async def recovered(self, found: Recovered) -> None:
        """Runs this process took over from processes that are gone: answer them, or tell the channel once."""
        await self.cut_off(found.failed)
        for run in found.adopted:
            self.adopt(run)
            self._wake(run.thread_id)
        for thread_id in found.paused_threads:  # this process watches their expiry too
            if not self._has_lane(thread_id):
                self._wake(thread_id)

    async def cut_off(self, runs: list[Run]) -> None:
        """Runs closed by a restart after they had started a tool: each told of once where its answer was going
        (a conversation with several, once for all of them)."""
        by_channel: dict[str, list[Run]] = {}
        for run in runs:
            by_channel.setdefault(run.channel, []).append(run)
        for channel, cut in by_channel.items():
            if len(cut) == 1:
                await self.tell(channel, CUT_OFF_AFTER_TOOL, cut[0].id)
            else:
                await self.tell(channel, CUT_OFF_AFTER_TOOL_MANY.format(count=len(cut)))

    def adopt(self, run: Run) -> None:
        """A run this process answers for a process that is gone: shown by the renderer, else posted."""
        if run.id not in self._adopted and not self._handles.watched(run.id):
            self._adopted[run.id] = self._handles.get(run)
            self._hand_over(run.id)

    def adopt_with(self, render: AdoptedRenderer, cut_off: CutOffRenderer | None = None) -> None:
        self._render = render
        self._show_cut_off = cut_off
        for run_id in list(self._adopted):
            self._hand_over(run_id)

    def busy(self) -> list[asyncio.Task[None]]:
        return [task for task in self._tasks if not task.done()]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _hand_over(self, run_id: str) -> None:
        render, handle = self._render, self._adopted.get(run_id)
        if render is None or handle is None:
            return
        del self._adopted[run_id]

        async def show() -> None:
            try:
                await render(handle, await self._store.question_msg_id(run_id))
            except Exception:
                _log.exception("could not show run %s, taken over from a stopped process", run_id)

        self._own(show())

    def _ended(self, run: Run, event: Event) -> None:
        """A run's last event: one taken over that nobody shows has its answer posted to its channel (one
        handed over at a stop is not over: whoever takes it next posts its answer)."""
        if self._adopted.pop(run.id, None) is None or run.spec is not None:  # API clients read their runs
            return
        if isinstance(event, RunFailed) and event.handed_over:
            return
        text = event.text if isinstance(event, RunCompleted) else str(getattr(event, "message", ""))
        if text:
            self._own(self.tell(run.channel, text))

    def _own(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
