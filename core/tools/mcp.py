"""MCP tool servers at run time: their connections, kept up, and their tools as function tools.

Each ``[[mcp_servers]]`` entry (core/mcp_config.py) gets one :class:`McpConnection`: a task of its
own connects the openai-agents client (``MCPServerStdio``, ``MCPServerStreamableHttp``,
``MCPServerSse``), lists the server's tools and converts them with ``MCPUtil.to_function_tool``
into ordinary function tools named ``SERVER__TOOL``. So they go through everything a built-in
goes through: the policy (``[policy.tools.SERVER__TOOL]``), approvals (``needs_approval``), the
per-call timeout, run steps and the audit trail of approvals.

A run that starts checks each server it names (one request; concurrent runs share it). A server
found gone is reconnected at once; a server that cannot be reached is left out of the runs that
start meanwhile and retried with backoff, with one log line when it goes and one when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agents import FunctionTool, RunContextWrapper
from agents.mcp import MCPServer, MCPServerSse, MCPServerStdio, MCPServerStreamableHttp, MCPUtil
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from core.mcp_config import SEPARATOR, McpServerConfig, ResolvedServer, public_name
from core.tools import TOOL_FAILED_PREFIX, tool_failure_message

__all__ = ["McpConnection", "McpServers", "McpStatus", "McpUnavailable"]

_log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0  # seconds before the first retry of a server that cannot be reached; doubles up to
BACKOFF_MAX = 60.0
CHECK_SECONDS = 5.0  # the most a run's start waits for a server to answer that it is there
CONNECT_SECONDS = 10.0  # the least a connection (a process starting, say) is given, whatever the call timeout


class McpUnavailable(Exception):
    """A call to a server that is down and could not be reached again; the model reads the message."""


@dataclass(frozen=True)
class McpStatus:
    """What /assistant shows of one server an assistant names."""

    server: str
    up: bool
    tools: tuple[str, ...]  # the model's names, as last listed (none before the server was first reached)
    needs_approval: tuple[str, ...]
    problem: str | None = None


class McpConnection:
    """One MCP server: its client, connected and reconnected by a task of its own (connect and cleanup
    stay in one task, as the MCP client's transports require)."""

    def __init__(self, config: McpServerConfig, resolved: ResolvedServer) -> None:
        self.config = config
        self._secrets = resolved.secrets
        self._client = _client(config, resolved)
        self._route = _Route(self)
        self._tools: dict[str, FunctionTool] = {}  # the model's name → tool, from the last listing
        self.up = False
        self.problem: str | None = None  # why it is down, scrubbed of secrets
        self._reported_down = False  # its going was logged
        self._connected_before = False
        self._lost = asyncio.Event()  # the connection is gone: reconnect now
        self._retry = asyncio.Event()  # a call waits: skip the rest of the backoff
        self._settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()  # the next attempt
        self._check: asyncio.Task[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def _connect_seconds(self) -> float:
        return max(self.config.timeout_seconds, CONNECT_SECONDS)

    def start(self) -> asyncio.Future[bool]:
        """Connect in the background; the future settles with the first attempt (True: connected)."""
        self._task = asyncio.create_task(self._keep(), name=f"mcp server {self.name}")
        return self._settled

    async def close(self) -> None:
        """Disconnect (a stdio server's process is stopped) in the connection's own task; cut off after a while."""
        self._closing = True
        self._lost.set()
        self._retry.set()
        if self._check is not None:
            self._check.cancel()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=self._connect_seconds)
            if not done:
                self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def tools(self) -> list[FunctionTool]:
        """The server's tools as last listed (kept while it is down: a paused run resumes with them)."""
        return list(self._tools.values())

    def status(self) -> McpStatus:
        approvals = tuple(n for n, t in self._tools.items() if t.needs_approval)
        return McpStatus(self.name, self.up, tuple(self._tools), approvals, self.problem)

    async def available(self) -> bool:
        """For a run about to start: whether the server is there now. Found gone, it is reconnected at once
        (the run waits for that one attempt); while it cannot be reached, False without waiting."""
        if not self.up:
            return False
        check = self._check
        if check is None or check.done():  # runs starting together share one check
            check = self._check = asyncio.create_task(self._alive(), name=f"mcp check {self.name}")
        if await asyncio.shield(check):
            return True
        self._lose("it stopped answering")
        return await asyncio.shield(self._settled)

    async def call(self, tool: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None) -> Any:
        """Call ``tool`` (its MCP name); a server that is down is tried once more first."""
        if not self.up:
            self._retry.set()
            if not await asyncio.shield(self._settled):
                raise McpUnavailable(f"the MCP server {self.name!r} is unavailable right now")
        try:
            return await self._client.call_tool(tool, arguments, meta=meta)
        except MCPError as exc:
            if exc.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                self._lose(exc.message)
            raise
        except Exception as exc:
            if not await self._alive():
                self._lose(self._scrub(f"{type(exc).__name__}: {exc}"))
            raise

    # -- inside --------------------------------------------------------------------------------

    async def _keep(self) -> None:
        """Connect, list the tools, wait until the connection is lost; again, with backoff on failures."""
        failures = 0
        while not self._closing:
            self._lost.clear()
            try:
                async with asyncio.timeout(self._connect_seconds):
                    await self._client.connect()  # type: ignore[no-untyped-call]
                    listed = await self._client.list_tools()
            except Exception as exc:
                await self._cleanup()
                reason = (
                    f"no answer within {self._connect_seconds:g} s"
                    if isinstance(exc, TimeoutError)
                    else self._scrub(f"{type(exc).__name__}: {exc}")
                )
                self._down(reason)
                failures += 1
                self._settle(False)
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._retry.wait()
                continue
            failures = 0
            self._tools = {t.name: t for t in (self._function_tool(m) for m in listed if self.config.offers(m.name))}
            self._up()
            self._settle(True)
            await self._lost.wait()
            self.up = False
            await self._cleanup()
        self._settle(False)

    def _settle(self, connected: bool) -> None:
        if not self._settled.done():
            self._settled.set_result(connected)
        if not connected:  # callers from now on wait for the next attempt
            self._settled = asyncio.get_running_loop().create_future()

    def _lose(self, reason: str) -> None:
        """The connection is gone: runs from now on wait for the reconnection the task starts at once."""
        if not self.up:
            return
        self.up = False
        if self._settled.done():
            self._settled = asyncio.get_running_loop().create_future()
        _log.warning("MCP server %r: connection lost (%s); reconnecting", self.name, reason)
        self._lost.set()

    def _down(self, reason: str) -> None:
        self.up = False
        self.problem = reason
        if not self._reported_down:  # one line when it goes, not one per attempt or per run
            self._reported_down = True
            _log.warning(
                "MCP server %r is unavailable (%s); runs go on without its tools, and it is retried in the background",
                self.name,
                reason,
            )
        else:
            _log.debug("MCP server %r still unavailable: %s", self.name, reason)

    def _up(self) -> None:
        came_back = self._reported_down or self._connected_before
        self.up, self.problem, self._reported_down, self._connected_before = True, None, False, True
        names = ", ".join(self._tools) or "none"
        if came_back:
            _log.info("MCP server %r is back; tools: %s", self.name, names)
        else:
            _log.info("MCP server %r connected; tools: %s", self.name, names)

    async def _alive(self) -> bool:
        """Whether the server answers a ping (an error it answers with counts: it is there)."""
        session = getattr(self._client, "session", None)
        if session is None:
            return False
        try:
            async with asyncio.timeout(min(CHECK_SECONDS, self.config.timeout_seconds)):
                await session.send_ping()
        except MCPError as exc:
            return exc.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT)
        except Exception:
            return False
        return True

    async def _cleanup(self) -> None:
        try:
            await self._client.cleanup()  # type: ignore[no-untyped-call]
        except Exception as exc:
            _log.debug("MCP server %r: cleanup: %s", self.name, self._scrub(f"{type(exc).__name__}: {exc}"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]

    def _function_tool(self, listed: Any) -> FunctionTool:
        made = MCPUtil.to_function_tool(
            listed,
            self._route,
            convert_schemas_to_strict=False,
            failure_error_function=tool_failure_message,
            tool_name_override=public_name(self.name, listed.name),
        )
        made.needs_approval = self.config.approval(listed.name)
        made.timeout_seconds = self.config.timeout_seconds
        made.timeout_error_function = self._timeout_message
        return made

    def _timeout_message(self, context: RunContextWrapper[Any], error: Exception) -> str:
        seconds = self.config.timeout_seconds
        _log.warning("MCP server %r: a call timed out after %g s", self.name, seconds)
        return (
            f"{TOOL_FAILED_PREFIX}timeout: the MCP server {self.name!r} did not answer within {seconds:g} "
            "seconds). Tell the user; do not invent a result."
        )


class McpServers:
    """Every configured MCP server, by name."""

    def __init__(self, connections: Iterable[McpConnection] = ()) -> None:
        self._connections = {c.name: c for c in connections}

    @classmethod
    async def open(cls, configs: Iterable[McpServerConfig], environ: Mapping[str, str]) -> McpServers:
        """Fill in the servers' secrets (ConfigError: one is not set) and connect them all, waiting for each
        one's first attempt; one that cannot be reached is retried in the background."""
        resolved = [(config, config.resolve(environ)) for config in configs]
        servers = cls(McpConnection(config, secrets) for config, secrets in resolved)
        await asyncio.gather(*(c.start() for c in servers._connections.values()))
        return servers

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._connections.values()))

    def names(self) -> list[str]:
        """The model's names of every tool listed so far."""
        return [t.name for c in self._connections.values() for t in c.tools()]

    async def for_run(self, names: Iterable[str] | None) -> tuple[list[FunctionTool], list[str]]:
        """For a run starting now: the tools ``names`` (an assistant's tools) picks from servers that are there,
        and the servers it names that are not."""
        wanted = self._wanted(names)
        checks = await asyncio.gather(*(self._connections[s].available() for s in wanted))
        tools = [t for (server, picked), up in zip(wanted.items(), checks, strict=True) if up for t in picked()]
        return tools, [server for server, up in zip(wanted, checks, strict=True) if not up]

    def known(self, names: Iterable[str] | None) -> list[FunctionTool]:
        """The tools ``names`` picks, as last listed, up or not (a paused run resumes with them)."""
        return [t for picked in self._wanted(names).values() for t in picked()]

    def statuses(self, names: Iterable[str] | None) -> list[McpStatus]:
        """/assistant: the servers ``names`` picks from, and the tools it picks of each."""
        shown = []
        for server, picked in self._wanted(names).items():
            status = self._connections[server].status()
            chosen = tuple(t.name for t in picked())
            approvals = tuple(n for n in status.needs_approval if n in chosen)
            shown.append(McpStatus(server, status.up, chosen, approvals, status.problem))
        return shown

    def _wanted(self, names: Iterable[str] | None) -> dict[str, Any]:
        """Server → a function giving the tools of it that ``names`` picks (``SERVER``: all of them;
        ``SERVER.TOOL`` or ``SERVER__TOOL``: that one)."""
        picks: dict[str, set[str] | None] = {}
        for name in names or ():
            if name in self._connections:
                picks[name] = None
                continue
            server, dot, tool = name.partition(".")
            if not dot:
                server, dot, tool = name.partition(SEPARATOR)
            if dot and server in self._connections and picks.get(server, set()) is not None:
                picks.setdefault(server, set()).add(public_name(server, tool))  # type: ignore[union-attr]

        def picker(server: str, chosen: set[str] | None) -> Any:
            return lambda: [t for t in self._connections[server].tools() if chosen is None or t.name in chosen]

        return {server: picker(server, chosen) for server, chosen in picks.items()}


class _Route(MCPServer):
    """What the converted tools call: the connection, which reconnects a server that went away."""

    def __init__(self, connection: McpConnection) -> None:
        super().__init__(failure_error_function=tool_failure_message)
        self._connection = connection

    @property
    def name(self) -> str:
        return self._connection.name

    async def connect(self) -> None:  # the connection's own task connects
        return None

    async def cleanup(self) -> None:
        return None

    async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[Any]:
        raise NotImplementedError("the connection lists its server's tools itself")

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None = None
    ) -> Any:
        return await self._connection.call(tool_name, arguments, meta)

    async def list_prompts(self) -> Any:
        raise NotImplementedError("prompts of MCP servers are not used")

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError("prompts of MCP servers are not used")


def _client(config: McpServerConfig, resolved: ResolvedServer) -> MCPServer:
    """The openai-agents client for a server. Its own read timeout is a little longer than the call's, so
    that the call's timeout is the one the model hears of."""
    read_timeout = config.timeout_seconds + 5
    if config.transport == "stdio":
        assert config.command is not None
        return MCPServerStdio(
            params={"command": config.command, "args": list(config.args), "env": dict(resolved.env)},
            name=config.name,
            client_session_timeout_seconds=read_timeout,
        )
    assert resolved.url is not None
    if config.transport == "sse":
        return MCPServerSse(
            params={"url": resolved.url, "headers": dict(resolved.headers), "timeout": config.timeout_seconds},
            name=config.name,
            client_session_timeout_seconds=read_timeout,
        )
    return MCPServerStreamableHttp(
        params={"url": resolved.url, "headers": dict(resolved.headers), "timeout": config.timeout_seconds},
        name=config.name,
        client_session_timeout_seconds=read_timeout,
    )
