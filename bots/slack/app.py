"""Wiring: the Bolt app, the Web API client, and the HTTP or Socket Mode front door."""

from __future__ import annotations

import logging
import sys
from contextlib import AsyncExitStack

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bots.cli import unreachable
from bots.health import DEFAULT_METRICS_PORT, Health, HealthServer, always_ready
from bots.signals import stop_requested
from bots.slack.adapter import SlackAdapter, register_listeners
from bots.slack.config import SlackSettings
from bots.slack.guard import RequestGuard
from bots.slack.retries import CountedRetries
from core.errors import ConfigError
from core.logs import configure_logging
from core.metrics import Metrics
from core.service import Threadline
from core.settings import Settings, load_dotenv_file

__all__ = ["SlackBot", "main", "web_client"]

_log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


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


class SlackBot:
    """The running Slack adapter: build with :meth:`start`, stop with :meth:`stop`."""

    def __init__(self, app: AsyncApp, adapter: SlackAdapter, service: Threadline, stack: AsyncExitStack) -> None:
        self.app = app
        self.adapter = adapter
        self.service = service
        self._stack = stack
        self.port: int | None = None
        self.health: HealthServer | None = None  # Socket Mode: /healthz, /readyz, /metrics on THREADLINE_METRICS_PORT

    @classmethod
    async def start(cls, settings: Settings, slack: SlackSettings) -> SlackBot:
        """Check the token, open the core, and start serving (HTTP on ``slack.port``, or Socket Mode)."""
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(aiohttp.ClientSession())
            metrics = Metrics()  # before the service: the client counts its retries from the first call
            client = web_client(slack, http)
            count_retries(client, metrics)
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
            adapter_box: list[SlackAdapter] = []

            async def notify(channel: str, text: str) -> None:
                await adapter_box[0].notify(channel, text)

            service = await Threadline.open(settings, notify=notify, metrics=metrics, platforms={"slack"})
            stack.push_async_callback(service.close)
            adapter = SlackAdapter(service, slack, client, http, auth.get("user_id"))
            adapter_box.append(adapter)
            app = AsyncApp(
                client=client,
                signing_secret=slack.signing_secret or "",
                request_verification_enabled=not slack.socket_mode,
                url_verification_enabled=not slack.socket_mode,
            )
            register_listeners(app, adapter, slack)
            bot = cls(app, adapter, service, stack.pop_all())
        await bot._serve(slack)
        return bot

    async def _serve(self, slack: SlackSettings) -> None:
        if slack.socket_mode:
            handler = AsyncSocketModeHandler(self.app, slack.app_token, web_client=self.app.client)
            await handler.connect_async()  # type: ignore[no-untyped-call]
            self._stack.push_async_callback(handler.close_async)
            _log.info("connected to Slack in Socket Mode")

            async def connected() -> str | None:
                ok = await handler.client.is_connected()  # type: ignore[no-untyped-call]
                return None if ok else "the Slack Socket Mode connection is down (reconnecting)"

            health = Health(self.service, connected)
            self.health = await HealthServer.start(health, self.service.settings, default_port=DEFAULT_METRICS_PORT)
            if self.health is not None:
                self._stack.push_async_callback(self.health.stop)
            return
        web_app = self.app.web_app(path=EVENTS_PATH)
        RequestGuard(slack.signing_secret or "", EVENTS_PATH).add_to(web_app)  # a 4xx for what Bolt cannot read
        Health.on_public_server(self.service, always_ready).add_to(web_app)  # ready once it answers: it started
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, slack.host, slack.port)
        await site.start()
        self._stack.push_async_callback(runner.cleanup)
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else slack.port
        _log.info("listening for Slack on http://%s:%s%s", slack.host, self.port, EVENTS_PATH)

    async def stop(self) -> None:
        await self._stack.aclose()


async def main() -> int:
    load_dotenv_file()
    try:
        settings = Settings.from_env()
        slack = SlackSettings.from_env()
    except ConfigError as exc:
        print(f"threadline: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    configure_logging(settings, extra_secrets=[slack.bot_token, slack.signing_secret, slack.app_token])
    try:
        bot = await SlackBot.start(settings, slack)
    except ConfigError as exc:
        _log.error("%s", exc)
        return 2
    try:
        await stop_requested()
    finally:
        await bot.stop()
    return 0
