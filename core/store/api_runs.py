"""Runs as the Assistants-compatible API reaches them: queued with their own settings, scoped by channel.

A run is created on an API thread after the messages it answers (and any ``additional_messages``,
added in the same transaction); its turn is the thread's last message. At most one run is active
on a thread at a time, as in the old API: the check and the insert are one transaction on the
store's only connection, so two concurrent creates cannot both pass it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import ThreadlineError
from core.models import Approval, MessageRecord, Page, PageQuery, Run
from core.store.api_threads import NewMessageRow, _get_message, _get_thread, _insert_messages
from core.store.paging import fetch_page
from core.store.sql import SqlDatabase
from core.store.store import _APPROVAL_COLUMNS, _RUN_COLUMNS, Store, _run, new_id

__all__ = [
    "ACTIVE_STATUSES",
    "AnswerIds",
    "RunActive",
    "RunStepRecord",
    "RunStore",
    "ToolCallRecord",
    "answer_ids",
    "tool_step_id",
]

ACTIVE_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")
_ACTIVE = "status IN ('queued', 'in_progress', 'requires_action', 'cancelling')"


class RunActive(ThreadlineError):
    """The thread already has a run that has not ended."""

    def __init__(self, thread_id: str, run_id: str, status: str) -> None:
        super().__init__(f"Thread {thread_id} already has an active run {run_id}.")
        self.thread_id, self.run_id, self.status = thread_id, run_id, status


@dataclass(frozen=True)
class AnswerIds:
    message_id: str  # the public id of the assistant message
    step_id: str  # the id of its message-creation step


def answer_ids(run_id: str, tool_calls_before: int) -> AnswerIds:
    """The ids of the assistant message a run writes after ``tool_calls_before`` of its tool calls.

    Derived from the run, not random, so that a stream can name a message (and its step) while the
    model is still writing it, and the run stores it under the same ids when it completes: a run
    writes at most one assistant message between two tool calls, so the count names it.
    """
    digest = hashlib.sha256(f"{run_id}:{tool_calls_before}".encode()).hexdigest()
    return AnswerIds(message_id=f"msg_{digest[:24]}", step_id=f"step_{digest[24:48]}")


def tool_step_id(run_id: str, first_call_id: str) -> str:
    """The id of the step of one model response's tool calls, named by its first call.

    Derived, like :func:`answer_ids`, so that a stream names the step as the model begins the call, and the
    run stores it under that id once the response is complete.
    """
    digest = hashlib.sha256(f"{run_id}:calls:{first_call_id}".encode()).hexdigest()
    return f"step_{digest[:24]}"


@dataclass(frozen=True)
class ToolCallRecord:
    """One call of a tool-call step; ``details``: what its tool recorded beyond the output (core/tool_details.py)."""

    call_id: str
    tool_name: str
    arguments: str
    output: str | None
    status: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunStepRecord:
    """A run step: a message creation, or the tool calls of one model response (``calls``, in order)."""

    id: str
    run_id: str
    type: str  # message_creation | tool_calls
    status: str
    created_at: float
    completed_at: float | None
    calls: tuple[ToolCallRecord, ...] = ()

    def call(self, call_id: str) -> ToolCallRecord | None:
        return next((c for c in self.calls if c.call_id == call_id), None)


_STEP_COLUMNS = (
    "id, run_id, type, status, created_at, completed_at, tool_name, call_id, arguments, output,"
    " step_id, call_index, details"
)
_HEADS = "run_id = ? AND (step_id IS NULL OR step_id = id)"  # a step's first row: the step, in lists


def _steps(rows: Sequence[Sequence[Any]]) -> list[RunStepRecord]:
    """Rows grouped into their steps, in the order of each step's first row."""
    groups: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        groups.setdefault(str(row[10] or row[0]), []).append(row)
    return [_step(step_id, members) for step_id, members in groups.items()]


def _step(step_id: str, rows: Sequence[Sequence[Any]]) -> RunStepRecord:
    rows = sorted(rows, key=lambda row: row[11] or 0)
    statuses = {str(row[3]) for row in rows}  # a step is done when all its calls are; it ended as the worst did
    ended = next((s for s in ("failed", "cancelled", "expired") if s in statuses), "completed")
    status = "in_progress" if "in_progress" in statuses else ended
    ends = [float(row[5]) for row in rows if row[5] is not None]
    calls = tuple(
        ToolCallRecord(
            call_id=str(row[7] or row[0]),
            tool_name=str(row[6] or ""),
            arguments=str(row[8] or ""),
            output=row[9],
            status=str(row[3]),
            details=json.loads(row[12]) if row[12] else {},
        )
        for row in rows
        if row[2] == "tool_calls"
    )
    return RunStepRecord(
        id=step_id,
        run_id=str(rows[0][1]),
        type=str(rows[0][2]),
        status=status,
        created_at=min(float(row[4] or 0) for row in rows),
        completed_at=max(ends) if ends and status != "in_progress" else None,
        calls=calls,
    )


def active_run(db: SqlDatabase, thread_id: str) -> tuple[str, str] | None:
    """(run id, status) of the thread's run that has not ended, if any."""
    row = db.execute(
        f"SELECT id, status FROM runs WHERE thread_id = ? AND {_ACTIVE} ORDER BY created_at LIMIT 1", [thread_id]
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


class RunStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def queue(
        self,
        *,
        channel: str,
        thread_id: str,
        spec: str,
        assistant_id: str,
        model: str,
        metadata: Mapping[str, str],
        expires_at: float,
        messages: Sequence[NewMessageRow] = (),
    ) -> Run:
        """Add ``messages`` and queue a run answering them, in one transaction; RunActive if one is going."""

        def queue(db: SqlDatabase) -> Run:
            with db.atomic():
                active = active_run(db, thread_id)
                if active is not None:
                    raise RunActive(thread_id, *active)
                _insert_messages(db, thread_id, channel, messages)
                row = db.execute("SELECT max(turn_id) FROM messages WHERE thread_id = ?", [thread_id]).fetchone()
                run_id = new_id("run")
                db.execute(
                    "INSERT INTO runs (id, thread_id, channel, assistant, model, status, trigger_message_id,"
                    " created_at, spec, assistant_id, metadata, expires_at, origin)"
                    " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                    [
                        run_id,
                        thread_id,
                        channel,
                        assistant_id,
                        model,
                        row[0] if row else None,
                        time.time(),
                        spec,
                        assistant_id,
                        json.dumps(dict(metadata)),
                        expires_at,
                        self._store.process_id,
                    ],
                )
                return _run(db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]).fetchone())

        return await self._store.call(queue)

    async def get(self, channel: str, thread_id: str, run_id: str) -> Run | None:
        def get(db: SqlDatabase) -> Run | None:
            row = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ? AND channel = ? AND thread_id = ?",
                [run_id, channel, thread_id],
            ).fetchone()
            return _run(row) if row else None

        return await self._store.call(get)

    async def page(self, channel: str, thread_id: str, query: PageQuery) -> Page[Run]:
        return await self._store.call(
            lambda db: fetch_page(
                db,
                columns=_RUN_COLUMNS,
                table="runs",
                where="channel = ? AND thread_id = ?",
                params=[channel, thread_id],
                key=["created_at", "rowid"],
                id_column="id",
                query=query,
                convert=_run,
            )
        )

    async def set_metadata(self, run_id: str, metadata: Mapping[str, str]) -> None:
        await self._store.call(
            lambda db: db.execute("UPDATE runs SET metadata = ? WHERE id = ?", [json.dumps(dict(metadata)), run_id])
        )

    async def pending_calls(self, run_id: str) -> list[Approval]:
        def pending(db: SqlDatabase) -> list[Approval]:
            rows = db.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE run_id = ? AND status = 'pending'"
                " ORDER BY created_at, rowid",
                [run_id],
            ).fetchall()
            return [Approval(*row) for row in rows]

        return await self._store.call(pending)

    async def record_outputs(self, run_id: str, decisions: Sequence[tuple[str, str, str]]) -> bool:
        """Record (approval id, status, output) for every pending call of the run at once; False if any was
        no longer pending (decided, expired) and then none is recorded."""

        def record(db: SqlDatabase) -> bool:
            now = time.time()
            with db.atomic():
                for approval_id, status, output in decisions:
                    cursor = db.execute(
                        "UPDATE approvals SET status = ?, output = ?, decided_by = 'the API client', decided_at = ?"
                        " WHERE id = ? AND run_id = ? AND status = 'pending'",
                        [status, output, now, approval_id, run_id],
                    )
                    if cursor.rowcount != 1:
                        raise _NotPending
            return True

        try:
            return await self._store.call(record)
        except _NotPending:
            return False

    async def steps(self, run_id: str) -> list[RunStepRecord]:
        def steps(db: SqlDatabase) -> list[RunStepRecord]:
            rows = db.execute(
                f"SELECT {_STEP_COLUMNS} FROM run_steps WHERE run_id = ? ORDER BY created_at, rowid", [run_id]
            ).fetchall()
            return _steps(rows)

        return await self._store.call(steps)

    async def step_page(self, run_id: str, query: PageQuery) -> Page[RunStepRecord]:
        """A page of the run's steps (the tool calls of one model response are one step)."""

        def page(db: SqlDatabase) -> Page[RunStepRecord]:
            heads = fetch_page(
                db,
                columns=_STEP_COLUMNS,
                table="run_steps",
                where=_HEADS,
                params=[run_id],
                key=["created_at", "rowid"],
                id_column="id",
                query=query,
                convert=tuple,
            )
            grouped = [str(row[0]) for row in heads.items if row[10]]
            members: dict[str, list[Sequence[Any]]] = {}
            if grouped:
                marks = ", ".join("?" * len(grouped))
                for row in db.execute(
                    f"SELECT {_STEP_COLUMNS} FROM run_steps WHERE run_id = ? AND step_id IN ({marks})",
                    [run_id, *grouped],
                ).fetchall():
                    members.setdefault(str(row[10]), []).append(row)
            steps = [_step(str(row[0]), members.get(str(row[0])) or [row]) for row in heads.items]
            return Page(steps, heads.has_more)

        return await self._store.call(page)

    async def run_message_ids(self, run_id: str) -> list[str]:
        """Public ids of the assistant messages a run wrote, in order."""

        def ids(db: SqlDatabase) -> list[str]:
            rows = db.execute(
                "SELECT public_id FROM messages WHERE run_id = ? AND role = 'assistant' ORDER BY id", [run_id]
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._store.call(ids)

    async def tool_call_count(self, run_id: str) -> int:
        """How many tool calls the run has made so far (its tool-call steps)."""
        row = await self._store.call(
            lambda db: db.execute(
                "SELECT count(*) FROM run_steps WHERE run_id = ? AND type = 'tool_calls'", [run_id]
            ).fetchone()
        )
        return int(row[0])

    async def answer_public_ids(self, run_id: str, roles: Sequence[str]) -> tuple[list[str | None], str]:
        """The public ids of a completing run's messages (by their roles, in order: None for all but the
        assistant's) and the id of its message-creation step, as :func:`answer_ids` named them."""
        total = await self.tool_call_count(run_id)
        ids: list[str | None] = [None] * len(roles)
        calls_after = 0
        for index in range(len(roles) - 1, -1, -1):
            if roles[index] == "tool_call":
                calls_after += 1
            elif roles[index] == "assistant":
                ids[index] = answer_ids(run_id, total - calls_after).message_id
        return ids, answer_ids(run_id, total).step_id

    async def active(self, thread_id: str) -> tuple[str, str] | None:
        """(run id, status) of the thread's run that has not ended, if any."""
        return await self._store.call(lambda db: active_run(db, thread_id))

    async def add_message(self, channel: str, thread_id: str, message: NewMessageRow) -> MessageRecord | None:
        """Append a client's message unless a run is active on the thread (RunActive); None: no such thread."""

        def add(db: SqlDatabase) -> MessageRecord | None:
            with db.atomic():
                if _get_thread(db, thread_id, channel) is None:
                    return None
                active = active_run(db, thread_id)
                if active is not None:
                    raise RunActive(thread_id, *active)
                (public_id,) = _insert_messages(db, thread_id, channel, [message])
            return _get_message(db, channel, thread_id, public_id)

        return await self._store.call(add)

    async def assistant_ids(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The assistant each of these runs ran, by run id."""
        wanted = sorted(set(run_ids))
        if not wanted:
            return {}

        def ids(db: SqlDatabase) -> dict[str, str]:
            marks = ", ".join("?" * len(wanted))
            rows = db.execute(
                f"SELECT id, assistant_id FROM runs WHERE id IN ({marks}) AND assistant_id IS NOT NULL", wanted
            ).fetchall()
            return {str(row[0]): str(row[1]) for row in rows}

        return await self._store.call(ids)

    async def upload_ids(self, file_ids: Sequence[str]) -> dict[str, str]:
        """For knowledge-base files added from an API upload, the upload's id, by knowledge-base id."""

        def ids(db: SqlDatabase) -> dict[str, str]:
            marks = ", ".join("?" * len(file_ids))
            rows = db.execute(
                f"SELECT id, platform_file_id FROM files WHERE id IN ({marks}) AND platform_file_id IS NOT NULL",
                list(file_ids),
            ).fetchall()
            return {str(a): str(b) for a, b in rows}

        return await self._store.call(ids) if file_ids else {}

    async def set_annotations(self, run_id: str, annotations: Sequence[Mapping[str, Any]]) -> None:
        """Annotate the run's last assistant message (its answer)."""
        await self._store.call(
            lambda db: db.execute(
                "UPDATE messages SET annotations = ? WHERE id ="
                " (SELECT max(id) FROM messages WHERE run_id = ? AND role = 'assistant')",
                [json.dumps(list(annotations)), run_id],
            )
        )


class _NotPending(Exception):
    """A call was decided or expired meanwhile: the transaction is rolled back."""
