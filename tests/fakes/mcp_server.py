"""A real MCP server for tests, written with the ``mcp`` package (its FastMCP, ``MCPServer`` in mcp 2.x).

    python tests/fakes/mcp_server.py RECORD stdio
    python tests/fakes/mcp_server.py RECORD http [PORT]   # streamable HTTP on 127.0.0.1; prints the port

Every tool call, and every HTTP request's ``Authorization`` header, is appended to the file RECORD
as a JSON line, so a test can tell what reached the server (and what never did). The process
records its start too, with its pid and the ``TRACKER_TOKEN`` it was given in its environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

RECORD = Path(sys.argv[1])


def record(kind: str, **fields: Any) -> None:
    with RECORD.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"kind": kind, "pid": os.getpid(), **fields}) + "\n")


server = MCPServer("tracker")


@server.tool()
def find_issue(number: int) -> str:
    """Look an issue up in the tracker.

    Args:
        number: The issue's number.
    """
    record("call", tool="find_issue", arguments={"number": number})
    return f"Issue {number}: the printer is on fire (open)"


@server.tool()
def close_issue(number: int, reason: str) -> str:
    """Close an issue.

    Args:
        number: The issue's number.
        reason: Why it is closed.
    """
    record("call", tool="close_issue", arguments={"number": number, "reason": reason})
    return f"Issue {number} closed: {reason}"


@server.tool()
async def slow_report(seconds: float) -> str:
    """Build a report that takes a while.

    Args:
        seconds: How long it takes.
    """
    record("call", tool="slow_report", arguments={"seconds": seconds})
    await asyncio.sleep(seconds)
    return "the report"


def serve_http(port: int) -> None:
    import uvicorn

    app = server.streamable_http_app()

    async def with_record(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            record("http", authorization=headers.get("authorization"))
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    sys.stdout.write(f"{sock.getsockname()[1]}\n")  # the test reads the port: the socket already accepts connections
    sys.stdout.flush()
    config = uvicorn.Config(with_record, log_level="warning", lifespan="on")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    record("start", token=os.environ.get("TRACKER_TOKEN"))
    if sys.argv[2] == "http":
        serve_http(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    else:
        server.run()
