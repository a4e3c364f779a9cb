"""The HTTP server on ``PORT``: one aiohttp app that the platforms add their routes to, then served.

``python -m bots`` puts Slack's ``/slack/events``, the API's ``/v1/...`` and ``/healthz``, ``/readyz`` and
``/metrics`` on one app; ``python -m bots.slack`` (HTTP mode) and ``python -m bots.api`` serve theirs the same way.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["WebServer"]


class WebServer:
    """An app on a port. Start with :meth:`start` once every route is added (an app is frozen then)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self.runner = runner
        self.host = host
        self.port = port

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def origin(self) -> str:
        """``http://host:port``, with the port bound (a free one when 0 was asked for)."""
        return f"http://{self.host}:{self.port}"

    @classmethod
    async def start(cls, app: web.Application, host: str, port: int) -> WebServer:
        """Serve ``app`` on ``host:port``; raises OSError when the port cannot be bound."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        bound = runner.addresses[0][1] if runner.addresses else port
        return cls(runner, host, bound)

    async def stop(self) -> None:
        await self.runner.cleanup()
