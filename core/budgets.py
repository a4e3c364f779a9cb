"""Budgets: how much a channel or a person may spend per day and per month. Pure logic.

The ``[budgets]`` section of the assistants file sets the defaults (every key optional; without
it, nothing is limited):

    [budgets]
    channel = { day = "5 USD", month = "60 USD" }   # every channel
    user = { day = "200k tokens" }                  # every person, over all channels
    reserve_output_tokens = 4096                    # what one model call may write, held in advance

A limit is a number of tokens (``"200000 tokens"``, ``"200k tokens"``, ``"2M tokens"``) or an
amount of money in a price-table currency (``"5 USD"``, ``"4.50 EUR"``). Managers change the limits
of one channel or one person with ``/budget`` (stored in the database, see core/store/budgets.py).

How the limit holds under concurrent runs: before every model call of a run, the run reserves what
the call can cost at most (the tokens it sends, counted, plus ``reserve_output_tokens``) against
every budget that applies, in one transaction with every other run's spending and reservations. A
call that does not fit is not made. So the total stays within the limit as long as no single call
writes more than the reserve. Periods are UTC days and months; a run counts in the period it
started in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from core.errors import ConfigError, ThreadlineError
from core.usage import ModelUsage, Period, Price, format_money, format_tokens, period_bounds

__all__ = [
    "PERIODS",
    "SCOPES",
    "Budget",
    "BudgetConfig",
    "BudgetExceeded",
    "Limit",
    "Period",
    "Scope",
    "Standing",
    "measure",
    "parse_budgets",
    "parse_limit",
    "period_bounds",
    "person_key",
    "unpriced",
]

Scope = Literal["channel", "user"]
SCOPES: tuple[Scope, ...] = ("channel", "user")
PERIODS: tuple[Period, ...] = ("day", "month")
TOKENS = "tokens"
DEFAULT_RESERVE_OUTPUT = 4096
WARN_AT = 0.8

_BUDGET_KEYS = {"channel", "user", "reserve_output_tokens"}
_LIMIT = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<scale>[kKmM]?)\s*(?P<unit>[A-Za-z]+)\s*$")
_SCALES = {"": 1, "k": 1_000, "m": 1_000_000}


class BudgetExceeded(ThreadlineError):
    """A model call that does not fit a budget; the message (for people) says which and until when."""

    def __init__(self, message: str, budget: Budget) -> None:
        super().__init__(message)
        self.budget = budget


@dataclass(frozen=True)
class Limit:
    """At most ``amount`` tokens, or ``amount`` of money in the currency ``unit``."""

    amount: float
    unit: str = TOKENS

    @property
    def tokens(self) -> bool:
        return self.unit == TOKENS

    def describe(self, value: float | None = None) -> str:
        """``value`` (default: the limit itself) in this limit's unit, for people."""
        amount = self.amount if value is None else value
        return format_tokens(round(amount)) if self.tokens else format_money(amount, self.unit)

    def store_text(self) -> str:
        return f"{self.amount:g} {self.unit}"


def parse_limit(text: str) -> Limit:
    """``"200k tokens"``, ``"2M tokens"``, ``"5 USD"``: ValueError (for people) when it is none of these."""
    match = _LIMIT.match(text)
    if match is None:
        raise ValueError(f'{text!r} is not a limit: write a number of tokens ("200k tokens") or money ("5 USD").')
    unit = match["unit"]
    amount = float(match["number"]) * _SCALES[match["scale"].lower()]
    if unit.lower() in {"token", "tokens"}:
        return Limit(float(math.floor(amount)), TOKENS)
    if match["scale"]:
        raise ValueError(f'{text!r}: k and M are for tokens; write money in full, such as "1500 USD".')
    if len(unit) != 3:
        raise ValueError(f'{text!r}: the unit must be "tokens" or a three-letter currency code such as USD.')
    return Limit(amount, unit.upper())


@dataclass(frozen=True)
class BudgetConfig:
    """The file's default limits (by scope, then period) and the output tokens held per call."""

    defaults: Mapping[Scope, Mapping[Period, Limit]] = field(default_factory=dict)
    reserve_output_tokens: int = DEFAULT_RESERVE_OUTPUT

    def default(self, scope: Scope, period: Period) -> Limit | None:
        return self.defaults.get(scope, {}).get(period)


def parse_budgets(table: Any, where: str, prices: Mapping[str, Price], models: Iterable[str]) -> BudgetConfig:
    """The ``[budgets]`` table; a money limit needs a price in its currency for every assistant's model."""
    at = f"{where}: [budgets]"
    if not isinstance(table, dict):
        raise ConfigError(f"{at}: must be a table.")
    for key in table:
        if key not in _BUDGET_KEYS:
            raise ConfigError(f"{at}: unknown key {key!r} (expected one of: {', '.join(sorted(_BUDGET_KEYS))}).")
    reserve = table.get("reserve_output_tokens", DEFAULT_RESERVE_OUTPUT)
    if not isinstance(reserve, int) or isinstance(reserve, bool) or reserve < 1:
        raise ConfigError(f"{at}: key 'reserve_output_tokens' must be a whole number of at least 1, not {reserve!r}.")
    defaults: dict[Scope, dict[Period, Limit]] = {}
    for scope in SCOPES:
        entry = table.get(scope, {})
        if not isinstance(entry, dict):
            raise ConfigError(f'{at}: key {scope!r} must be a table such as {{ day = "5 USD", month = "60 USD" }}.')
        for key, value in entry.items():
            if key not in PERIODS:
                raise ConfigError(f"{at}: key '{scope}.{key}': the periods are day and month.")
            try:
                limit = parse_limit(value if isinstance(value, str) else repr(value))
            except ValueError as exc:
                raise ConfigError(f"{at}: key '{scope}.{key}': {exc}") from None
            _check_priced(limit, prices, models, f"{at}: key '{scope}.{key}'")
            defaults.setdefault(scope, {})[key] = limit
    return BudgetConfig(defaults, reserve)


def _check_priced(limit: Limit, prices: Mapping[str, Price], models: Iterable[str], at: str) -> None:
    for model in unpriced(limit, prices, models):
        raise ConfigError(
            f"{at}: a limit in {limit.unit} needs a price in {limit.unit} for model {model!r}; "
            f'add [prices."{model}"] with currency = "{limit.unit}", or set the limit in tokens.'
        )


def unpriced(limit: Limit, prices: Mapping[str, Price], models: Iterable[str]) -> list[str]:
    """The models whose use a money limit could not count: no price in its currency."""
    if limit.tokens:
        return []
    return [m for m in sorted(set(models)) if (p := prices.get(m)) is None or p.currency != limit.unit]


def measure(limit: Limit, usage: Iterable[ModelUsage], prices: Mapping[str, Price]) -> float:
    """What ``usage`` counts against ``limit``: its tokens, or its cost in the limit's currency.

    Models with no price in that currency cannot be counted in money; parse_budgets makes sure every
    assistant's model has one."""
    if limit.tokens:
        return float(sum(u.total for u in usage))
    total = 0.0
    for u in usage:
        price = prices.get(u.model)
        if price is not None and price.currency == limit.unit:
            total += (u.input_tokens * price.input_per_million + u.output_tokens * price.output_per_million) / 1e6
    return total


@dataclass(frozen=True)
class Budget:
    """One limit that applies: whose (a channel key or a user key), over which period."""

    scope: Scope
    subject: str
    period: Period
    limit: Limit
    since: float
    until: float
    name: str = ""  # a person's display name, for messages

    def whose(self) -> str:
        if self.scope == "channel":
            return "This channel"
        return self.name or self.subject

    def its(self) -> str:
        return "its" if self.scope == "channel" else "their"

    def label(self) -> str:
        return f"{'daily' if self.period == 'day' else 'monthly'} budget"


@dataclass(frozen=True)
class Standing:
    """How much of a budget is used: ``used`` by everything else, ``this`` by the run asking (in the limit's unit)."""

    budget: Budget
    used: float
    this: float = 0.0

    @property
    def total(self) -> float:
        return self.used + self.this

    def fits(self) -> bool:
        return self.total <= self.budget.limit.amount

    def fraction(self) -> float:
        return self.total / self.budget.limit.amount if self.budget.limit.amount else math.inf

    def refusal(self, *, started: bool) -> str:
        """Why a run (``started``: one already answering) may not call the model, and what to do."""
        budget, limit = self.budget, self.budget.limit
        spent = f"{limit.describe(self.used)} of {limit.describe()}"
        when = _resets(budget)
        fix = f"it resets {when}, or a manager can raise it with /budget"
        if started:
            return f"I stopped before finishing: {budget.whose()}'s {budget.label()} is used up ({spent}); {fix}."
        if self.used >= limit.amount:
            return f"{budget.whose()} has used {budget.its()} {budget.label()} ({spent}), so I am not answering; {fix}."
        return (
            f"{budget.whose()} has {limit.describe(max(limit.amount - self.used, 0))} left of {budget.its()} "
            f"{budget.label()} "
            f"({spent} used), not enough for an answer; {fix}."
        )

    def warning(self) -> str:
        budget, limit = self.budget, self.budget.limit
        if not self.total < limit.amount:
            return (
                f"{budget.whose()} has used all of {budget.its()} {budget.label()} ({limit.describe(self.total)} of "
                f"{limit.describe()}), so I stop answering until it resets {_resets(budget)} or a manager raises "
                "it with /budget."
            )
        return (
            f"{budget.whose()} has used {math.floor(self.fraction() * 100)}% of {budget.its()} {budget.label()} "
            f"({limit.describe(self.total)} of {limit.describe()}). At 100% I stop answering until it resets "
            f"{_resets(budget)} or a manager raises it with /budget."
        )

    def report(self) -> str:
        """One line of /budget: "daily budget: 600 tokens of 1,000 tokens (60%), resets at 00:00 UTC"."""
        limit = self.budget.limit
        share = f"{math.floor(self.fraction() * 100)}%" if limit.amount else "all"
        return (
            f"{self.budget.label()}: {limit.describe(self.total)} of {limit.describe()} ({share}), "
            f"resets {_resets(self.budget)}"
        )


def _resets(budget: Budget) -> str:
    moment = datetime.fromtimestamp(budget.until, UTC)
    if budget.period == "day":
        return "at 00:00 UTC"
    return f"on {moment.strftime('%d %B')} (UTC)"


_MENTION = re.compile(r"^<@!?(?P<id>[A-Za-z0-9_]+)(?:\|[^>]*)?>$")


def person_key(text: str, channel: str) -> str | None:
    """The user key a ``/budget user`` argument names: a key (``slack:U123``) or a mention in the channel's
    platform (``<@U123>``, ``<@123>``); None when it is neither."""
    text = text.strip()
    if re.fullmatch(r"(slack|discord|console):[^\s:]+", text):
        return text
    match = _MENTION.match(text)
    if match is None:
        return None
    return f"{channel.split(':', 1)[0]}:{match['id']}"
