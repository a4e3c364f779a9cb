"""The tools available in this deployment: the configured built-ins plus the team's own modules."""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Iterable

import aiohttp
from agents import FunctionTool

from core.errors import ConfigError
from core.settings import Settings
from core.tools.email import make_email_tool
from core.tools.weather import make_weather_tool

__all__ = ["ToolRegistry"]

_log = logging.getLogger(__name__)


class ToolRegistry:
    """Name → tool. Built-ins come first; a team's module cannot silently shadow one."""

    def __init__(
        self,
        builtins: Iterable[FunctionTool],
        custom: Iterable[FunctionTool] = (),
        channel_tools: Iterable[FunctionTool] = (),
    ) -> None:
        self._builtins = {t.name: t for t in builtins}
        self._tools = dict(self._builtins)
        # Offered only where the channel has what they need (file_search: indexed files).
        self._channel_tools = {t.name: t for t in channel_tools}
        for t in custom:
            if t.name in self._tools or t.name in self._channel_tools:
                raise ConfigError(f"tool {t.name!r} is defined twice (a built-in or another tool module).")
            self._tools[t.name] = t

    @classmethod
    def build(
        cls,
        settings: Settings,
        http: aiohttp.ClientSession,
        tool_modules: Iterable[str],
        channel_tools: Iterable[FunctionTool] = (),
        extra: Iterable[FunctionTool] = (),
    ) -> ToolRegistry:
        """The built-ins (weather; email with SMTP; ``extra`` ones the service set up), team tools, channel tools."""
        builtins = [
            make_weather_tool(
                forecast_url=settings.open_meteo_url,
                geocoding_url=settings.open_meteo_geocoding_url,
                http=http,
            )
        ]
        if settings.smtp is not None:
            builtins.append(make_email_tool(settings.smtp))
        builtins.extend(extra)
        custom = [t for module in tool_modules for t in load_tool_module(module)]
        registry = cls(
            [with_timeout(t, settings.tool_timeout) for t in builtins],
            [with_timeout(t, settings.tool_timeout) for t in custom],
            [with_timeout(t, settings.tool_timeout) for t in channel_tools],
        )
        _log.info("tools available: %s", ", ".join(registry.names()))
        return registry

    def names(self) -> list[str]:
        return [*self._tools, *self._channel_tools]

    @property
    def builtin_names(self) -> list[str]:
        return list(self._builtins)

    def select(self, names: Iterable[str] | None) -> list[FunctionTool]:
        """The named tools (None: every built-in), channel tools aside."""
        if names is None:
            return list(self._builtins.values())
        return [self._tools[n] for n in names if n in self._tools]

    def channel_tool(self, name: str, names: Iterable[str] | None) -> FunctionTool | None:
        """The channel tool ``name`` if the assistant's tool list (None: every built-in) allows it."""
        if name not in self._channel_tools or (names is not None and name not in names):
            return None
        return self._channel_tools[name]


def load_tool_module(name: str) -> list[FunctionTool]:
    """Every tool a module defines at top level (functions decorated with ``core.tools.tool``)."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(f"tool module {name!r} cannot be imported: {type(exc).__name__}: {exc}") from exc
    tools = [value for value in vars(module).values() if isinstance(value, FunctionTool)]
    if not tools:
        raise ConfigError(f"tool module {name!r} defines no tools (decorate functions with core.tools.tool).")
    return tools


def with_timeout(tool: FunctionTool, seconds: float) -> FunctionTool:
    """A copy of ``tool`` that gives up after ``seconds`` unless it set its own limit.

    A timeout becomes a tool result the model sees; the run goes on.
    """
    if tool.timeout_seconds is not None:
        return tool
    limited = copy.copy(tool)
    limited.timeout_seconds = seconds
    return limited
