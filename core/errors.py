"""One root for Threadline's run-fatal errors; messages are written for the person who reads them."""

from __future__ import annotations

__all__ = ["ConfigError", "ThreadlineError", "UnknownCursor", "UnknownObject"]


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


class UnknownObject(ThreadlineError):
    """An id that names no object its owner can reach (another owner's ids are unknown too)."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"No {kind} found with id '{object_id}'.")
        self.kind = kind
        self.object_id = object_id
