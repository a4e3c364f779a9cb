"""Wiring: the aiohttp app of the Assistants-compatible API, its server, and ``main``.

The routes are the old API's (``/v1/assistants``, ``/v1/threads``, ``/v1/threads/{id}/messages``),
so code written for it works by pointing the openai SDK's ``base_url`` here.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from bots.api.assistants import AssistantRoutes
from bots.api.auth import ApiKeys
from bots.api.config import LOOPBACK, ApiSettings
from bots.api.errors import MAX_BODY, ApiError, ServerLog, error_middleware
from bots.api.files import FileRoutes
from bots.api.openapi import document
from bots.api.runs import RunRoutes
from bots.api.threads import ThreadRoutes
from bots.api.vector_stores import VectorStoreRoutes
from bots.entry import read_settings, serve
from bots.health import Health, always_ready, is_loopback
from bots.web import WebServer
from core.api_files import ApiFiles
from core.api_objects import ApiObjects
from core.api_runs import ApiRuns
from core.errors import ConfigError
from core.logs import configure_logging
from core.service import Threadline

__all__ = ["ApiFront", "ApiServer", "add_routes", "build_app", "main"]

_log = logging.getLogger(__name__)


def _openapi_handler() -> Handler:
    """``GET /openapi.json``: the API's OpenAPI document (bots/api/openapi.py), no key needed. It is built at the
    first request, off the event loop, and kept."""
    built: list[str] = []

    async def openapi(request: web.Request) -> web.Response:
        if not built:
            built.append(await asyncio.to_thread(lambda: json.dumps(document(), separators=(",", ":"))))
        return web.Response(text=built[0], content_type="application/json")

    return openapi


def build_app(objects: ApiObjects, api: ApiSettings, files: ApiFiles, runs: ApiRuns) -> web.Application:
    """The API alone on an app of its own."""
    app = web.Application(client_max_size=api.max_body_bytes, handler_args={"logger": ServerLog()})
    add_routes(app, objects, api, files, runs)
    return app


def add_routes(app: web.Application, objects: ApiObjects, api: ApiSettings, files: ApiFiles, runs: ApiRuns) -> None:
    """The API's routes and middlewares on ``app``, which may serve other paths too (they pass untouched but for
    the errors of paths nobody serves, which get the API's shape). Its body limit is set where ``app`` is made."""
    keys = ApiKeys(api.keys, api.owners or None)
    app.middlewares.append(error_middleware)
    if not api.keys:  # no key needed: this machine's clients only, also on a server that listens to others
        app.middlewares.append(_this_machine_only)
    app.middlewares.append(keys.middleware())
    app[MAX_BODY] = api.max_body_bytes
    app.add_routes(AssistantRoutes(objects).routes())
    app.add_routes(RunRoutes(objects, runs).routes())  # before threads: /v1/threads/runs is not a thread's id
    app.add_routes(ThreadRoutes(objects, runs).routes())
    app.add_routes([*FileRoutes(files).routes(), *VectorStoreRoutes(files.vector_stores).routes()])
    app.router.add_get("/openapi.json", _openapi_handler())


@web.middleware
async def _this_machine_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.path == "/v1" or request.path.startswith("/v1/")) and not is_loopback(request.remote):
        raise ApiError(
            403,
            "This API has no keys (THREADLINE_API_KEYS), so it answers clients on its own machine only.",
            code="forbidden",
        )
    return await handler(request)


class ApiFront:
    """The API attached to a running service, on an aiohttp app that may serve other things too."""

    platform = "api"

    def __init__(self, api: ApiSettings) -> None:
        self.settings = api

    def attach(self, service: Threadline, web_app: web.Application) -> None:
        """Add the routes to ``web_app`` (not started yet; make it with ``client_max_size`` of the API's limit)."""
        add_routes(web_app, service.objects, self.settings, service.files, ApiRuns(service))

    def describe(self, origin: str) -> str:
        api = self.settings
        keys = f"{len(api.keys)} key{'s' if len(api.keys) != 1 else ''}" if api.keys else "no keys: this machine only"
        return f"the Assistants-compatible API on {origin}/v1 ({keys})"

    async def readiness(self) -> str | None:
        return None  # ready once its server answers


class ApiServer:
    """The API alone on a port (``python -m bots.api``), in front of a running service (which its caller opens
    and closes)."""

    def __init__(self, server: WebServer) -> None:
        self._server = server
        self._runner = server.runner
        self.host = server.host
        self.port = server.port

    @property
    def app(self) -> web.Application:
        return self._server.app

    @property
    def base_url(self) -> str:
        return f"{self._server.origin}/v1"

    @classmethod
    async def start(cls, service: Threadline, api: ApiSettings) -> ApiServer:
        host = api.bind_host
        if not api.keys:
            _log.warning(
                "THREADLINE_API_KEYS is not set, so the API listens on %s only and anyone on this machine may use "
                "it without a key. Set keys to serve other machines (THREADLINE_HTTP_HOST=%s applies then).",
                LOOPBACK,
                api.host,
            )
        app = build_app(service.objects, api, service.files, ApiRuns(service))
        Health.on_public_server(service, always_ready).add_to(app)  # ready once it answers: the server started
        server = cls(await WebServer.start(app, host, api.port))
        keys = f"{len(api.keys)} key{'s' if len(api.keys) != 1 else ''}" if api.keys else "no keys"
        _log.info("Assistants-compatible API on %s (%s)", server.base_url, keys)
        return server

    async def stop(self) -> None:
        await self._server.stop()


async def main() -> int:
    read = read_settings(ApiSettings.from_env)
    if read is None:
        return 2
    settings, api = read
    configure_logging(settings, extra_secrets=api.keys)
    try:
        service = await Threadline.open(settings, platforms={"api"})
    except ConfigError as exc:
        _log.error("%s", exc)
        return 2
    try:
        server = await ApiServer.start(service, api)
    except OSError as exc:
        _log.error("cannot listen on %s:%s: %s", api.bind_host, api.port, exc.strerror or exc)
        await service.close()
        return 1

    async def stop() -> None:
        await server.stop()
        await service.close()

    return await serve(stop)
