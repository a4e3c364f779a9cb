"""``/budget``: what the budgets here are and how much of them is used; managers change them.

/budget                                   this channel's budgets and yours
/budget channel day 10 USD                this channel's daily limit (managers)
/budget user @someone month 2M tokens     one person's monthly limit, over all channels (managers)
/budget channel month none                no monthly limit here (managers)
/budget channel month default             back to the assistants file's limit (managers)
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from core.budgets import PERIODS, SCOPES, Limit, Period, Scope, parse_limit, person_key, unpriced
from core.models import Author
from core.store.budgets import Subjects

if TYPE_CHECKING:
    from core.service import Threadline

__all__ = ["USAGE", "budget_reply"]

_log = logging.getLogger(__name__)

USAGE = (
    "Write /budget to see the budgets here, or (managers) /budget channel day|month LIMIT, "
    "/budget user @someone day|month LIMIT; LIMIT is like 10 USD or 200k tokens, none (no limit) "
    "or default (the assistants file's)."
)
MANAGERS_ONLY = "Only this bot's channel managers may change budgets. Ask one of them."


async def budget_reply(service: Threadline, channel: str, argument: str, person: Author | None) -> str:
    words = argument.split()
    if not words:
        return await _report(service, channel, person)
    if words[0].lower() not in SCOPES:
        return f"/budget does not know {words[0]!r}. {USAGE}"
    scope: Scope = "channel" if words[0].lower() == "channel" else "user"
    rest = words[1:]
    subject = channel
    if scope == "user":
        named = person_key(rest[0], channel) if rest else None
        if named is None:
            return f"Say whose budget: /budget user @someone day|month LIMIT. {USAGE}"
        subject, rest = named, rest[1:]
    if len(rest) < 2 or rest[0].lower() not in PERIODS:
        return USAGE
    period: Period = "day" if rest[0].lower() == "day" else "month"
    if not service.policy.is_manager(person):
        who = person.key if person is not None and person.key else "someone"
        _log.info("/budget %s from %s in %s refused: not a manager (policy)", argument, who, channel)
        return MANAGERS_ONLY
    return await _set(service, scope, subject, period, " ".join(rest[1:]), person)


async def _set(
    service: Threadline, scope: Scope, subject: str, period: Period, text: str, person: Author | None
) -> str:
    kind = f"{'daily' if period == 'day' else 'monthly'} budget"
    label = f"This channel's {kind}" if scope == "channel" else f"The {kind} of {subject}"
    who = person.key if person is not None and person.key else "someone"
    budgets = service.budgets
    if text.lower() == "default":
        await budgets.set_limit(scope, subject, period, None, who, default=True)
        current = await budgets.limit(scope, subject, period)
        now = current.describe() if current is not None else "no limit"
        _log.info("%s reset %s %s %s budget to the file's (%s)", who, scope, subject, period, now)
        return f"{label} is the assistants file's again: {now}."
    limit: Limit | None = None
    if text.lower() != "none":
        try:
            limit = parse_limit(text)
        except ValueError as exc:
            return f"{exc} {USAGE}"
        missing = unpriced(limit, service.assistants.prices, (a.model for a in service.assistants.assistants.values()))
        if missing:
            return (
                f"A limit in {limit.unit} cannot count {', '.join(missing)}: there is no price in {limit.unit} for it "
                "in the assistants file. Set the limit in tokens instead."
            )
    await budgets.set_limit(scope, subject, period, limit, who)
    _log.info("%s set %s %s %s budget to %s", who, scope, subject, period, limit.describe() if limit else "no limit")
    if limit is None:
        return f"{label} is lifted: no limit until a manager sets one."
    return f"{label} is now {limit.describe()}."


async def _report(service: Threadline, channel: str, person: Author | None) -> str:
    key = person.key if person is not None else ""
    name = person.name if person is not None else ""
    standings = await service.budgets.standings(Subjects(channel, key, name), time.time())
    if not standings:
        return "No budget applies here: this channel and you have no spending limit. " + USAGE
    lines = ["Budgets (UTC):"]
    for standing in standings:
        whose = "This channel" if standing.budget.scope == "channel" else "You"
        lines.append(f"- {whose}, {standing.report()}")
    lines.append(USAGE)
    return "\n".join(lines)
