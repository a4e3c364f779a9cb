"""Deleting old conversation data: the SQL of retention (``THREADLINE_RETENTION_DAYS``).

What goes: whole turns (a person's message and everything a run wrote for it) whose newest
message is older than the cutoff, the runs those turns started with their steps and approvals,
and threads that are no longer a channel's current one once nothing is left in them. What stays:
the turns holding a current thread's last ``keep_last`` messages, every turn of a run that is
still active (queued, in progress, waiting for approval, cancelling), and everything of the
Assistants-compatible API (channels ``api:...``): API threads, files and vector stores are
objects their client deletes. Turns go whole so that a tool call is never kept without its result.
A thread's rolling summary (core/context.py) goes when every message it covers is gone (all it says
is older than the cutoff); while some are left it stays, its mark moved back to the newest of them.
A conversation inside a channel (a Slack or Discord thread: core/models.py) keeps no last messages:
once all of it is older than the cutoff it goes whole, its record in ``channels`` too (a later reply
in that platform thread begins a new one). A channel's own conversation is never deleted.

Work is done in batches, each one short transaction on the store's thread (``Store.call``),
so other channels never wait long. The knowledge base's files are removed through
:meth:`core.store.files.FileStore.remove_created_before`, which also drops their chunks,
full-text index rows, embeddings and unused bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from core.models import TERMINAL_STATUSES
from core.store.sql import SqlDatabase
from core.store.store import Store

__all__ = ["RetentionCounts", "RetentionStore"]

TURN_BATCH = 500  # turns deleted per transaction
API_CHANNELS = "api:%"
_ACTIVE = ", ".join(f"'{status}'" for status in ("queued", "in_progress", "requires_action", "cancelling"))
_TERMINAL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))


@dataclass(frozen=True)
class RetentionCounts:
    """How many rows of each kind one retention pass deleted."""

    threads: int = 0
    messages: int = 0
    runs: int = 0
    run_steps: int = 0
    approvals: int = 0
    files: int = 0

    def __add__(self, other: RetentionCounts) -> RetentionCounts:
        return RetentionCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


class RetentionStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def prune_conversations(self, cutoff: float, keep_last: int) -> RetentionCounts:
        """Delete chat channels' turns, runs and closed threads older than ``cutoff`` (a Unix time)."""
        thread_ids = await self._store.call(lambda db: _candidate_threads(db, cutoff))
        total = RetentionCounts()
        for thread_id in thread_ids:

            def prune(db: SqlDatabase, thread_id: str = thread_id) -> tuple[RetentionCounts, bool]:
                return _prune_thread(db, thread_id, cutoff, keep_last)

            while True:
                counts, more = await self._store.call(prune)
                total += counts
                if not more:
                    break
        return total


def _candidate_threads(db: SqlDatabase, cutoff: float) -> list[str]:
    """Chat threads begun before the cutoff: only they can hold anything older than it."""
    rows = db.execute(
        "SELECT id FROM threads WHERE created_at < ? AND channel NOT LIKE ? ORDER BY created_at",
        [cutoff, API_CHANNELS],
    ).fetchall()
    return [str(row[0]) for row in rows]


def _prune_thread(db: SqlDatabase, thread_id: str, cutoff: float, keep_last: int) -> tuple[RetentionCounts, bool]:
    """One batch for one thread, in one transaction: (what was deleted, whether more may be left)."""
    row = db.execute(
        "SELECT t.channel, c.thread_id = t.id, c.scope IS NOT NULL OR c.key LIKE '%/%'"
        " FROM threads t LEFT JOIN channels c ON c.key = t.channel WHERE t.id = ?",
        [thread_id],
    ).fetchone()
    if row is None:
        return RetentionCounts(), False
    channel, current, inside = str(row[0]), bool(row[1]), bool(row[2])
    keep_from = _first_kept_turn(db, thread_id, keep_last) if current and not inside else None
    sql = (
        "SELECT turn_id FROM messages WHERE thread_id = ?"
        f" AND turn_id NOT IN (SELECT trigger_message_id FROM runs WHERE thread_id = ? AND status IN ({_ACTIVE})"
        " AND trigger_message_id IS NOT NULL)"
    )
    params: list[object] = [thread_id, thread_id]
    if keep_from is not None:
        sql += " AND turn_id < ?"
        params.append(keep_from)
    sql += " GROUP BY turn_id HAVING max(created_at) < ? ORDER BY turn_id LIMIT ?"
    params += [cutoff, TURN_BATCH]
    turns = [int(r[0]) for r in db.execute(sql, params).fetchall()]
    with db.atomic():
        messages = 0
        for start in range(0, len(turns), 250):
            batch = turns[start : start + 250]
            marks = ",".join("?" * len(batch))
            sql = f"DELETE FROM messages WHERE thread_id = ? AND turn_id IN ({marks})"
            messages += db.execute(sql, [thread_id, *batch]).rowcount
        if messages:
            _fit_summary_to_what_is_left(db, thread_id)
        runs, steps, approvals = _delete_old_runs(db, thread_id, cutoff)
        threads = 0
        if current and inside and len(turns) < TURN_BATCH:  # a whole conversation inside a channel, if empty now
            threads = _forget_conversation_if_empty(db, channel, thread_id, cutoff)
        elif not current and len(turns) < TURN_BATCH:
            threads = _delete_thread_if_empty(db, thread_id, cutoff)
    counts = RetentionCounts(threads, messages, runs, steps, approvals)
    return counts, len(turns) == TURN_BATCH


def _first_kept_turn(db: SqlDatabase, thread_id: str, keep_last: int) -> int | None:
    """The first turn holding one of the thread's last ``keep_last`` messages (None: keep none)."""
    if keep_last <= 0:
        return None
    row = db.execute(
        "SELECT min(turn_id) FROM (SELECT turn_id FROM messages WHERE thread_id = ?"
        " ORDER BY turn_id DESC, id DESC LIMIT ?) AS last_messages",
        [thread_id, keep_last],
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _fit_summary_to_what_is_left(db: SqlDatabase, thread_id: str) -> None:
    """Let the thread's rolling summary claim only messages that are still there, and drop it with the last.

    The summary says which messages it covers by the (turn_id, id) of the last one; its mark moves back to
    the newest remaining message it covers. When none is left, everything the summary says comes from
    messages retention deleted, so it is deleted too: retention is for forgetting. (While some of them are
    left, it stays, and with it the gist of older ones: a summary cannot be split by age.)
    """
    db.execute(
        "UPDATE threads SET (summary_turn_id, summary_message_id) = ("
        " SELECT m.turn_id, m.id FROM messages m WHERE m.thread_id = threads.id"
        " AND (m.turn_id < threads.summary_turn_id"
        " OR (m.turn_id = threads.summary_turn_id AND m.id <= threads.summary_message_id))"
        " ORDER BY m.turn_id DESC, m.id DESC LIMIT 1)"
        " WHERE id = ? AND summary_turn_id IS NOT NULL",
        [thread_id],
    )
    db.execute("UPDATE threads SET summary = NULL WHERE id = ? AND summary_turn_id IS NULL", [thread_id])


def _delete_old_runs(db: SqlDatabase, thread_id: str, cutoff: float) -> tuple[int, int, int]:
    """Ended runs begun before the cutoff whose turn is gone, with their steps and approvals."""
    runs = (
        f"SELECT id FROM runs WHERE thread_id = ? AND created_at < ? AND status IN ({_TERMINAL})"
        " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.thread_id = runs.thread_id"
        " AND m.turn_id = runs.trigger_message_id)"
    )
    ids = [str(r[0]) for r in db.execute(runs, [thread_id, cutoff]).fetchall()]
    if not ids:
        return 0, 0, 0
    steps = approvals = deleted = 0
    for start in range(0, len(ids), 250):
        batch = ids[start : start + 250]
        marks = ",".join("?" * len(batch))
        approvals += db.execute(f"DELETE FROM approvals WHERE run_id IN ({marks})", batch).rowcount
        steps += db.execute(f"DELETE FROM run_steps WHERE run_id IN ({marks})", batch).rowcount
        deleted += db.execute(f"DELETE FROM runs WHERE id IN ({marks})", batch).rowcount
    return deleted, steps, approvals


def _forget_conversation_if_empty(db: SqlDatabase, channel: str, thread_id: str, cutoff: float) -> int:
    """A conversation inside a channel whose current thread has nothing left, and no other thread: its
    record and its thread go together (how many threads went). Its scope's record stays."""
    empty = db.execute(
        "SELECT 1 FROM threads WHERE id = ? AND created_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM messages WHERE thread_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM runs WHERE thread_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM threads WHERE channel = ? AND id != ?)",
        [thread_id, cutoff, thread_id, thread_id, channel, thread_id],
    ).fetchone()
    if empty is None:
        return 0
    # the thread first: it references its channel's record (the record names its thread only as data)
    deleted = int(db.execute("DELETE FROM threads WHERE id = ?", [thread_id]).rowcount)
    db.execute("DELETE FROM channels WHERE key = ? AND thread_id = ?", [channel, thread_id])
    return deleted


def _delete_thread_if_empty(db: SqlDatabase, thread_id: str, cutoff: float) -> int:
    """A closed thread goes once no message and no run is left in it."""
    cursor = db.execute(
        "DELETE FROM threads WHERE id = ? AND created_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM messages WHERE thread_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM runs WHERE thread_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM channels WHERE thread_id = ?)",
        [thread_id, cutoff, thread_id, thread_id, thread_id],
    )
    return cursor.rowcount
