"""A growing answer shown as platform messages that are edited as the text arrives.

Platforms without native streaming (Discord; Slack where streaming is refused) show an answer
by posting a message and editing it. :class:`LiveText` does that once for every platform:

- the first words are posted as soon as they exist, with no wait;
- later edits come at most every ``interval`` seconds (edits are rate-limited per channel);
- :meth:`LiveText.finish` shows the rest at once, never waiting out the edit clock, so the
  complete answer is visible as soon as the model's last token is (the platform client
  still honours the rate-limit headers, and waits only when the budget is actually spent);
- text past the platform's size continues in new messages, split by
  :func:`bots.text.split_message`, so code blocks and links are not broken.

A failed post or edit is logged and retried with the next edit: what each message should
show is recomputed from the whole text every time, so nothing is lost to one bad call. Only
:meth:`LiveText.finish` raises what the platform raised, for the adapter to tell the person.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from bots.text import split_message

__all__ = ["EditBudget", "LiveText", "MessageSink"]

_log = logging.getLogger(__name__)

M = TypeVar("M")


class MessageSink(Protocol[M]):
    """How one platform posts a message and edits it; ``M`` is whatever identifies a posted message."""

    async def post(self, text: str) -> M: ...

    async def edit(self, message: M, text: str) -> None: ...


class EditBudget:
    """A token bucket shared by every live answer of a process, for the edits in between.

    Platforms also limit a bot's requests across all channels (Discord: 50 a second). With many
    answers streaming at once, their in-between edits draw on this budget and are skipped when it
    is spent, so the first words and the last edit of every answer (which never wait) stay fast.
    Those are counted too, but the debt they leave is capped at one burst: after a rush, in-between
    edits come back within ``2 * burst / per_second`` seconds.
    """

    def __init__(self, per_second: float, burst: float | None = None) -> None:
        self._rate = per_second
        self._capacity = burst if burst is not None else per_second
        self._tokens = self._capacity
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def reserve(self, max_wait: float) -> float | None:
        """Book one edit if it can be made within ``max_wait`` seconds; returns the wait, or None (not booked)."""
        self._refill()
        wait = max(0.0, (1 - self._tokens) / self._rate)
        if wait > max_wait:
            return None
        self._tokens -= 1
        return wait

    def spend(self) -> None:
        """Count an edit that does not wait (a first post, a last edit): it still uses the platform's budget."""
        self._refill()
        self._tokens = max(self._tokens - 1, -self._capacity)


class LiveText(Generic[M]):
    def __init__(
        self,
        sink: MessageSink[M],
        *,
        limit: int,
        interval: float,
        render: Callable[[str], str] = str,
        name: str = "",
        budget: EditBudget | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        """``on_retry``: called each time a failed edit is left to the next sync (metrics count it)."""
        self._sink = sink
        self._on_retry = on_retry
        self._limit = limit
        self._interval = interval
        self._render = render
        self._name = name
        self._budget = budget
        self._text = ""  # the whole text of the current part of the answer
        self._shown: list[tuple[M, str]] = []  # the messages showing it, and what each shows now
        self._last_sync = -math.inf
        self._wake = asyncio.Event()
        self._syncing = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def visible(self) -> bool:
        """Whether any of the current part is on screen."""
        return bool(self._shown)

    @property
    def pending(self) -> bool:
        """Whether the current part has text, shown or not."""
        return bool(self._text.strip())

    def append(self, text: str) -> None:
        self._text += text
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"live text {self._name}")
        self._wake.set()

    async def finish(self, tail: str = "") -> list[M]:
        """Show everything now and close this part: the next :meth:`append` starts a new message.

        Returns the messages that show the part. Raises what the platform raised if the last
        sync failed: the caller decides whether to say so.
        """
        self._text += tail
        if self._budget is not None:
            self._budget.spend()
        try:
            await self._sync()
        finally:
            shown = [message for message, _ in self._shown]
            self._text, self._shown = "", []
        return shown

    async def close(self) -> None:
        """Stop the background edits (after :meth:`finish`, or when giving up on the answer)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            wait = self._last_sync + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._shown and self._budget is not None:  # an in-between edit: only within the shared budget
                booked = self._budget.reserve(max_wait=self._interval)
                if booked is None:
                    self._last_sync = time.monotonic()  # skipped: try again after another interval
                    self._wake.set()
                    continue
                await asyncio.sleep(booked)
            elif self._budget is not None:
                self._budget.spend()
            try:
                await self._sync()
            except Exception as exc:  # the adapter warns once if the answer's last sync (finish) fails too
                _log.info("showing the answer in %s failed, will retry: %s", self._name or "a channel", exc)
                if self._on_retry is not None:
                    self._on_retry()

    async def _sync(self) -> None:
        async with self._syncing:  # the flusher and finish() never edit at the same time
            self._last_sync = time.monotonic()
            pieces = [self._render(p) for p in split_message(self._text, self._limit) if p.strip()]
            for index, piece in enumerate(pieces):
                if index < len(self._shown):
                    message, showing = self._shown[index]
                    if showing != piece:
                        await self._sink.edit(message, piece)
                        self._shown[index] = (message, piece)
                else:
                    self._shown.append((await self._sink.post(piece), piece))
