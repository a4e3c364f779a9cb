"""MCP tool servers in the assistants file: ``[[mcp_servers]]``, checked at start.

    [[mcp_servers]]
    name = "tracker"                                # letters, digits, - and _: tools are "tracker__TOOL"
    command = "npx"                                 # stdio: the server runs as a child process
    args = ["-y", "@acme/tracker-mcp"]
    env = { TRACKER_TOKEN = "${TRACKER_TOKEN}" }    # only these (and PATH, HOME...) reach the process
    timeout_seconds = 30                            # optional: per call (default 30); connecting gets 10 at least
    needs_approval = ["close_issue"]                # optional: true | false (default) | tool names
    tools = ["find_issue", "close_issue"]           # optional: offer only these of its tools

    [[mcp_servers]]
    name = "wiki"
    url = "https://wiki.example.com/mcp"            # or an HTTP server
    transport = "streamable_http"                   # optional: "streamable_http" (default) | "sse"
    headers = { Authorization = "Bearer ${WIKI_TOKEN}" }

An assistant names ``"tracker"`` (all its tools) or ``"tracker.find_issue"`` in its ``tools``.

Secrets come from the environment as ``${VAR}`` in ``env``, ``headers`` and ``url`` values; an
``env`` or header whose name says it holds a secret (token, key, secret, password, authorization)
must take its value from one. A ``${VAR}`` that is not set fails at start, naming the server and
the variable (never a value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from core.errors import ConfigError

__all__ = [
    "DEFAULT_MCP_TIMEOUT",
    "McpServerConfig",
    "ResolvedServer",
    "mcp_names",
    "parse_mcp_servers",
    "public_name",
]

DEFAULT_MCP_TIMEOUT = 30.0
# What the model sees of an MCP tool: "SERVER__TOOL" (a valid function name, and no clash with a built-in).
SEPARATOR = "__"
MAX_TOOL_NAME = 64  # the OpenAI function name limit

Transport = Literal["stdio", "streamable_http", "sse"]

_KEYS = {"name", "command", "args", "env", "url", "transport", "headers", "timeout_seconds", "needs_approval", "tools"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*(?:_[A-Za-z0-9-]+)*")  # no "__": it separates server and tool
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_NAME = re.compile(r"token|secret|password|passwd|key|authorization|auth|cookie", re.IGNORECASE)


def public_name(server: str, tool: str) -> str:
    """The name the model calls an MCP tool by: ``SERVER__TOOL``, made a valid function name."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", tool)
    return f"{server}{SEPARATOR}{safe}"[:MAX_TOOL_NAME]


@dataclass(frozen=True)
class ResolvedServer:
    """A server's settings with its ``${VAR}`` references filled in: ``secrets`` are the values that came
    from the environment, kept out of every log line."""

    env: Mapping[str, str] = field(repr=False)
    url: str | None = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # as written: ``${VAR}`` not yet filled in
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = DEFAULT_MCP_TIMEOUT
    needs_approval: bool | frozenset[str] = False  # True: every tool; a set: those tools (their MCP names)
    tools: frozenset[str] | None = None  # None: every tool the server lists
    source: str = ""  # where it is written, for messages

    def approval(self, tool: str) -> bool:
        """Whether calls to the server's ``tool`` (its MCP name) wait for a person's approval."""
        return self.needs_approval if isinstance(self.needs_approval, bool) else tool in self.needs_approval

    def offers(self, tool: str) -> bool:
        """Whether the server's ``tool`` (its MCP name) passes its ``tools`` allow-list."""
        return self.tools is None or tool in self.tools

    def resolve(self, environ: Mapping[str, str]) -> ResolvedServer:
        """Fill in the ``${VAR}`` references from ``environ`` (ConfigError naming an unset one)."""
        secrets: list[str] = []

        def fill(value: str, key: str) -> str:
            def one(match: re.Match[str]) -> str:
                variable = match.group(1)
                found = environ.get(variable)
                if found is None or found == "":
                    raise ConfigError(
                        f"{self.source}: key {key!r} needs the environment variable {variable}, which is not set "
                        "(set it, or put it in .env)."
                    )
                secrets.append(found)
                return found

            return _VARIABLE.sub(one, value)

        env = {k: fill(v, f"env.{k}") for k, v in self.env.items()}
        headers = {k: fill(v, f"headers.{k}") for k, v in self.headers.items()}
        url = fill(self.url, "url") if self.url is not None else None
        return ResolvedServer(env, url, headers, tuple(sorted(set(secrets), key=len, reverse=True)))


def parse_mcp_servers(value: Any, where: str) -> tuple[McpServerConfig, ...]:
    """The file's ``[[mcp_servers]]``; ConfigError names the file, the entry, the key and the problem."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'mcp_servers' must be an array of tables ([[mcp_servers]]).")
    servers: dict[str, McpServerConfig] = {}
    for position, entry in enumerate(value, start=1):
        server = _parse_server(entry, f"{where}: [[mcp_servers]] #{position}")
        if server.name in servers:
            raise ConfigError(f"{where}: MCP server name {server.name!r} is used twice.")
        servers[server.name] = server
    return tuple(servers.values())


def mcp_names(servers: Iterable[McpServerConfig], names: Iterable[str], where: str) -> set[str]:
    """Those of ``names`` (an assistant's tools, the policy's tools) that name an MCP server's tools:
    ``SERVER``, ``SERVER.TOOL`` or ``SERVER__TOOL``. ConfigError for a tool its server's ``tools`` leaves out."""
    by_name = {s.name: s for s in servers}
    found: set[str] = set()
    for name in names:
        if name in by_name:
            found.add(name)
            continue
        server_name, dot, tool = name.partition(".")
        if not dot:
            server_name, dot, tool = name.partition(SEPARATOR)
        server = by_name.get(server_name)
        if server is None or not dot or not tool:
            continue
        allowed = None if server.tools is None else {public_name(server.name, t) for t in server.tools}
        if allowed is not None and public_name(server.name, tool) not in allowed:
            offered = ", ".join(sorted(server.tools or ())) or "none"
            raise ConfigError(
                f"{where}: {name!r}: MCP server {server.name!r} offers only its tools {offered} (its key 'tools')."
            )
        found.add(name)
    return found


def _parse_server(entry: Any, where: str) -> McpServerConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table.")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: key 'name' is required: letters, digits, '-' and single '_', starting with a letter "
            f"(the model sees its tools as NAME__TOOL), not {name!r}."
        )
    where = f"{where} ({name!r})"
    for key in entry:
        if key not in _KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (expected one of: {', '.join(sorted(_KEYS))}).")
    command, url = entry.get("command"), entry.get("url")
    if (command is None) == (url is None):
        raise ConfigError(f"{where}: give either 'command' (a server run over stdio) or 'url' (an HTTP server).")
    transport = entry.get("transport")
    if command is not None:
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"{where}: key 'command' must be a non-empty string (the program to run).")
        if transport not in (None, "stdio"):
            raise ConfigError(f"{where}: key 'transport': a server run by 'command' speaks stdio, not {transport!r}.")
        for key in ("headers",):
            if key in entry:
                raise ConfigError(f"{where}: key {key!r} is for servers with a 'url'; use 'env' for a command.")
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"{where}: key 'args' must be a list of strings.")
        env = _strings(entry.get("env", {}), f"{where}: key 'env'")
        _check_references(env, "env", where)
        chosen: Transport = "stdio"
        headers: dict[str, str] = {}
    else:
        if not isinstance(url, str) or not re.match(r"https?://", url):
            raise ConfigError(f"{where}: key 'url' must be an http:// or https:// address, not {url!r}.")
        _check_references({"url": url}, "", where, secret_names=False)
        if transport not in (None, "streamable_http", "sse"):
            raise ConfigError(
                f'{where}: key \'transport\' must be "streamable_http" (the default) or "sse", not {transport!r}.'
            )
        for key in ("args", "env"):
            if key in entry:
                raise ConfigError(f"{where}: key {key!r} is for servers run by a 'command'; use 'headers' for a url.")
        chosen = "sse" if transport == "sse" else "streamable_http"
        headers = _strings(entry.get("headers", {}), f"{where}: key 'headers'")
        _check_references(headers, "headers", where)
        args, env = [], {}
    timeout = entry.get("timeout_seconds", DEFAULT_MCP_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        raise ConfigError(f"{where}: key 'timeout_seconds' must be a number of seconds above 0, not {timeout!r}.")
    tools = entry.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools)):
        raise ConfigError(f"{where}: key 'tools' must be a list of the server's tool names.")
    approval = entry.get("needs_approval", False)
    needs_approval: bool | frozenset[str]
    if isinstance(approval, bool):
        needs_approval = approval
    elif isinstance(approval, list) and all(isinstance(t, str) and t for t in approval):
        needs_approval = frozenset(approval)
        if tools is not None and (left_out := needs_approval - set(tools)):
            raise ConfigError(
                f"{where}: key 'needs_approval' names {', '.join(sorted(left_out))}, which its key 'tools' leaves out."
            )
    else:
        raise ConfigError(
            f"{where}: key 'needs_approval' must be true, false or a list of tool names, not {approval!r}."
        )
    return McpServerConfig(
        name=name,
        transport=chosen,
        command=command.strip() if isinstance(command, str) else None,
        args=tuple(args),
        env=env,
        url=url if isinstance(url, str) else None,
        headers=headers,
        timeout_seconds=float(timeout),
        needs_approval=needs_approval,
        tools=frozenset(tools) if tools is not None else None,
        source=where,
    )


def _strings(value: Any, at: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f'{at} must be a table of strings, e.g. {{ NAME = "${{VAR}}" }}.')
    return dict(value)


def _check_references(values: Mapping[str, str], key: str, where: str, *, secret_names: bool = True) -> None:
    """``${VAR}`` references well formed, and secrets never written in the file."""
    for name, value in values.items():
        at = f"{where}: key '{key}.{name}'" if key else f"{where}: key '{name}'"
        for match in _VARIABLE.finditer(value):
            if not _VARIABLE_NAME.fullmatch(match.group(1)):
                raise ConfigError(f"{at}: {match.group(0)!r} is not a ${{VAR}} reference to an environment variable.")
        if "${" in _VARIABLE.sub("", value):
            raise ConfigError(f"{at}: a '${{' is not closed (write ${{VAR}}).")
        if secret_names and _SECRET_NAME.search(name) and not _VARIABLE.search(value):
            raise ConfigError(
                f'{at}: looks like a secret, so its value must come from the environment: write "${{VAR}}" '
                '(for instance "Bearer ${TOKEN}") and set VAR, instead of the secret itself.'
            )
