"""What every long-running entry point does around its own start: read its settings, then serve until
told to stop (or until its platform's connection ends for good), then stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bots.gc_tuning import settle_for_serving
from bots.signals import stop_requested
from core.errors import ConfigError
from core.settings import Settings, load_dotenv_file

__all__ = ["read_settings", "serve"]

_log = logging.getLogger(__name__)
T = TypeVar("T")


def read_settings(platform: Callable[[], T]) -> tuple[Settings, T] | None:
    """The core's settings and the entry point's own, from the environment and ``.env``; None, with one
    line on standard error, when they are wrong (the caller exits 2)."""
    load_dotenv_file()
    try:
        return Settings.from_env(), platform()
    except ConfigError as exc:
        print(f"threadline: {exc}", file=sys.stderr)  # noqa: T201 - before logging exists
        return None


async def serve(stop: Callable[[], Awaitable[None]], closed: Awaitable[None] | None = None) -> int:
    """Serve until SIGINT/SIGTERM, or until ``closed`` ends (a connection lost for good), then ``stop()``.

    Returns the exit status: 1 when ``closed`` ended with an error, else 0."""
    settle_for_serving()
    stopping = asyncio.ensure_future(stop_requested())
    ended = asyncio.ensure_future(closed) if closed is not None else None
    tasks = {stopping} | ({ended} if ended is not None else set())
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await stop()
    if ended is not None and ended.done() and not ended.cancelled() and ended.exception() is not None:
        _log.error("the Discord connection ended: %s", ended.exception())
        return 1
    return 0
