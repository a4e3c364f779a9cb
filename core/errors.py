"""One root for Threadline's run-fatal errors; messages are written for the person who reads them."""

from __future__ import annotations

__all__ = ["ConfigError", "ThreadlineError"]


class ThreadlineError(Exception):
    """Root of every error Threadline raises on purpose."""


class ConfigError(ThreadlineError):
    """The configuration is wrong; the message names the file or variable, the key and the problem."""
