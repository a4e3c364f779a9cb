"""Budgets in the database: limits set by managers, reservations of running calls, 80% notices.

What a channel or person spent is ``budget_spent`` (per UTC day and month and model, kept by a
trigger on ``runs`` token counts, written when a stretch of a run ends; a channel's spending is
that of every conversation whose scope it is, see core/models.py), plus, for runs answering
now, their hold in ``budget_holds`` beyond what they recorded (the hold is what the run has used
plus what its current model call may use). :meth:`BudgetStore.reserve` sums every other run's
spending, checks it against each budget and writes the hold in one ``BEGIN IMMEDIATE``
transaction, so runs in this process or another one sharing the database cannot both take the
last of a budget. ``Store.finish_run`` removes the hold in the transaction that records the usage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from core.budgets import (
    PERIODS,
    WARN_AT,
    Budget,
    BudgetConfig,
    Limit,
    Period,
    Scope,
    Standing,
    measure,
    period_bounds,
)
from core.store.dialect import greatest, json_text
from core.store.sql import SqlDatabase
from core.store.store import Store, immediate
from core.usage import ModelUsage, Price

__all__ = ["BudgetStore", "Subjects"]


@dataclass(frozen=True)
class Subjects:
    """Whose budgets apply to a run: its channel (the scope of its conversation, ``Store.scope``) and the
    person who asked (key "" when unknown)."""

    channel: str
    person: str = ""
    person_name: str = ""


class BudgetStore:
    def __init__(self, store: Store, config: BudgetConfig, prices: Mapping[str, Price]) -> None:
        self._store = store
        self._config = config
        self._prices = prices

    @property
    def config(self) -> BudgetConfig:
        return self._config

    async def budgets(self, subjects: Subjects, now: float) -> list[Budget]:
        """The budgets that apply to ``subjects`` now: the file's defaults, changed by managers' limits."""
        return await self._store.call(lambda db: self._budgets(db, subjects, now))

    async def standings(self, subjects: Subjects, now: float) -> list[Standing]:
        """How much of each budget that applies is used, running calls' reservations included."""

        def read(db: SqlDatabase) -> list[Standing]:
            return [Standing(b, self._used(db, b, "")) for b in self._budgets(db, subjects, now)]

        return await self._store.call(read)

    async def crossed(self, subjects: Subjects, now: float) -> list[Standing]:
        """The budgets that are now 80% used or more and whose channel has not been told yet (it is now)."""

        def claim(db: SqlDatabase) -> list[Standing]:
            standings = [Standing(b, self._used(db, b, "")) for b in self._budgets(db, subjects, now)]
            return [s for s in standings if s.fraction() >= WARN_AT and _first_notice(db, s.budget, now)]

        return await self._store.call(lambda db: immediate(db, lambda: claim(db)))

    async def limit(self, scope: Scope, subject: str, period: Period) -> Limit | None:
        """The limit in force for one subject and period (a manager's, else the file's; None: unlimited)."""

        return await self._store.call(lambda db: self._limits(db, scope, subject)[period])

    async def set_limit(
        self, scope: Scope, subject: str, period: Period, limit: Limit | None, set_by: str, *, default: bool = False
    ) -> None:
        """A manager's limit (None: no limit); ``default``: drop theirs and use the file's again."""

        def write(db: SqlDatabase) -> None:
            if default:
                db.execute(
                    "DELETE FROM budget_limits WHERE scope = ? AND subject = ? AND period = ?", [scope, subject, period]
                )
                return
            db.execute(
                "INSERT INTO budget_limits (scope, subject, period, amount, unit, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, subject, period) DO UPDATE SET"
                " amount = excluded.amount, unit = excluded.unit, set_by = excluded.set_by, set_at = excluded.set_at",
                [
                    scope,
                    subject,
                    period,
                    None if limit is None else limit.amount,
                    None if limit is None else limit.unit,
                    set_by,
                    time.time(),
                ],
            )

        await self._store.call(write)

    async def reserve(
        self,
        run_id: str,
        subjects: Subjects,
        *,
        run_started: float,
        expected: ModelUsage,
        now: float,
    ) -> Standing | None:
        """Reserve ``expected`` (the run's total once its next call is done, at most) against every budget.

        Returns the first budget it does not fit, with nothing written; None when the reservation is made.
        """

        def transaction(db: SqlDatabase) -> Standing | None:
            return immediate(db, lambda: self._reserve(db, run_id, subjects, run_started, expected, now))

        return await self._store.call(transaction)

    async def release(self, run_id: str) -> None:
        await self._store.call(lambda db: db.execute("DELETE FROM budget_holds WHERE run_id = ?", [run_id]))

    # -- on the store's thread ---------------------------------------------------------------------

    def _budgets(self, db: SqlDatabase, subjects: Subjects, now: float) -> list[Budget]:
        found: list[Budget] = []
        whose: tuple[tuple[Scope, str], ...] = (("channel", subjects.channel), ("user", subjects.person))
        for scope, subject in whose:
            if not subject:
                continue
            for period, limit in self._limits(db, scope, subject).items():
                if limit is None:
                    continue
                since, until = period_bounds(period, now)
                name = subjects.person_name if scope == "user" else ""
                found.append(Budget(scope, subject, period, limit, since, until, name))
        return found

    def _limits(self, db: SqlDatabase, scope: Scope, subject: str) -> dict[Period, Limit | None]:
        """The limit in force per period: a manager's (None: lifted) where one is set, else the file's."""
        rows = db.execute(
            "SELECT period, amount, unit FROM budget_limits WHERE scope = ? AND subject = ?", [scope, subject]
        ).fetchall()
        managers = {p: None if amount is None else Limit(float(amount), str(unit)) for p, amount, unit in rows}
        return {p: managers[p] if p in managers else self._config.default(scope, p) for p in PERIODS}

    def _reserve(
        self,
        db: SqlDatabase,
        run_id: str,
        subjects: Subjects,
        run_started: float,
        expected: ModelUsage,
        now: float,
    ) -> Standing | None:
        row = db.execute(
            "SELECT input_tokens, output_tokens, summary_input_tokens, summary_output_tokens FROM runs WHERE id = ?",
            [run_id],
        ).fetchone()
        recorded_in, recorded_out, summary_in, summary_out = (int(v or 0) for v in row) if row else (0, 0, 0, 0)
        # ``expected`` counts what openai-agents saw; the run's recorded usage also has its summary calls
        expected = ModelUsage(expected.model, expected.input_tokens + summary_in, expected.output_tokens + summary_out)
        beyond = ModelUsage(  # what budget_spent does not have yet: beyond what the run recorded so far
            expected.model, max(expected.input_tokens - recorded_in, 0), max(expected.output_tokens - recorded_out, 0)
        )
        for budget in self._budgets(db, subjects, now):
            counts = budget.since <= run_started < budget.until
            after = Standing(
                budget,
                self._used(db, budget, run_id),
                measure(budget.limit, [beyond], self._prices) if counts else 0.0,
            )
            if not after.fits():
                return after
        db.execute(
            "INSERT INTO budget_holds (run_id, input_tokens, output_tokens, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id) DO UPDATE SET input_tokens = excluded.input_tokens,"
            " output_tokens = excluded.output_tokens, updated_at = excluded.updated_at",
            [run_id, expected.input_tokens, expected.output_tokens, now],
        )
        return None

    def _used(self, db: SqlDatabase, budget: Budget, except_run: str) -> float:
        """What the budget's subject spent in its period (budget_spent, kept by a trigger on runs), plus
        what running calls of other runs reserved beyond their recorded usage."""
        column = (
            "COALESCE((SELECT c.scope FROM channels c WHERE c.key = r.channel), r.channel)"  # as m018's trigger
            if budget.scope == "channel"
            else json_text(db, "r.actor", "key")
        )
        more_in = greatest(db, "h.input_tokens - r.input_tokens", "0")
        more_out = greatest(db, "h.output_tokens - r.output_tokens", "0")
        # CROSS JOIN keeps SQLite reading the few holds first, not every run (0.3 ms vs 190 ms at 100k runs)
        sql = (
            "SELECT model, SUM(i), SUM(o) FROM ("
            " SELECT model, input_tokens AS i, output_tokens AS o FROM budget_spent"
            "  WHERE scope = ? AND subject = ? AND period = ? AND period_start = ?"
            " UNION ALL"
            f" SELECT COALESCE(r.model, 'unknown model'), {more_in}, {more_out}"
            "  FROM budget_holds h CROSS JOIN runs r"
            f"  WHERE r.id = h.run_id AND r.id != ? AND {column} = ? AND r.created_at >= ? AND r.created_at < ?"
            ") AS spent GROUP BY 1"
        )
        params = [budget.scope, budget.subject, budget.period, int(budget.since)]
        params += [except_run, budget.subject, budget.since, budget.until]
        usage = [ModelUsage(str(m), int(i or 0), int(o or 0)) for m, i, o in db.execute(sql, params).fetchall()]
        return measure(budget.limit, usage, self._prices)


def _first_notice(db: SqlDatabase, budget: Budget, now: float) -> bool:
    """Whether this is the first 80% notice for this budget, period and limit (a raised limit warns again)."""
    cursor = db.execute(
        "INSERT INTO budget_notices (scope, subject, period, period_start, limit_text, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [budget.scope, budget.subject, budget.period, budget.since, budget.limit.store_text(), now],
    )
    return bool(cursor.rowcount)
