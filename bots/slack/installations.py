"""Slack's OAuth install kept in Threadline's own database: Bolt's installation store and state store.

Bolt finishes an install (``/slack/oauth_redirect``) by saving it here, finds each event's workspace's bot
token here (bot-only: Threadline asks for no user scopes), and deletes it when Slack says the app was
uninstalled or its tokens revoked (Bolt's token revocation listeners). Every process on the database sees
the same installations and can finish an install flow another one began.

States are one-time values, kept in the database until used or expired, and signed with
``SLACK_STATE_SECRET`` so that a value nobody issued is refused before the database is asked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from core.installations import Installations

__all__ = ["DatabaseInstallationStore", "DatabaseStateStore"]

_log = logging.getLogger(__name__)

_BOT_FIELDS = (
    "app_id",
    "enterprise_id",
    "enterprise_name",
    "team_id",
    "team_name",
    "bot_token",
    "bot_id",
    "bot_user_id",
    "bot_refresh_token",
    "bot_token_expires_at",
    "is_enterprise_install",
    "installed_at",
)


def _bot_data(bot: Bot) -> dict[str, Any]:
    data = {name: getattr(bot, name) for name in _BOT_FIELDS}
    data["bot_scopes"] = list(bot.bot_scopes or [])
    return data


class DatabaseInstallationStore(AsyncInstallationStore):
    """Each workspace's bot installation of the app ``client_id``, in the ``installations`` table."""

    def __init__(self, installations: Installations, client_id: str) -> None:
        self._installations = installations
        self._app = client_id

    @property
    def logger(self) -> logging.Logger:
        return _log

    async def async_save(self, installation: Installation) -> None:
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        team = None if bot.is_enterprise_install else bot.team_id
        await self._installations.save(self._app, bot.enterprise_id, team, _bot_data(bot))
        where = f"workspace {bot.team_id}" if team else f"organisation {bot.enterprise_id}"
        _log.info("Slack: installed into %s (%s)", where, bot.team_name or bot.enterprise_name or "unnamed")

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        team = None if is_enterprise_install else team_id
        data = await self._installations.find(self._app, enterprise_id, team)
        return None if data is None else Bot(**data)

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        """The bot's part of an installation (no user tokens are kept)."""
        bot = await self.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        if bot is None or user_id is not None:
            return None
        fields = {k: v for k, v in _bot_data(bot).items() if k not in ("bot_refresh_token", "bot_token_expires_at")}
        return Installation(
            user_id="",
            bot_refresh_token=bot.bot_refresh_token,
            bot_token_expires_at=bot.bot_token_expires_at,
            **fields,
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        removed = await self._installations.delete(self._app, enterprise_id, team_id)
        if not removed and team_id is None:
            return
        if not removed:  # an organisation-wide install is kept under the organisation alone
            removed = await self._installations.delete(self._app, enterprise_id, None)
        if removed:
            _log.info("Slack: uninstalled from %s; its token is forgotten", team_id or enterprise_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:  # user tokens are never kept: only the workspace's whole installation is deleted
            await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)


class DatabaseStateStore(AsyncOAuthStateStore):
    """One-time ``state`` values of install flows: issued signed, consumed once, expired after ``ttl``."""

    def __init__(self, installations: Installations, secret: str, ttl: float = 600) -> None:
        self._installations = installations
        self._secret = secret.encode()
        self._ttl = ttl

    @property
    def logger(self) -> logging.Logger:
        return _log

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        nonce = secrets.token_urlsafe(24)
        state = f"{nonce}.{self._sign(nonce)}"
        await self._installations.issue_state(state, self._ttl)
        return state

    async def async_consume(self, state: str) -> bool:
        nonce, _, signature = state.partition(".")
        if not nonce or not hmac.compare_digest(signature, self._sign(nonce)):
            _log.info("Slack install: a state this app did not issue was refused")
            return False
        if not await self._installations.consume_state(state):
            _log.info("Slack install: a state used before or expired was refused")
            return False
        return True
