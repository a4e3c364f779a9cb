"""The Web API client to use for each Slack workspace: the one of ``SLACK_BOT_TOKEN`` (one workspace), or,
for an app installed into many (OAuth), one per workspace with the bot token its install left in the
database (bots/slack/installations.py), looked up at every use so that an uninstall anywhere takes effect
at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.web.async_client import AsyncWebClient

from core.errors import ThreadlineError

__all__ = ["Installed", "NotInstalled", "SingleWorkspace", "Workspace", "Workspaces"]

CLIENTS_KEPT = 1000


class NotInstalled(ThreadlineError):
    """The app has no installation (any more) in the workspace an event or a channel belongs to."""


@dataclass(frozen=True)
class Workspace:
    team_id: str
    client: AsyncWebClient  # carries the workspace's bot token
    bot_user_id: str | None

    @property
    def token(self) -> str:
        return str(self.client.token or "")


class Workspaces:
    """What the adapter asks for a workspace by its team id (raises NotInstalled)."""

    async def get(self, team_id: str) -> Workspace:
        raise NotImplementedError


@dataclass
class SingleWorkspace(Workspaces):
    """``SLACK_BOT_TOKEN``: one client, whatever team id an event carries."""

    client: AsyncWebClient
    bot_user_id: str | None

    async def get(self, team_id: str) -> Workspace:
        return Workspace(team_id, self.client, self.bot_user_id)


@dataclass
class Installed(Workspaces):
    """Every workspace the app was installed into: a client per bot token, sharing ``base``'s connection pool,
    base URL and retry handlers."""

    base: AsyncWebClient
    installations: AsyncInstallationStore
    _clients: dict[str, AsyncWebClient] = field(default_factory=dict)  # by token: a cache of clients only

    async def get(self, team_id: str) -> Workspace:
        bot = await self.installations.async_find_bot(enterprise_id=None, team_id=team_id)
        if bot is None or not bot.bot_token:
            raise NotInstalled(f"Threadline is not installed in Slack workspace {team_id}.")
        client = self._clients.get(bot.bot_token)
        if client is None:
            client = AsyncWebClient(
                token=bot.bot_token,
                base_url=self.base.base_url,
                session=self.base.session,
                retry_handlers=self.base.retry_handlers,
            )
            while len(self._clients) >= CLIENTS_KEPT:  # the oldest first
                del self._clients[next(iter(self._clients))]
            self._clients[bot.bot_token] = client
        return Workspace(team_id, client, bot.bot_user_id)
