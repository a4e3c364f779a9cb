"""Feedback on answers: a thumbs up or down per person per run, kept with the run, changeable.

Adapters that show buttons under an answer (Slack's feedback buttons) pass a press to
:meth:`Feedback.vote` with the run id the button carries; what it answers is for the person who
pressed. Votes are counted in ``/usage`` (:func:`feedback_lines`) and in the metrics
(``threadline_feedback_total{vote}``: votes given, a changed vote counted again as its new kind).
The SQL is core/store/feedback.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from core.metrics import Metrics
from core.models import Author

if TYPE_CHECKING:
    from core.store.feedback import FeedbackStore

__all__ = ["Feedback", "FeedbackCounts", "Vote", "VoteResult", "feedback_lines", "parse_vote"]

_log = logging.getLogger(__name__)

Vote = Literal["up", "down"]
_VOTES: tuple[Vote, ...] = ("up", "down")


def parse_vote(text: str) -> Vote | None:
    return next((vote for vote in _VOTES if vote == text), None)


@dataclass(frozen=True)
class FeedbackCounts:
    """Votes on a channel's answers (its conversations' included) over some period, as they stand now."""

    up: int = 0
    down: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down


@dataclass(frozen=True)
class VoteResult:
    """What became of a press: ``recorded`` (a first vote), ``changed`` (from ``previous``), ``unchanged``
    (the same vote again), or ``unknown`` (no such run here: removed by retention, or never this channel's)."""

    outcome: Literal["recorded", "changed", "unchanged", "unknown"]
    vote: Vote | None = None
    previous: Vote | None = None

    @property
    def message(self) -> str:
        """The short acknowledgement for the person who pressed."""
        if self.outcome == "unknown" or self.vote is None:
            return "I no longer have that answer, so your feedback was not recorded."
        said = "helpful" if self.vote == "up" else "not helpful"
        if self.outcome == "changed":
            return f"Changed: you now rated this answer {said}."
        if self.outcome == "unchanged":
            return f"You had already rated this answer {said}."
        return f"Thanks: you rated this answer {said}."


class Feedback:
    """Votes on runs' answers, for adapters (through ``Threadline.feedback``) and for ``/usage``."""

    def __init__(self, store: FeedbackStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    async def vote(self, run_id: str, person: Author, vote: str, *, scope: str | None = None) -> VoteResult:
        """Record ``person``'s ``vote`` (``up`` or ``down``) on the run ``run_id``, replacing their earlier one.

        ``scope``: the channel the button was pressed in; a run of another channel is taken as unknown.
        """
        chosen = parse_vote(vote)
        voter = person.key or person.id
        if chosen is None or not run_id or not voter:
            _log.info("feedback %r on run %r from %s not understood", vote[:20], run_id[:60], voter or "someone")
            return VoteResult("unknown")
        found, previous = await self._store.record(run_id, voter, chosen, time.time(), scope=scope)
        if not found:
            _log.info("feedback on run %s from %s: no such run here", run_id[:60], voter)
            return VoteResult("unknown")
        if previous == chosen:
            return VoteResult("unchanged", chosen, chosen)
        self._metrics.feedback_given(chosen)
        _log.info("feedback on run %s from %s: %s (was %s)", run_id, voter, chosen, previous or "none")
        return VoteResult("changed" if previous else "recorded", chosen, previous)

    async def counts(self, channel: str, since: float, until: float | None = None) -> FeedbackCounts:
        """The votes on the runs of ``channel`` (a scope) given in [since, until), as they stand now."""
        return await self._store.counts(channel, since, until)


def feedback_lines(today: FeedbackCounts, month: FeedbackCounts) -> list[str]:
    """The /usage lines about feedback (none when nobody rated an answer this month)."""
    if not month.total:
        return []

    def said(counts: FeedbackCounts) -> str:
        return f"{counts.up} helpful, {counts.down} not helpful"

    return [f"Feedback on answers: today {said(today)}; this month {said(month)}."]
