"""The SQL of apps installed into many workspaces (Slack's OAuth install, bots/slack/installations.py):
each workspace's installation, with its token, and the one-time states of install flows in progress.

Tokens are kept as the platform gave them, in this database only: never in a log, an export or a message.
"""

from __future__ import annotations

import json
import time
from typing import Any

from core.store.sql import SqlDatabase
from core.store.store import Store, immediate

__all__ = ["consume_state", "delete_installation", "find_installation", "issue_state", "save_installation"]


async def save_installation(
    store: Store, platform: str, app: str, enterprise: str | None, workspace: str | None, data: dict[str, Any]
) -> None:
    """Keep a workspace's installation (it replaces an earlier one of the same app and workspace)."""
    row = [platform, app, enterprise or "", workspace or "", json.dumps(data), time.time()]

    def save(db: SqlDatabase) -> None:
        db.execute(
            "INSERT INTO installations (platform, app, enterprise, workspace, data, installed_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, app, enterprise, workspace)"
            " DO UPDATE SET data = excluded.data, installed_at = excluded.installed_at",
            row,
        )

    await store.call(save)


async def find_installation(
    store: Store, platform: str, app: str, enterprise: str | None, workspace: str | None
) -> dict[str, Any] | None:
    """A workspace's installation; else its organisation's, installed for every workspace of it. With no
    ``enterprise`` (a channel key names the workspace alone): the workspace's latest, whatever its organisation."""

    def find(db: SqlDatabase) -> dict[str, Any] | None:
        if not workspace and not enterprise:
            return None
        where = "platform = ? AND app = ?"
        if enterprise is None:
            found = db.execute(
                f"SELECT data FROM installations WHERE {where} AND workspace = ? ORDER BY installed_at DESC LIMIT 1",
                [platform, app, workspace or ""],
            ).fetchone()
        else:
            found = db.execute(
                f"SELECT data FROM installations WHERE {where} AND enterprise = ? AND workspace IN (?, '')"
                " ORDER BY workspace = '' LIMIT 1",
                [platform, app, enterprise, workspace or ""],
            ).fetchone()
        return None if found is None else dict(json.loads(found[0]))

    return await store.call(find)


async def delete_installation(
    store: Store, platform: str, app: str, enterprise: str | None, workspace: str | None
) -> int:
    """Forget a workspace's installation and its token; returns how many were forgotten."""

    def delete(db: SqlDatabase) -> int:
        return int(
            db.execute(
                "DELETE FROM installations WHERE platform = ? AND app = ? AND enterprise = ? AND workspace = ?",
                [platform, app, enterprise or "", workspace or ""],
            ).rowcount
        )

    return await store.call(delete)


async def issue_state(store: Store, state: str, ttl: float) -> None:
    now = time.time()

    def issue(db: SqlDatabase) -> None:
        def work() -> None:
            db.execute("DELETE FROM install_states WHERE expires_at <= ?", [now])
            db.execute("INSERT INTO install_states (state, expires_at) VALUES (?, ?)", [state, now + ttl])

        immediate(db, work)

    await store.call(issue)


async def consume_state(store: Store, state: str) -> bool:
    """True once for a state issued and not expired; False for any other, and for it again."""
    now = time.time()

    def consume(db: SqlDatabase) -> bool:
        cursor = db.execute("DELETE FROM install_states WHERE state = ? AND expires_at > ?", [state, now])
        return cursor.rowcount == 1

    return await store.call(consume)
