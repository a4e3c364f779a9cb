"""Wiring: the Bolt app, the Web API client, and the HTTP or Socket Mode front door."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bots.cli import unreachable
from bots.entry import read_settings, serve
from bots.health import DEFAULT_METRICS_PORT, Health, HealthServer, always_ready
from bots.slack.adapter import SlackAdapter, register_listeners
from bots.slack.config import BOT_SCOPES, SlackSettings
from bots.slack.guard import RequestGuard
from bots.slack.installations import DatabaseInstallationStore, DatabaseStateStore
from bots.slack.pane import register_pane
from bots.slack.retries import CountedRetries
from bots.slack.workspaces import Installed, SingleWorkspace, Workspaces
from bots.web import WebServer
from core.errors import ConfigError
from core.logs import configure_logging
from core.metrics import Metrics
from core.service import Threadline
from core.settings import Settings

__all__ = ["EVENTS_PATH", "SlackBot", "SlackFront", "main", "web_client"]

_log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


def _oauth_settings(
    slack: SlackSettings, installations: DatabaseInstallationStore, states: DatabaseStateStore
) -> AsyncOAuthSettings:
    """Bolt's OAuth flow for an app installed into many workspaces, its installations and states in the database."""
    settings = AsyncOAuthSettings(
        client_id=slack.client_id,
        client_secret=slack.client_secret,
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        redirect_uri=slack.redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store=installations,
        installation_store_bot_only=True,
        state_store=states,
        logger=_log,
    )
    # Bolt checks each event's token with auth.test; the answer for a token does not change, so keep it (a
    # token is found in the database at every event all the same: an uninstall takes effect at once).
    settings.authorize.cache_enabled = True  # type: ignore[attr-defined]
    return settings


def web_client(settings: SlackSettings, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client: retries 429s after Retry-After, and dropped connections.

    Give it a long-lived ``session``: without one, slack_sdk opens a new connection for every call.
    """
    return AsyncWebClient(
        token=settings.bot_token,
        base_url=settings.api_url,
        session=session,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5), AsyncConnectionErrorRetryHandler()],
    )


def count_retries(client: AsyncWebClient, metrics: Metrics) -> None:
    """Count the client's retries in ``metrics`` (threadline_platform_retries{platform="slack"})."""
    client.retry_handlers = [
        CountedRetries(h, metrics, "ratelimited" if isinstance(h, AsyncRateLimitErrorRetryHandler) else "connection")
        for h in client.retry_handlers
    ]


class SlackFront:
    """Slack attached to a running service: Bolt and the adapter, behind ``/slack/events`` on an aiohttp app that
    may serve other things too (HTTP mode), or over Socket Mode.

    :meth:`connect` checks the token (before the core opens); :meth:`attach` builds the adapter on the service
    and adds the route; :meth:`start` connects Socket Mode. :meth:`detach` stops taking events, and
    :meth:`close`, once the core has closed, lets go of the connections.
    """

    platform = "slack"

    def __init__(
        self, slack: SlackSettings, http: aiohttp.ClientSession, client: AsyncWebClient, bot_user_id: str | None
    ) -> None:
        self.settings = slack
        self._http = http
        self.client = client
        self._bot_user_id = bot_user_id
        self.app: AsyncApp | None = None
        self.adapter: SlackAdapter | None = None
        self._socket: AsyncSocketModeHandler | None = None

    @classmethod
    async def connect(cls, slack: SlackSettings, metrics: Metrics) -> SlackFront:
        """Check SLACK_BOT_TOKEN with auth.test; raises ConfigError people can act on. ``metrics``: the service's
        to be (the client counts its retries from this first call). Installed into many workspaces, each token
        comes from its install, and is checked when an event from its workspace arrives."""
        http = aiohttp.ClientSession()
        try:
            client = web_client(slack, http)
            count_retries(client, metrics)
            if slack.many_workspaces:
                return cls(slack, http, client, None)
            try:
                auth = await client.auth_test()
            except SlackApiError as exc:
                error = exc.response.get("error", "an error")
                raise ConfigError(
                    f"Slack refused SLACK_BOT_TOKEN ({error}). Copy the Bot User OAuth Token again from the "
                    "app's OAuth & Permissions page, and make sure the app is installed to the workspace."
                ) from None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise unreachable("Slack", slack.api_url, exc, "SLACK_API_URL") from None
        except BaseException:
            await http.close()
            raise
        return cls(slack, http, client, auth.get("user_id"))

    def attach(self, service: Threadline, web_app: web.Application | None) -> SlackAdapter:
        """Build the adapter on ``service``; in HTTP mode, add ``/slack/events`` to ``web_app`` (not started yet),
        and, installed into many workspaces, ``/slack/install`` and ``/slack/oauth_redirect``."""
        slack = self.settings
        workspaces: Workspaces
        if slack.many_workspaces:
            kept = service.installations("slack")
            installations = DatabaseInstallationStore(kept, slack.client_id or "")
            states = DatabaseStateStore(kept, slack.state_secret or "")
            workspaces = Installed(self.client, installations)
            app = AsyncApp(
                client=self.client,
                signing_secret=slack.signing_secret or "",
                oauth_settings=_oauth_settings(slack, installations, states),
                installation_store_bot_only=True,
            )
            app.enable_token_revocation_listeners()  # app_uninstalled, tokens_revoked: the tokens are forgotten
        else:
            workspaces = SingleWorkspace(self.client, self._bot_user_id)
            app = AsyncApp(
                client=self.client,
                signing_secret=slack.signing_secret or "",
                request_verification_enabled=not slack.socket_mode,
                url_verification_enabled=not slack.socket_mode,
            )
        adapter = SlackAdapter(service, slack, workspaces, self._http)
        register_listeners(app, adapter, slack)
        register_pane(app, service, adapter)  # the assistant pane, feedback buttons
        if not slack.socket_mode:
            if web_app is None:
                raise ValueError("Slack's HTTP mode needs an aiohttp app to add /slack/events to")
            for route in app.server(path=EVENTS_PATH).web_app.router.routes():  # Bolt's own handlers
                if route.resource is not None:
                    web_app.router.add_route(route.method, route.resource.canonical, route.handler)
            RequestGuard(slack.signing_secret or "", EVENTS_PATH).add_to(web_app)  # a 4xx for what Bolt cannot read
        self.app, self.adapter = app, adapter
        return adapter

    async def start(self) -> None:
        """Socket Mode: connect (HTTP mode takes its events once the server it was attached to is started)."""
        if not self.settings.socket_mode or self.app is None:
            return
        handler = AsyncSocketModeHandler(self.app, self.settings.app_token, web_client=self.client)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        self._socket = handler

    def describe(self, origin: str) -> str:
        """Where it takes its events, for the start-up log (``origin``: the HTTP server's)."""
        if self.settings.socket_mode:
            return "Slack (Socket Mode)"
        if self.settings.many_workspaces:
            return f"Slack (HTTP mode) on {origin}{EVENTS_PATH}, installed from {origin}{INSTALL_PATH}"
        return f"Slack (HTTP mode) on {origin}{EVENTS_PATH}"

    async def readiness(self) -> str | None:
        """For /readyz: HTTP mode is ready once its server answers; Socket Mode while connected."""
        if not self.settings.socket_mode:
            return None
        if self._socket is None:
            return "Slack Socket Mode is not connected yet"
        ok = await self._socket.client.is_connected()  # type: ignore[no-untyped-call]
        return None if ok else "the Slack Socket Mode connection is down (reconnecting)"

    async def notify(self, channel: str, text: str) -> None:
        """A message from the core for a Slack channel (raises before :meth:`attach`: the core tries again)."""
        if self.adapter is None:
            raise RuntimeError("Slack is not attached yet")
        await self.adapter.notify(channel, text)

    async def detach(self) -> None:
        """Stop taking events (Socket Mode; in HTTP mode stopping the server does it)."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close_async()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        """Let the runs the core ended show their last words, then let go of the connections."""
        await self.detach()
        if self.adapter is not None:
            await self.adapter.drain(grace=5.0)
        await self._http.close()


class SlackBot:
    """Slack alone, with a core of its own (``python -m bots.slack``): build with :meth:`start`, stop with
    :meth:`stop`."""

    def __init__(self, front: SlackFront, adapter: SlackAdapter, service: Threadline, stack: AsyncExitStack) -> None:
        self.front = front
        self.adapter = adapter
        self.service = service
        self._stack = stack
        self.port: int | None = None  # HTTP mode: where /slack/events, /healthz, /readyz and /metrics are
        self.health: HealthServer | None = None  # Socket Mode: /healthz, /readyz, /metrics on THREADLINE_METRICS_PORT

    @property
    def app(self) -> AsyncApp | None:
        """Bolt's app."""
        return self.front.app

    @classmethod
    async def start(cls, settings: Settings, slack: SlackSettings) -> SlackBot:
        """Check the token, open the core, and start serving (HTTP on ``slack.port``, or Socket Mode)."""
        async with AsyncExitStack() as stack:
            metrics = Metrics()  # before the service: the client counts its retries from the first call
            front = await SlackFront.connect(slack, metrics)
            stack.push_async_callback(front.close)
            service = await Threadline.open(settings, notify=front.notify, metrics=metrics, platforms={"slack"})
            stack.push_async_callback(service.close)
            web_app = None if slack.socket_mode else web.Application()
            adapter = front.attach(service, web_app)
            service.adopt_with(adapter.show_adopted, adapter.show_cut_off)  # runs taken over from a stopped process
            stack.push_async_callback(front.detach)
            bot = cls(front, adapter, service, stack.pop_all())
        try:
            await bot._serve(web_app)
        except BaseException:
            await bot.stop()
            raise
        return bot

    async def _serve(self, web_app: web.Application | None) -> None:
        slack = self.front.settings
        if web_app is None:
            await self.front.start()
            _log.info("connected to Slack in Socket Mode")
            health = Health(self.service, self.front.readiness)
            self.health = await HealthServer.start(health, self.service.settings, default_port=DEFAULT_METRICS_PORT)
            if self.health is not None:
                self._stack.push_async_callback(self.health.stop)
            return
        Health.on_public_server(self.service, always_ready).add_to(web_app)  # ready once it answers: it started
        server = await WebServer.start(web_app, slack.host, slack.port)
        self._stack.push_async_callback(server.stop)
        self.port = server.port
        _log.info("listening for Slack on %s%s", server.origin, EVENTS_PATH)

    async def stop(self) -> None:
        await self._stack.aclose()


async def main() -> int:
    read = read_settings(SlackSettings.from_env)
    if read is None:
        return 2
    settings, slack = read
    configure_logging(settings, extra_secrets=list(slack.secrets))
    try:
        bot = await SlackBot.start(settings, slack)
    except ConfigError as exc:
        _log.error("%s", exc)
        return 2
    return await serve(bot.stop)
