"""``/healthz``, ``/readyz`` and ``/metrics`` for every entry point, built once here.

- ``GET /healthz``: liveness, 200 while the process runs.
- ``GET /readyz``: 200 when the database answers a query, the platform is connected (each adapter gives
  its own check) and the model endpoint worked at its last call; else 503. The JSON body names each
  check's result either way.
- ``GET /metrics``: the service's Prometheus series (core/metrics.py).

Entry points with an HTTP server (Slack in HTTP mode, the API, and ``python -m bots``, whose ``/readyz``
checks every platform it serves) add the routes to it: there ``/readyz`` and ``/metrics`` answer loopback
clients only unless ``THREADLINE_METRICS_HOST`` is set (the operator then chose who reaches them). The others
serve them on ``THREADLINE_METRICS_PORT`` with :class:`HealthServer`, bound to loopback unless
``THREADLINE_METRICS_HOST`` says otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from core.metrics import CONTENT_TYPE
from core.service import Threadline
from core.settings import Settings

__all__ = ["DEFAULT_METRICS_PORT", "LOOPBACK", "Health", "HealthServer", "PlatformCheck", "always_ready", "is_loopback"]

_log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9100
LOOPBACK = "127.0.0.1"

PlatformCheck = Callable[[], Awaitable[str | None]]  # None when connected, else what is wrong, for people


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is this machine's loopback: 127.0.0.0/8, ``::1``, or 127.x mapped into IPv6.

    ``remote`` is the connection's own peer (aiohttp's ``request.remote``), never a forwarded header.
    """
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:  # no address (a Unix socket) or something unexpected: not loopback
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


async def always_ready() -> str | None:
    """The platform check of entry points that are connected once they answer at all (the API, the console)."""
    return None


class Health:
    """The three routes of one entry point, over its service and its platform check."""

    def __init__(self, service: Threadline, check: PlatformCheck, *, loopback_only: bool = False) -> None:
        self._service = service
        self._check = check
        self._loopback_only = loopback_only
        self._failing: frozenset[str] = frozenset()  # what failed at the last /readyz: log changes, not every probe

    @classmethod
    def on_public_server(cls, service: Threadline, check: PlatformCheck) -> Health:
        """For a server that also serves others (Slack events, the API): hide readiness and metrics from
        non-loopback clients unless THREADLINE_METRICS_HOST is set."""
        return cls(service, check, loopback_only=service.settings.metrics_host is None)

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self._local(self.readyz))
        app.router.add_get("/metrics", self._local(self.metrics))

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = await self._service.problems()
        try:
            platform = await self._check()
        except Exception as exc:
            platform = f"the platform check failed: {type(exc).__name__}: {exc}"
        if platform:
            problems["platform"] = platform
        checks = {name: problems.get(name, "ok") for name in ("database", "platform", "model")}
        if frozenset(problems) != self._failing:
            self._failing = frozenset(problems)
            if problems:
                _log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())))
            else:
                _log.info("ready")
        if problems:
            return web.json_response(
                {"status": "unavailable", "failed": sorted(problems), "checks": checks}, status=503
            )
        return web.json_response({"status": "ready", "checks": checks})

    async def metrics(self, request: web.Request) -> web.Response:
        body = await self._service.metrics_exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def _local(self, handler: Handler) -> Handler:
        if not self._loopback_only:
            return handler

        async def local_only(request: web.Request) -> web.StreamResponse:
            if not is_loopback(request.remote):
                return web.json_response(
                    {"error": f"{request.path} answers this machine only; THREADLINE_METRICS_HOST opens it to others."},
                    status=403,
                )
            return await handler(request)

        return local_only


class HealthServer:
    """The routes on a port of their own, for entry points without an HTTP server (Discord, Slack Socket Mode,
    the console). Start with :meth:`start`; stop with :meth:`stop`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @classmethod
    async def start(cls, health: Health, settings: Settings, *, default_port: int | None) -> HealthServer | None:
        """Serve on THREADLINE_METRICS_PORT (``default_port`` when unset; None: not at all when unset).

        A port that cannot be bound gets one clear log line and None: the bot goes on without it.
        """
        port = settings.metrics_port if settings.metrics_port is not None else default_port
        if port is None:
            return None
        host = settings.metrics_host or LOOPBACK
        app = web.Application()
        health.add_to(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            _log.error(
                "cannot serve /healthz, /readyz and /metrics on %s:%s (%s); the bot runs without them. "
                "Set THREADLINE_METRICS_PORT to a free port.",
                host,
                port,
                exc.strerror or exc,
            )
            return None
        bound = runner.addresses[0][1] if runner.addresses else port
        _log.info("health and metrics on http://%s:%s/metrics", host, bound)
        return cls(runner, host, bound)

    async def stop(self) -> None:
        await self._runner.cleanup()
