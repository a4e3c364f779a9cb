"""Apps installed into many workspaces of a platform (Slack's OAuth install): the core's face of the
``installations`` and ``install_states`` tables (core/store/installations.py), for adapters, which reach
the database only through the core. What an installation holds (its token, its ids) is the platform's
business: it is kept as given."""

from __future__ import annotations

from typing import Any

from core.store import Store
from core.store import installations as sql

__all__ = ["Installations"]


class Installations:
    def __init__(self, store: Store, platform: str) -> None:
        self._store = store
        self._platform = platform

    async def save(self, app: str, enterprise: str | None, workspace: str | None, data: dict[str, Any]) -> None:
        await sql.save_installation(self._store, self._platform, app, enterprise, workspace, data)

    async def find(self, app: str, enterprise: str | None, workspace: str | None) -> dict[str, Any] | None:
        return await sql.find_installation(self._store, self._platform, app, enterprise, workspace)

    async def delete(self, app: str, enterprise: str | None, workspace: str | None) -> int:
        return await sql.delete_installation(self._store, self._platform, app, enterprise, workspace)

    async def issue_state(self, state: str, ttl: float) -> None:
        await sql.issue_state(self._store, state, ttl)

    async def consume_state(self, state: str) -> bool:
        return await sql.consume_state(self._store, state)
