"""Logging set-up: text or JSON lines, and secrets never written."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

from core.settings import Settings

__all__ = ["RedactSecrets", "configure_logging", "secrets_of"]


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
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry)


def secrets_of(settings: Settings, extra: Iterable[str | None] = ()) -> list[str]:
    values = [settings.openai_api_key, settings.smtp.password if settings.smtp else None, *extra]
    return [v for v in values if v]


def configure_logging(
    settings: Settings, *, level: int = logging.INFO, extra_secrets: Iterable[str | None] = ()
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets_of(settings, extra_secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "openai", "openai.agents", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
