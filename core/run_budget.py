"""One chat run's budgets: refused before it starts when one is used up, and a reservation before
every model call it makes (core/budgets.py has the rules, core/store/budgets.py the transaction).

The runner calls :meth:`RunBudget.before_call` from openai-agents' ``on_llm_start`` hook, so a
call that does not fit raises :class:`BudgetExceeded` before the request is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from core.budgets import Budget, BudgetExceeded
from core.metrics import Metrics
from core.store.budgets import BudgetStore, Subjects
from core.tokens import TokenCounter
from core.usage import ModelUsage

__all__ = ["RunBudget"]

_log = logging.getLogger(__name__)

Tell = Callable[[str, str], Awaitable[None]]


class RunBudget:
    """The budgets that apply to one run of ``model`` in ``subjects.channel`` for ``subjects.person``.

    ``conversation``: where the run is (``subjects.channel`` is its scope): told when it takes a budget past 80%."""

    def __init__(
        self,
        budgets: BudgetStore,
        tokens: TokenCounter,
        tell: Tell,
        metrics: Metrics,
        *,
        run_id: str,
        run_started: float,
        model: str,
        subjects: Subjects,
        conversation: str,
    ) -> None:
        self._budgets = budgets
        self._tokens = tokens
        self._tell = tell
        self._metrics = metrics
        self._run_id = run_id
        self._run_started = run_started
        self._model = model
        self._subjects = subjects
        self._conversation = conversation

    async def refusal(self) -> str | None:
        """Why the run may not start (a budget is used up), for people; None when it may."""
        for standing in await self._budgets.standings(self._subjects, time.time()):
            if standing.used >= standing.budget.limit.amount:
                _log.info(
                    "run %s refused: %s %s %s budget used up (%s of %s)",
                    self._run_id,
                    standing.budget.scope,
                    standing.budget.subject,
                    standing.budget.period,
                    standing.budget.limit.describe(standing.used),
                    standing.budget.limit.describe(),
                )
                self._count_refusal(standing.budget, "start")
                return standing.refusal(started=False)
        return None

    async def before_call(
        self, input_used: int, output_used: int, system_prompt: str | None, items: Sequence[Any], tools: Sequence[Any]
    ) -> None:
        """Reserve what the next call can cost, or raise BudgetExceeded."""
        sending = await asyncio.to_thread(self._count, system_prompt, items, tools)
        expected = ModelUsage(
            self._model, input_used + sending, output_used + self._budgets.config.reserve_output_tokens
        )
        refused = await self._budgets.reserve(
            self._run_id, self._subjects, run_started=self._run_started, expected=expected, now=time.time()
        )
        if refused is not None:
            budget = refused.budget
            _log.info(
                "run %s: model call refused: %s %s %s budget (%s used, this call needs up to %s of %s)",
                self._run_id,
                budget.scope,
                budget.subject,
                budget.period,
                budget.limit.describe(refused.used),
                budget.limit.describe(refused.this),
                budget.limit.describe(),
            )
            started = input_used + output_used > 0
            self._count_refusal(budget, "midway" if started else "start")
            raise BudgetExceeded(refused.refusal(started=started), budget)

    async def after(self) -> None:
        """Once the run has recorded its usage: tell its conversation, once, of each budget it took past 80%."""
        for standing in await self._budgets.crossed(self._subjects, time.time()):
            budget = standing.budget
            _log.info(
                "%s %s %s budget %.0f%% used: channel told",
                budget.scope,
                budget.subject,
                budget.period,
                standing.fraction() * 100,
            )
            await self._tell(self._conversation, standing.warning())

    def _count_refusal(self, budget: Budget, when: str) -> None:
        self._metrics.budget_refusals.labels(budget.scope, budget.period, when).inc()

    def _count(self, system_prompt: str | None, items: Sequence[Any], tools: Sequence[Any]) -> int:
        total = self._tokens.count(system_prompt or "")
        for item in items:
            if isinstance(item, dict):
                total += self._tokens.count_item(item)
            else:
                total += self._tokens.count(json.dumps(item, default=str))
        for tool in tools:
            schema = getattr(tool, "params_json_schema", None)
            if schema is not None:
                total += self._tokens.count(json.dumps(schema)) + self._tokens.count(getattr(tool, "description", ""))
        return total
