"""The context window: what of a long thread is sent to the model on each run.

Each run sends the instructions, a rolling summary of what no longer fits, and the
newest messages that fit the assistant's token budget. A tool call is never separated
from its result: the window only ever starts at a person's or the assistant's message.

When the unsummarised history outgrows the budget, the oldest part of it is folded into
the summary with one extra model call, leaving the window at about half the budget, so
that the next runs do not need another summary call until the window has filled again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.image_inputs import ImageInputs
from core.model_client import ModelClient
from core.store import Store
from core.tokens import TokenCounter

__all__ = ["ContextBuilder", "HistoryEntry", "WindowPlan", "plan_window"]

_log = logging.getLogger(__name__)

# Roles where a window may begin; tool calls and results always travel with what precedes them.
_BOUNDARY_ROLES = frozenset({"user", "assistant"})
SUMMARY_SHARE = 8  # the summary may use up to 1/8 of the budget
FOLD_TARGET = 0.5  # after folding, the window fills about half the budget
FOLD_INPUT_SHARE = 2  # at most budget/2 tokens of old messages go into one summary call

SUMMARY_INSTRUCTIONS = (
    "You keep the running summary of a team chat channel's conversation with its assistant. "
    "Rewrite the summary so that it also covers the new messages. Keep what later questions may need: "
    "who asked for what, decisions, facts and numbers, tool results that matter, open questions. "
    "Drop small talk. Write plain prose or short bullet points, at most {words} words. "
    "Answer with the summary alone."
)


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    turn_id: int
    tokens: int
    role: str

    @property
    def key(self) -> tuple[int, int]:
        return (self.turn_id, self.id)


@dataclass(frozen=True)
class WindowPlan:
    window: list[HistoryEntry]  # oldest first
    fold: list[HistoryEntry]  # oldest first: to fold into the summary before this run


def plan_window(
    history: Sequence[HistoryEntry], available: int, summarised_until: tuple[int, int] | None
) -> WindowPlan:
    """Choose the window (and what to fold) from ``history`` (oldest first) for ``available`` tokens."""
    fresh = [e for e in history if summarised_until is None or e.key > summarised_until]
    if sum(e.tokens for e in fresh) <= available:
        return WindowPlan(window=_from_boundary(fresh), fold=[])
    start = _window_start(fresh, int(available * FOLD_TARGET))
    return WindowPlan(window=fresh[start:], fold=fresh[:start])


def _window_start(entries: Sequence[HistoryEntry], budget: int) -> int:
    """Index where the newest run of entries that fits ``budget`` begins, at a boundary."""
    used = 0
    start = len(entries)
    best = None
    for index in range(len(entries) - 1, -1, -1):
        used += entries[index].tokens
        if used > budget:
            break
        if entries[index].role in _BOUNDARY_ROLES:
            best = index
        start = index
    if best is None:
        # Not even the newest block fits: send the newest block from its boundary anyway.
        for index in range(len(entries) - 1, -1, -1):
            if entries[index].role in _BOUNDARY_ROLES:
                return index
        return start
    return best


def _from_boundary(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    for index, entry in enumerate(entries):
        if entry.role in _BOUNDARY_ROLES:
            return entries[index:]
    return []


class ContextBuilder:
    def __init__(self, store: Store, models: ModelClient, tokens: TokenCounter, images: ImageInputs) -> None:
        self._store = store
        self._models = models
        self._tokens = tokens
        self._images = images  # stored image parts → what the model is shown (core/image_inputs.py)

    async def summary(self, thread_id: str) -> tuple[str | None, tuple[int, int] | None]:
        """The thread's rolling summary and the last message it covers (None, None: none yet)."""
        return await self._store.thread_summary(thread_id)

    async def question(self, thread_id: str, turn: int | None) -> str:
        """What the people asked in turn ``turn`` (the text of its messages), for a search; '' without a turn."""
        if turn is None:
            return ""
        rows = await self._store.history_index(thread_id, turn)
        ids = [message_id for message_id, turn_id, _, role in rows if turn_id == turn and role == "user"]
        return "\n".join(m.text for m in await self._store.messages_by_id(ids) if m.text.strip())

    async def build(
        self,
        *,
        thread_id: str,
        up_to_turn: int | None,
        instructions: str,
        model: str,
        budget: int,
        fixed_tokens: int = 0,
        last_messages: int | None = None,
        run_id: str | None = None,
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """(summary or None, input items oldest first) for a run answering turn ``up_to_turn``.

        ``last_messages``: only that many of the most recent stored messages are candidates (the
        Assistants API's ``truncation_strategy``); the token budget still applies to them. ``run_id``:
        the run that a summary call made now is counted to (its tokens are the run's usage too)."""
        summary, until, rows = await self._store.context_index(thread_id, up_to_turn)
        history = [HistoryEntry(*row) for row in reversed(rows)]
        if last_messages is not None:  # those messages and nothing older: no summary, none folded into it
            history = history[-last_messages:] if last_messages > 0 else []
            summary, until = None, None
        summary_cost = self._tokens.count(summary or "")
        reserve = budget // SUMMARY_SHARE
        available = max(budget - self._tokens.count(instructions) - fixed_tokens - max(summary_cost, reserve), 200)
        plan = plan_window(history, available, until)
        if plan.fold and last_messages is None:
            folded = await self._fold(thread_id, summary, plan.fold, model, budget, run_id)
            if folded is not None:
                summary = folded
        messages = await self._store.messages_by_id(e.id for e in plan.window)
        return summary, await self._images.model_items(thread_id, messages, up_to_turn)

    async def _fold(
        self,
        thread_id: str,
        summary: str | None,
        fold: list[HistoryEntry],
        model: str,
        budget: int,
        run_id: str | None = None,
    ) -> str | None:
        """Fold ``fold`` into the thread's summary with one model call; None if that failed."""
        limit = budget // FOLD_INPUT_SHARE
        chosen: list[HistoryEntry] = []
        used = 0
        for entry in reversed(fold):  # newest first: what just left the window matters most
            if used + entry.tokens > limit and chosen:
                break
            chosen.append(entry)
            used += entry.tokens
        messages = await self._store.messages_by_id(e.id for e in chosen)
        skipped = len(fold) - len(chosen)
        lines = []
        if skipped:
            lines.append(f"({skipped} older messages were too many to include and are left out.)")
        for message in messages:
            who = message.author_name or message.role
            text = message.text if len(message.text) <= 2000 else message.text[:2000] + " [...]"
            lines.append(f"[{message.role}] {who}: {text}")
        words = max(100, budget // SUMMARY_SHARE * 3 // 4)
        prompt = f"Current summary:\n{summary or '(none yet)'}\n\nNew messages:\n" + "\n".join(lines)
        try:
            completion = await self._models.complete(
                model, SUMMARY_INSTRUCTIONS.format(words=words), prompt, max_tokens=budget // SUMMARY_SHARE
            )
        except Exception:
            _log.warning(
                "summarising thread %s failed; this run sends the recent window only",
                thread_id,
                exc_info=True,
            )
            return None
        if run_id is not None and (completion.input_tokens or completion.output_tokens):
            await self._store.add_summary_usage(run_id, completion.input_tokens, completion.output_tokens)
        new_summary = completion.text
        if not new_summary:
            return None
        await self._store.set_thread_summary(thread_id, new_summary, fold[-1].key)
        _log.info("thread %s: folded %d messages into the summary", thread_id, len(fold))
        return new_summary
