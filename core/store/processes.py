"""This process among the others on the database: its lease, what it recovers, the notices it delivers.

Same connection and thread as the rest of the store, through ``Store.call``; the rules of who is
alive and how a run is taken over are in core/store/leases.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from core.models import Run
from core.store.leases import ACTIVE, live_processes, process_started, recover_run, served
from core.store.sql import SqlDatabase, insert_row
from core.store.store import _RUN_COLUMNS, Store, _run, immediate

__all__ = ["HandedOver", "Notice", "ProcessStore", "Recovered"]

NOTICE_CLAIM_SECONDS = 60.0  # a notice a process took and did not deliver in this time goes to another


@dataclass
class Recovered:
    """What one recovery pass found, in channels this process serves."""

    adopted: list[Run] = field(default_factory=list)  # queued here now: answered by this process
    failed: list[Run] = field(default_factory=list)  # had started a tool: closed (their channels are told)
    paused_threads: list[str] = field(default_factory=list)  # threads with a run waiting for people


@dataclass
class HandedOver:
    """What a stopping process did with the runs it was executing (``ProcessStore.hand_over``), each as stored now."""

    requeued: list[Run] = field(default_factory=list)  # queued again: answered from the start by whoever takes them
    failed: list[Run] = field(default_factory=list)  # had started a tool: closed (their channels are told)
    cancelled: list[Run] = field(default_factory=list)  # were being cancelled: cancelled


@dataclass(frozen=True)
class Notice:
    id: int
    channel: str
    text: str
    attempts: int
    run_id: str | None = None  # the run it tells of (cut off by a restart): shown where its answer was going


class ProcessStore:
    """The ``processes`` and ``notices`` tables, for this process (``store.process_id``)."""

    def __init__(self, store: Store, *, platforms: frozenset[str] | None, lease_seconds: float) -> None:
        """``platforms``: the channel platforms this process serves (None: all of them)."""
        self._store = store
        self.platforms = platforms
        self._lease = lease_seconds

    @property
    def process_id(self) -> str:
        return self._store.process_id

    def serves(self, channel: str) -> bool:
        return served(channel, self.platforms)

    async def register(self) -> None:
        now = time.time()
        pid = os.getpid()
        row = {
            "id": self.process_id,
            "pid": pid,
            "host": self._store.host,
            "started": process_started(pid),
            "platforms": "*" if self.platforms is None else ",".join(sorted(self.platforms)),
            "created_at": now,
            "lease_until": now + self._lease,
        }
        await self._store.call(lambda db: insert_row(db, "processes", row, replace_on=("id",)))

    async def renew(self) -> bool:
        """Extend the lease; False when the row was gone (another process took this one for dead: it is back)."""

        def renew(db: SqlDatabase) -> int:
            cursor = db.execute(
                "UPDATE processes SET lease_until = ? WHERE id = ?", [time.time() + self._lease, self.process_id]
            )
            return cursor.rowcount

        if await self._store.call(renew):
            return True
        await self.register()
        return False

    async def retire(self) -> None:
        """This process stops: what it leaves (runs it queued, notices it took) goes to the others at once."""

        def retire(db: SqlDatabase) -> None:
            with db.atomic():
                db.execute("DELETE FROM processes WHERE id = ?", [self.process_id])
                db.execute(
                    "UPDATE notices SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?",
                    [self.process_id],
                )

        await self._store.call(retire)

    async def recover(self, reason: str) -> Recovered:
        """Take over what processes that are gone left in channels served here, in one transaction.

        Queued runs: this process answers them. Runs in progress: queued again, or closed if they
        had started a tool (see ``recover_run``). Runs waiting for approval are nobody's: their
        threads are returned so that this process watches their expiry too.
        """
        me = self.process_id

        def recover(db: SqlDatabase) -> Recovered:
            now = time.time()
            live = live_processes(db, self._store.host, now) | {me}
            found = Recovered()
            # Only what needs a look: runs waiting for people, and runs whose process is gone. (Reading every
            # open run at every tick cost a busy process tens of ms of its store's thread at 1,000 queued runs.)
            alive = sorted(live)
            active = sorted(ACTIVE)
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs"
                " WHERE status IN ('queued', 'in_progress', 'cancelling', 'requires_action')"
                " AND (status = 'requires_action'"
                f" OR COALESCE(CASE WHEN status IN ({','.join('?' * len(active))}) THEN owner ELSE origin END, '')"
                f" NOT IN ({','.join('?' * len(alive))}))"
                " ORDER BY created_at, rowid",
                [*active, *alive],
            ).fetchall()
            for row in rows:
                run = _run(row)
                if not self.serves(run.channel):
                    continue
                if run.status == "requires_action":
                    if run.thread_id not in found.paused_threads:
                        found.paused_threads.append(run.thread_id)
                    continue
                if run.status == "queued":
                    db.execute("UPDATE runs SET origin = ? WHERE id = ?", [me, run.id])
                    found.adopted.append(run)
                    continue
                outcome = recover_run(db, run.id, run.status, me, reason, now)
                if outcome == "requeued":
                    found.adopted.append(run)
                elif outcome == "failed":
                    found.failed.append(run)
            # Rows of processes long gone (their runs are taken over above, or were in channels nobody serves).
            gone = [
                str(r[0])
                for r in db.execute(
                    "SELECT id FROM processes WHERE lease_until < ?", [now - 10 * self._lease]
                ).fetchall()
                if r[0] not in live
            ]
            for process_id in gone:
                db.execute("DELETE FROM processes WHERE id = ?", [process_id])
            return found

        return await self._store.call(lambda db: immediate(db, lambda: recover(db)))

    async def hand_over(self, reason: str) -> HandedOver:
        """This process stops: do with the runs it is still executing what recovery would do if it had crashed
        (``recover_run``), in one transaction, so that the others (or the next start) take them once it has
        retired. Its queued runs stay queued; runs waiting for approval stay paused."""
        me = self.process_id

        def hand_over(db: SqlDatabase) -> HandedOver:
            now = time.time()
            marks = ",".join("?" * len(ACTIVE))
            rows = db.execute(
                f"SELECT id, status FROM runs WHERE owner = ? AND status IN ({marks}) ORDER BY created_at, rowid",
                [me, *ACTIVE],
            ).fetchall()
            left = HandedOver()
            for run_id, status in rows:
                outcome = recover_run(db, run_id, status, me, reason, now)
                run = _run(db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]).fetchone())
                {"requeued": left.requeued, "failed": left.failed, "cancelled": left.cancelled}[outcome].append(run)
            return left

        return await self._store.call(lambda db: immediate(db, lambda: hand_over(db)))

    async def cancelling(self, run_ids: list[str]) -> list[str]:
        """Which of these runs (in progress here) someone asked to cancel, possibly through another process."""

        def query(db: SqlDatabase) -> list[str]:
            marks = ",".join("?" * len(run_ids))
            rows = db.execute(
                f"SELECT id FROM runs WHERE id IN ({marks}) AND status = 'cancelling'", run_ids
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._store.call(query)

    # -- notices: messages for a channel, delivered by a process that serves its platform -----------

    async def queue_notice(self, channel: str, text: str, run_id: str | None = None) -> None:
        platform = channel.split(":", 1)[0]
        await self._store.call(
            lambda db: db.execute(
                "INSERT INTO notices (channel, platform, text, created_at, attempts, run_id) VALUES (?, ?, ?, ?, 0, ?)",
                [channel, platform, text, time.time(), run_id],
            )
        )

    async def take_notices(self, limit: int = 50) -> list[Notice]:
        """Notices for the platforms served here that nobody is delivering, claimed for this process."""
        me = self.process_id

        def take(db: SqlDatabase) -> list[Notice]:
            now = time.time()
            sql = (
                "SELECT id, channel, text, attempts, run_id FROM notices"
                " WHERE (claimed_until IS NULL OR claimed_until < ?)"
            )
            params: list[object] = [now]
            if self.platforms is not None:
                sql += f" AND platform IN ({','.join('?' * len(self.platforms))})"
                params.extend(sorted(self.platforms))
            rows = db.execute(sql + " ORDER BY id LIMIT ?", [*params, limit]).fetchall()
            for row in rows:
                db.execute(
                    "UPDATE notices SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1 WHERE id = ?",
                    [me, now + NOTICE_CLAIM_SECONDS, row[0]],
                )
            return [Notice(int(r[0]), str(r[1]), str(r[2]), int(r[3]) + 1, r[4]) for r in rows]

        return await self._store.call(lambda db: immediate(db, lambda: take(db)))

    async def delivered(self, notice_id: int) -> None:
        await self._store.call(
            lambda db: db.execute("DELETE FROM notices WHERE id = ?", [notice_id]),
        )

    async def undelivered(self, notice_id: int, *, retry_after: float) -> None:
        """A delivery failed: another try after ``retry_after`` seconds, by whichever process takes it."""
        await self._store.call(
            lambda db: db.execute(
                "UPDATE notices SET claimed_by = NULL, claimed_until = ? WHERE id = ?",
                [time.time() + retry_after, notice_id],
            )
        )

    async def pending_notices(self) -> int:
        """Notices not yet delivered, for any platform (tests, metrics)."""
        return await self._store.call(lambda db: int(db.execute("SELECT COUNT(*) FROM notices").fetchone()[0]))
