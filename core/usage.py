"""Token usage and what it costs: the price table, periods, and the /usage report text. Pure logic.

Cost is never guessed: a model without a price in the table has its tokens reported and its cost
shown as "no price set for MODEL". Sums are per model (from the store, core/store/usage.py) and
priced here, so budgets can reuse the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "DEFAULT_PRICES",
    "ChannelUsage",
    "Cost",
    "ModelUsage",
    "Period",
    "Price",
    "UserUsage",
    "all_channels_report",
    "channel_report",
    "cost",
    "format_cost",
    "format_money",
    "format_tokens",
    "period_bounds",
    "period_starts",
]

Period = Literal["day", "month"]


@dataclass(frozen=True)
class Price:
    """What one model costs, per million tokens."""

    input_per_million: float
    output_per_million: float
    currency: str = "USD"


# OpenAI's list price for the default model (2026). Operators should check their own rates
# (discounts, Azure, other providers) and set them in the assistants file's [prices] section.
DEFAULT_PRICES: Mapping[str, Price] = {"gpt-5.4-mini": Price(0.75, 4.50, "USD")}


@dataclass(frozen=True)
class ModelUsage:
    """Tokens one model used (over some runs)."""

    model: str
    input_tokens: int
    output_tokens: int
    runs: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class UserUsage:
    author_id: str
    author_name: str
    models: tuple[ModelUsage, ...]

    @property
    def total(self) -> int:
        return sum(m.total for m in self.models)


@dataclass(frozen=True)
class ChannelUsage:
    channel: str
    models: tuple[ModelUsage, ...]

    @property
    def total(self) -> int:
        return sum(m.total for m in self.models)


@dataclass(frozen=True)
class Cost:
    """Amounts by currency for the priced models, and the models that have tokens but no price."""

    amounts: Mapping[str, float]
    unpriced: tuple[str, ...] = ()


def cost(usage: Iterable[ModelUsage], prices: Mapping[str, Price]) -> Cost:
    """Sum over models of tokens × price per token; models without a price are listed, not priced."""
    amounts: dict[str, float] = {}
    unpriced: list[str] = []
    for item in usage:
        price = prices.get(item.model)
        if price is None:
            if item.total and item.model not in unpriced:
                unpriced.append(item.model)
            continue
        amount = (item.input_tokens * price.input_per_million + item.output_tokens * price.output_per_million) / 1e6
        amounts[price.currency] = amounts.get(price.currency, 0.0) + amount
    return Cost(amounts, tuple(unpriced))


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def format_money(amount: float, currency: str) -> str:
    """$12.34 from a dollar up; small amounts keep enough decimals to be seen ($0.0042), never rounded to 0."""
    if amount >= 1 or amount == 0:
        number = f"{amount:,.2f}"
    else:
        digits = max(2, 1 - math.floor(math.log10(amount)))  # two significant figures
        number = f"{amount:.{digits}f}"
        if digits > 2:  # $0.010 → $0.01, $0.0060 → $0.006
            whole, _, decimals = number.partition(".")
            number = f"{whole}.{decimals.rstrip('0').ljust(2, '0')}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{number} {currency}"


def format_cost(value: Cost) -> str:
    parts = [format_money(amount, currency) for currency, amount in sorted(value.amounts.items())]
    parts += [f"no price set for {model}" for model in value.unpriced]
    return "; ".join(parts) if parts else format_money(0, "USD")


def format_tokens(count: int) -> str:
    return f"{count:,} token{'s' if count != 1 else ''}"


def period_bounds(period: Period, now: float) -> tuple[float, float]:
    """[start, end) of the UTC day or month around ``now``, as Unix times."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    else:
        end = datetime.fromtimestamp(start.timestamp() + 86_400, UTC)
    return start.timestamp(), end.timestamp()


def period_starts(now: float) -> tuple[float, float]:
    """(start of today, start of this month), UTC, as Unix times."""
    return period_bounds("day", now)[0], period_bounds("month", now)[0]


def _usage_line(label: str, models: Iterable[ModelUsage], prices: Mapping[str, Price]) -> list[str]:
    models = [m for m in models if m.total]
    if not models:
        return [f"{label}: no tokens used."]
    input_tokens = sum(m.input_tokens for m in models)
    output_tokens = sum(m.output_tokens for m in models)
    runs = sum(m.runs for m in models)
    lines = [
        f"{label}: {format_tokens(input_tokens + output_tokens)} ({input_tokens:,} in, {output_tokens:,} out)"
        f" in {runs} run{'s' if runs != 1 else ''}, {format_cost(cost(models, prices))}"
    ]
    if len(models) > 1:
        for m in sorted(models, key=lambda m: -m.total):
            lines.append(f"  - {m.model}: {format_tokens(m.total)}, {format_cost(cost([m], prices))}")
    return lines


def channel_report(
    channel: str,
    today: Iterable[ModelUsage],
    month: Iterable[ModelUsage],
    users: Iterable[UserUsage],
    prices: Mapping[str, Price],
    extra: Iterable[str] = (),
) -> str:
    """The /usage answer: today, this month (UTC), ``extra`` lines (feedback on answers), the month's top users."""
    lines = [f"Usage in {channel} (UTC):"]
    lines += _usage_line("Today", today, prices)
    lines += _usage_line("This month", month, prices)
    lines += extra
    users = list(users)
    if users:
        lines.append("Top users this month:")
        for position, user in enumerate(users, start=1):
            who = user.author_name or user.author_id or "unknown"
            lines.append(f"{position}. {who}: {format_tokens(user.total)}, {format_cost(cost(user.models, prices))}")
    return "\n".join(lines)


def all_channels_report(channels: Iterable[ChannelUsage], prices: Mapping[str, Price]) -> str:
    """The /usage all answer: every channel's totals this month (UTC), the biggest first."""
    channels = sorted((c for c in channels if c.total), key=lambda c: (-c.total, c.channel))
    if not channels:
        return "No channel has used any tokens this month (UTC)."
    every = [m for c in channels for m in c.models]
    lines = [
        f"This month (UTC), {len(channels)} channel{'s' if len(channels) != 1 else ''}: "
        f"{format_tokens(sum(m.total for m in every))}, {format_cost(cost(every, prices))}"
    ]
    for c in channels:
        lines.append(f"- {c.channel}: {format_tokens(c.total)}, {format_cost(cost(c.models, prices))}")
    return "\n".join(lines)
