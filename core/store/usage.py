"""Token usage sums over the runs table: per model, so core/usage.py can price them.

Same connection and thread as the rest of the store, through ``Store.call``. A run's user is the
author of the message that triggered it. A channel's runs are those of every conversation whose
scope it is (its own, and its threads': core/models.py). Periods are half-open:
``since <= created_at < until``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.store.sql import SqlDatabase
from core.store.store import Store
from core.usage import ChannelUsage, ModelUsage, UserUsage

__all__ = ["UsageStore"]

_SUMS = "COALESCE(r.model, 'unknown model'), SUM(r.input_tokens), SUM(r.output_tokens), COUNT(*)"
# the runs of a channel and of the conversations inside it
_IN_CHANNEL = "(r.channel = ? OR r.channel IN (SELECT key FROM channels WHERE scope = ?))"


class UsageStore:
    """Usage queries; budgets use :meth:`by_model` with a channel or a user and a period."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def by_model(
        self,
        since: float,
        until: float | None = None,
        *,
        channel: str | None = None,
        author_id: str | None = None,
    ) -> list[ModelUsage]:
        """Tokens by model for runs created in [since, until), optionally in one channel or by one person."""
        where, params = _period(since, until)
        if channel is not None:
            where.append(_IN_CHANNEL)
            params += [channel, channel]
        join = ""
        if author_id is not None:
            join = " JOIN messages m ON m.id = r.trigger_message_id"
            where.append("m.author_id = ?")
            params.append(author_id)
        sql = f"SELECT {_SUMS} FROM runs r{join} WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1"

        def query(db: SqlDatabase) -> list[ModelUsage]:
            return [_model(row) for row in db.execute(sql, params).fetchall()]

        return await self._store.call(query)

    async def top_users(
        self, channel: str, since: float, until: float | None = None, limit: int = 5
    ) -> list[UserUsage]:
        """The channel's people who used the most tokens in the period, with their tokens by model."""
        where, params = _period(since, until)
        where.append(_IN_CHANNEL)
        params += [channel, channel]
        sql = (
            f"SELECT COALESCE(m.author_id, ''), MAX(COALESCE(m.author_name, '')), {_SUMS}"
            " FROM runs r LEFT JOIN messages m ON m.id = r.trigger_message_id"
            f" WHERE {' AND '.join(where)} GROUP BY 1, 3"
        )

        def query(db: SqlDatabase) -> list[UserUsage]:
            users: dict[str, tuple[str, list[ModelUsage]]] = {}
            for row in db.execute(sql, params).fetchall():
                name, models = users.setdefault(row[0], (row[1], []))
                models.append(_model(row[2:]))
                if row[1] and not name:
                    users[row[0]] = (row[1], models)
            ranked = [UserUsage(author, name, tuple(models)) for author, (name, models) in users.items()]
            ranked = [u for u in ranked if u.total]
            ranked.sort(key=lambda u: (-u.total, u.author_id))
            return ranked[:limit]

        return await self._store.call(query)

    async def channels(self, since: float, until: float | None = None) -> list[ChannelUsage]:
        """Every channel that has runs in the period (its conversations' included), with its tokens by model."""
        where, params = _period(since, until)
        sql = (
            f"SELECT COALESCE(c.scope, r.channel), {_SUMS} FROM runs r LEFT JOIN channels c ON c.key = r.channel"
            f" WHERE {' AND '.join(where)} GROUP BY 1, 2 ORDER BY 1, 2"
        )

        def query(db: SqlDatabase) -> list[ChannelUsage]:
            by_channel: dict[str, list[ModelUsage]] = {}
            for row in db.execute(sql, params).fetchall():
                by_channel.setdefault(row[0], []).append(_model(row[1:]))
            return [ChannelUsage(channel, tuple(models)) for channel, models in by_channel.items()]

        return await self._store.call(query)


def _period(since: float, until: float | None) -> tuple[list[str], list[Any]]:
    where, params = ["r.created_at >= ?"], [since]
    if until is not None:
        where.append("r.created_at < ?")
        params.append(until)
    return where, params


def _model(row: Sequence[Any]) -> ModelUsage:
    return ModelUsage(str(row[0]), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))
