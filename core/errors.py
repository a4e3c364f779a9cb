"""One root for Threadline's run-fatal errors; messages are written for the person who reads them."""

from __future__ import annotations

__all__ = ["ConfigError", "ThreadlineError", "UnknownCursor"]


class ThreadlineError(Exception):
    """Root of every error Threadline raises on purpose."""


class ConfigError(ThreadlineError):
    """The configuration is wrong; the message names the file or variable, the key and the problem."""


class UnknownCursor(ThreadlineError):
    """A list's ``after`` or ``before`` names no object of that list."""

    def __init__(self, param: str, value: str) -> None:
        super().__init__(f"{param}={value!r} is not the id of an object in this list.")
        self.param = param
        self.value = value
