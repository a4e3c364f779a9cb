"""Votes on runs' answers (``run_feedback``, m019): one per person per run, replaced when they vote again.

Same connection and thread as the rest of the store, through ``Store.call``. A vote goes with its run:
retention deleting the run deletes its votes (``ON DELETE CASCADE``). A channel's votes are those on
the runs of every conversation whose scope it is, as in core/store/usage.py; periods are half-open,
``since <= voted_at < until``, by the time of each person's latest vote.
"""

from __future__ import annotations

from typing import Any

from core.feedback import FeedbackCounts, Vote, parse_vote
from core.store.sql import SqlDatabase
from core.store.store import Store, immediate

__all__ = ["FeedbackStore"]

# the runs of a channel and of the conversations inside it
_IN_CHANNEL = "(r.channel = ? OR r.channel IN (SELECT key FROM channels WHERE scope = ?))"


class FeedbackStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self, run_id: str, voter: str, vote: Vote, now: float, *, scope: str | None = None
    ) -> tuple[bool, Vote | None]:
        """Set ``voter``'s vote on the run; returns (whether the run exists here, the vote it replaced).

        ``scope``: the run must belong to this channel (its own conversation or one inside it)."""

        def record(db: SqlDatabase) -> tuple[bool, Vote | None]:
            def work() -> tuple[bool, Vote | None]:
                row = db.execute(
                    "SELECT COALESCE(c.scope, r.channel) FROM runs r LEFT JOIN channels c ON c.key = r.channel"
                    " WHERE r.id = ?",
                    [run_id],
                ).fetchone()
                if row is None or (scope is not None and row[0] != scope):
                    return False, None
                before = db.execute(
                    "SELECT vote FROM run_feedback WHERE run_id = ? AND voter = ?", [run_id, voter]
                ).fetchone()
                previous = parse_vote(str(before[0])) if before is not None else None
                if previous != vote:
                    db.execute(
                        "INSERT INTO run_feedback (run_id, voter, vote, voted_at) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (run_id, voter) DO UPDATE SET vote = excluded.vote, voted_at = excluded.voted_at",
                        [run_id, voter, vote, now],
                    )
                return True, previous

            return immediate(db, work)

        return await self._store.call(record)

    async def counts(self, channel: str, since: float, until: float | None = None) -> FeedbackCounts:
        """Votes on the runs of ``channel`` and its conversations, given in the period."""
        where = ["f.voted_at >= ?", _IN_CHANNEL]
        params: list[Any] = [since, channel, channel]
        if until is not None:
            where.append("f.voted_at < ?")
            params.append(until)
        sql = (
            "SELECT f.vote, COUNT(*) FROM run_feedback f JOIN runs r ON r.id = f.run_id"
            f" WHERE {' AND '.join(where)} GROUP BY f.vote"
        )

        def query(db: SqlDatabase) -> FeedbackCounts:
            votes = {str(vote): int(count) for vote, count in db.execute(sql, params).fetchall()}
            return FeedbackCounts(up=votes.get("up", 0), down=votes.get("down", 0))

        return await self._store.call(query)
