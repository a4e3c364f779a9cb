"""Deliveries a platform may send again and that store nothing themselves: each is let through once.

A message needs none of this (it is stored under its platform id, and a second delivery finds it).
A slash command stores nothing, and Slack sends one again when its acknowledgement was late, to any
of the processes behind the app, or to the same app after a restart; so whoever sees an invocation
first records it here, in the shared database, for as long as the platform could repeat it. Keys
are SHA-256 digests of what identifies the delivery: a Slack ``response_url`` lets whoever holds
it post into the channel, so it is never stored.
"""

from __future__ import annotations

import hashlib
import time

from core.store.sql import SqlDatabase
from core.store.store import Store, immediate

__all__ = ["first_delivery"]


def delivery_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


async def first_delivery(store: Store, parts: tuple[str, ...], ttl: float) -> bool:
    """Record the delivery identified by ``parts``; False when any process recorded it in the last ``ttl`` s."""
    key = delivery_key(*parts)

    def record(db: SqlDatabase) -> bool:
        now = time.time()

        def work() -> bool:
            db.execute("DELETE FROM deliveries WHERE expires_at <= ?", [now])
            cursor = db.execute(
                "INSERT INTO deliveries (key, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING", [key, now + ttl]
            )
            return cursor.rowcount == 1

        return immediate(db, work)

    return await store.call(record)
