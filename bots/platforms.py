"""``python -m bots``: one process, one core, every platform the environment configures.

- Slack when ``SLACK_BOT_TOKEN`` is set: Socket Mode with ``SLACK_APP_TOKEN``, else HTTP mode at ``/slack/events``;
  or, installed into many workspaces, when ``SLACK_CLIENT_ID`` is set (HTTP mode, with ``/slack/install``).
- Discord when ``DISCORD_TOKEN`` is set.
- The Assistants-compatible API when ``THREADLINE_API_KEYS`` is set or ``THREADLINE_API=on`` (without keys it
  answers this machine only); ``THREADLINE_API=off`` leaves it out even with keys.

One HTTP server on ``PORT`` serves ``/slack/events``, ``/v1/...``, ``/healthz``, ``/readyz`` and ``/metrics``.
It listens on ``THREADLINE_HTTP_HOST`` (default 0.0.0.0) when something on it is for other machines (Slack's
HTTP mode, the API with keys), else where the other entry points serve their health checks
(``THREADLINE_METRICS_HOST``, default 127.0.0.1). ``/readyz`` combines every platform's check.

Each platform has a front that attaches it to a running service (``SlackFront``, ``DiscordFront``,
``ApiFront``, beside the class that runs it alone). The core's messages for a channel, and the runs it
takes over from a process that stopped, go to the front of the channel's platform: :class:`Router`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from bots.api.app import ApiFront
from bots.api.config import ApiSettings
from bots.api.errors import ServerLog
from bots.discord.app import DiscordFront
from bots.discord.config import DiscordSettings
from bots.entry import read_settings, serve
from bots.health import LOOPBACK, Health, PlatformCheck, is_loopback
from bots.slack.app import SlackFront
from bots.slack.config import SlackSettings
from bots.web import WebServer
from core.errors import ConfigError
from core.handles import RunHandle
from core.logs import configure_logging
from core.metrics import Metrics
from core.service import AdoptedRenderer, CutOff, CutOffRenderer, Notifier, Threadline
from core.settings import Settings

__all__ = ["NOTHING_CONFIGURED", "Configured", "Front", "OneProcess", "Router", "main"]

_log = logging.getLogger(__name__)

NOTHING_CONFIGURED = (
    "Nothing to serve: set SLACK_BOT_TOKEN or SLACK_CLIENT_ID (Slack), DISCORD_TOKEN (Discord), or "
    "THREADLINE_API_KEYS or THREADLINE_API=on (the Assistants-compatible API), in .env or the environment "
    "(.env.example lists them). To talk to the assistant in this terminal instead: python -m bots.console."
)
_ON, _OFF = frozenset({"on", "true", "yes", "1"}), frozenset({"off", "false", "no", "0"})
DEFAULT_BODY_BYTES = 1024**2  # aiohttp's own limit, Slack's requests' too


@dataclass(frozen=True)
class Configured:
    """What the environment asks this process to serve, each platform's settings read once."""

    slack: SlackSettings | None = None
    discord: DiscordSettings | None = None
    api: ApiSettings | None = None
    port: int = 3000
    http_host: str = "0.0.0.0"  # THREADLINE_HTTP_HOST: for a server that has something for other machines
    secrets: tuple[str, ...] = field(default=(), repr=False)  # to keep out of the log

    @property
    def platforms(self) -> frozenset[str]:
        served = {"slack": self.slack, "discord": self.discord, "api": self.api}
        return frozenset(name for name, settings in served.items() if settings is not None)

    @property
    def public(self) -> bool:
        """Whether the HTTP server has something for other machines: Slack's HTTP mode, or the API with keys."""
        slack_http = self.slack is not None and not self.slack.socket_mode
        return slack_http or (self.api is not None and bool(self.api.keys))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Configured:
        """Raises ConfigError (one line, naming the variable) for a platform set up wrong, or for none at all."""
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        slack = SlackSettings.from_env(env) if text("SLACK_BOT_TOKEN") or text("SLACK_CLIENT_ID") else None
        discord = DiscordSettings.from_env(env) if text("DISCORD_TOKEN") else None
        switch = (text("THREADLINE_API") or "").lower()
        if switch and switch not in _ON | _OFF:
            raise ConfigError(
                f"THREADLINE_API={text('THREADLINE_API')!r} should be on or off (on: serve the Assistants-compatible "
                "API, without THREADLINE_API_KEYS to this machine only; unset: serve it when keys are set)."
            )
        wanted = switch in _ON or (switch not in _OFF and text("THREADLINE_API_KEYS") is not None)
        api = ApiSettings.from_env(env) if wanted else None
        if slack is None and discord is None and api is None:
            raise ConfigError(NOTHING_CONFIGURED)
        port_text = text("PORT") or "3000"
        if not (port_text.isdigit() and int(port_text) < 65536):
            raise ConfigError(f"PORT={port_text!r} is not a port number.")
        secrets: list[str] = [*(api.keys if api else ()), *([discord.token] if discord else [])]
        if slack is not None:
            secrets += slack.secrets
        return cls(slack, discord, api, int(port_text), text("THREADLINE_HTTP_HOST") or "0.0.0.0", tuple(secrets))


class Front(Protocol):
    """A platform attached to the service: ``platform`` is its channel keys' prefix (``slack``, ``discord``,
    ``api``)."""

    platform: str

    def describe(self, origin: str) -> str: ...

    async def readiness(self) -> str | None: ...


class Router:
    """The core's messages for a channel, and the runs it takes over, go to the front of the channel's platform.

    Until a platform is attached, a message for it raises (the core keeps it and tries again) and a run taken
    over waits (the core hands runs over as soon as the service is open, before the fronts exist).
    """

    def __init__(self, platforms: frozenset[str]) -> None:
        self.platforms = platforms
        self._attached = {name: asyncio.Event() for name in platforms}
        self._notify: dict[str, Notifier | None] = {}
        self._render: dict[str, AdoptedRenderer | None] = {}
        self._cut_off: dict[str, CutOffRenderer | None] = {}

    def attach(
        self,
        platform: str,
        notify: Notifier | None,
        render: AdoptedRenderer | None,
        cut_off: CutOffRenderer | None = None,
    ) -> None:
        """``notify``/``render`` None: the platform has no channel to post to (the API: its clients read runs).
        ``cut_off`` None: a run cut off after a tool is told of in its channel, by ``notify``."""
        self._notify[platform] = notify
        self._render[platform] = render
        self._cut_off[platform] = cut_off
        self._attached[platform].set()

    async def notify(self, channel: str, text: str) -> None:
        platform = channel.partition(":")[0]
        if platform not in self._notify:
            raise RuntimeError(f"{platform or channel} is not connected (yet)")
        notify = self._notify[platform]
        if notify is None:
            _log.info("a message for %s was not delivered: nothing posts to %s channels", channel, platform)
            return
        await notify(channel, text)

    async def cut_off(self, cut: CutOff) -> None:
        platform = cut.channel.partition(":")[0]
        show = self._cut_off.get(platform)
        if show is None:  # not attached yet (raises: tried again), or told of in the channel
            await self.notify(cut.channel, cut.text)
            return
        await show(cut)

    async def render(self, handle: RunHandle, platform_msg_id: str | None) -> None:
        platform = handle.channel.partition(":")[0]
        attached = self._attached.get(platform)
        if attached is None:  # the core takes over runs of the platforms served here only
            _log.warning("took over run %s in %s, which is not served here", handle.run_id, handle.channel)
            return
        await attached.wait()
        render = self._render[platform]
        if render is not None:
            await render(handle, platform_msg_id)


def readiness(fronts: list[Front]) -> PlatformCheck:
    """/readyz's platform check: every front's, the problems joined."""

    async def check() -> str | None:
        problems = [problem for front in fronts if (problem := await front.readiness())]
        return "; ".join(problems) or None

    return check


class OneProcess:
    """The platforms on one service and one HTTP server: build with :meth:`start`, stop with :meth:`stop`."""

    def __init__(
        self, service: Threadline, server: WebServer, discord: DiscordFront | None, stack: AsyncExitStack
    ) -> None:
        self.service = service
        self.server = server
        self.discord = discord
        self._stack = stack

    @classmethod
    async def start(cls, settings: Settings, configured: Configured, **discord_options: Any) -> OneProcess:
        """Check each platform's credentials, open the core, attach the platforms, serve. Raises ConfigError people
        can act on. ``discord_options``: for discord.py's client (tests)."""
        async with AsyncExitStack() as stack:
            metrics = Metrics()  # before the service: Slack's client counts its retries from its first call
            slack = await SlackFront.connect(configured.slack, metrics) if configured.slack else None
            if slack is not None:
                stack.push_async_callback(slack.close)
            discord = DiscordFront(configured.discord, **discord_options) if configured.discord else None
            if discord is not None:
                stack.push_async_callback(discord.close)  # after the core closed: each run's end is shown
            api = ApiFront(configured.api) if configured.api else None
            router = Router(configured.platforms)
            service = await Threadline.open(settings, notify=router.notify, metrics=metrics, platforms=router.platforms)
            service.adopt_with(router.render, router.cut_off)
            stack.push_async_callback(service.close)

            app = web.Application(
                client_max_size=max(api.settings.max_body_bytes if api else 0, DEFAULT_BODY_BYTES),
                handler_args={"logger": ServerLog()},
            )
            fronts: list[Front] = []
            if slack is not None:
                adapter = slack.attach(service, app)
                stack.push_async_callback(slack.detach)  # before the core closes: no new events
                router.attach(slack.platform, slack.notify, adapter.show_adopted, adapter.show_cut_off)
                fronts.append(slack)
            if discord is not None:
                client = discord.attach(service)
                # (runs taken over wait for the login; a notice before it is tried again)
                router.attach(discord.platform, discord.notify, client.show_adopted, client.show_cut_off)
                fronts.append(discord)
            if api is not None:
                api.attach(service, app)
                router.attach(api.platform, None, None)
                fronts.append(api)
            Health.on_public_server(service, readiness(fronts)).add_to(app)

            host = configured.http_host if configured.public else (settings.metrics_host or LOOPBACK)
            try:
                server = await WebServer.start(app, host, configured.port)
            except OSError as exc:
                raise ConfigError(
                    f"Cannot listen on {host}:{configured.port} ({exc.strerror or exc}); set PORT to a free port."
                ) from None
            stack.push_async_callback(server.stop)
            if slack is not None:
                await slack.start()  # Socket Mode connects; HTTP mode is served from now on
            if discord is not None:
                await discord.start()
            for front in fronts:
                _log.info("serving %s", front.describe(server.origin))
            if api is not None and not api.settings.keys and not is_loopback(host):
                _log.warning("the API has no keys (THREADLINE_API_KEYS): /v1 answers clients on this machine only")
            _log.info("health and metrics on %s/healthz, /readyz and /metrics", server.origin)
            process = cls(service, server, discord, stack.pop_all())
        return process

    async def wait_closed(self) -> None:
        """Wait until a platform's connection ends for good (Discord's gateway); forever without one."""
        if self.discord is None:
            await asyncio.Event().wait()
        else:
            await self.discord.wait_closed()

    async def stop(self) -> None:
        """Stop taking requests and events, hand the runs over (core.service.Threadline.close), disconnect."""
        await self._stack.aclose()


async def main() -> int:
    read = read_settings(Configured.from_env)
    if read is None:
        return 2
    settings, configured = read
    configure_logging(settings, extra_secrets=configured.secrets)
    try:
        process = await OneProcess.start(settings, configured)
    except ConfigError as exc:
        _log.error("%s", exc)
        return 2
    return await serve(process.stop, process.wait_closed() if process.discord is not None else None)
