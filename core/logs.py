"""Logging set-up: text or JSON lines, each with the channel, thread and run being worked on; secrets never written.

Message bodies are not logged; ``THREADLINE_LOG_CONTENT=1`` (settings.log_content) lets the core log them at
DEBUG level for debugging, and is off by default.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from core.settings import Settings

__all__ = ["LogContext", "RedactSecrets", "RunIds", "configure_logging", "log_context", "secrets_of"]

_FIELDS = ("channel", "thread", "run")
_ATTRIBUTE = "run_ids"  # the LogRecord attribute (``record.thread`` is already the OS thread's id)


@dataclass(frozen=True)
class RunIds:
    channel: str | None = None
    thread: str | None = None
    run: str | None = None


# Which run the current task works on. A ContextVar holds a value per asyncio task (tasks copy it when
# created), so it is not state shared between runs: the lane sets it, the run's own tasks inherit it.
_CURRENT: ContextVar[RunIds | None] = ContextVar("threadline_run_ids", default=None)


@contextmanager
def log_context(*, channel: str | None, thread: str | None, run: str | None) -> Iterator[None]:
    """Every log line written inside (and in tasks created inside) carries these ids."""
    token = _CURRENT.set(RunIds(channel, thread, run))
    try:
        yield
    finally:
        _CURRENT.reset(token)


class LogContext(logging.Filter):
    """Puts the current channel, thread and run ids on each record (as ``record.run_ids``; empty outside a run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, _ATTRIBUTE):
            setattr(record, _ATTRIBUTE, _CURRENT.get() or RunIds())
        return True


def _ids(record: logging.LogRecord) -> list[tuple[str, str]]:
    ids = getattr(record, _ATTRIBUTE, None) or RunIds()
    return [(name, value) for name in _FIELDS if (value := getattr(ids, name)) is not None]


class RedactSecrets(logging.Filter):
    """Replaces every known secret value in a record's final message with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self._secrets:
            message = message.replace(secret, "[redacted]")
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, "[redacted]")
        record.msg, record.args = message, None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_ids(record))
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry)


class _TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` and, during a run, `` [channel=... thread=... run=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name}={value}" for name, value in _ids(record)]
        if not ids:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{' '.join(ids)}]{newline}{rest}"


def secrets_of(settings: Settings, extra: Iterable[str | None] = ()) -> list[str]:
    values = [
        settings.openai_api_key,
        settings.embedding_api_key,
        settings.smtp.password if settings.smtp else None,
        *extra,
    ]
    return [v for v in values if v]


def configure_logging(
    settings: Settings, *, level: int = logging.INFO, extra_secrets: Iterable[str | None] = ()
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter())
    handler.addFilter(LogContext())
    handler.addFilter(RedactSecrets(secrets_of(settings, extra_secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "openai", "openai.agents", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
