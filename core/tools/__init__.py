"""Function tools: typed Python functions whose schema comes from the signature and docstring.

A team adds its own tool by writing, in its own module::

    from core.tools import tool

    @tool
    async def open_ticket(title: str, body: str) -> str:
        \"\"\"Open a ticket in the team's tracker.

        Args:
            title: One line saying what is wrong.
            body: The details.
        \"\"\"
        ...

    @tool(needs_approval=True)   # changes the world outside the conversation: people approve first
    async def deploy(service: str) -> str: ...

and naming the module in the assistants file (``tool_modules = ["myteam.tools"]``).
A tool that raises becomes a result the model reads ("The tool failed: ..."); the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, overload

from agents import FunctionTool, RunContextWrapper, function_tool

__all__ = ["TOOL_FAILED_PREFIX", "FunctionTool", "tool", "tool_failure_message"]

_log = logging.getLogger(__name__)

TOOL_FAILED_PREFIX = "The tool failed ("  # metrics count a result starting so as a failed call


def tool_failure_message(context: RunContextWrapper[Any], error: Exception) -> str:
    """What the model reads when a tool raised: enough to explain it to the user, nothing more."""
    _log.warning("tool failed: %s: %s", type(error).__name__, error, exc_info=error)
    detail = str(error)[:300] or type(error).__name__
    return f"{TOOL_FAILED_PREFIX}{type(error).__name__}: {detail}). Tell the user; do not invent a result."


@overload
def tool(func: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(func: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    func: Callable[..., Any] | None = None, /, **options: Any
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """``agents.function_tool`` with Threadline's defaults (usable bare or with options)."""
    options.setdefault("failure_error_function", tool_failure_message)
    if func is None:
        decorator: Callable[[Callable[..., Any]], FunctionTool] = function_tool(**options)
        return decorator
    made: FunctionTool = function_tool(func, **options)
    return made
