"""MCP tool servers: a real server (tests/fakes/mcp_server.py) over stdio and streamable HTTP, the scripted model.

The server records every call it gets, so a test can tell what reached it and what never did.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.assistants import load_assistants
from core.commands import handle_command
from core.errors import ConfigError
from core.events import ApprovalRequired, RunCompleted, ToolCallFinished
from core.mcp_config import public_name
from core.service import Threadline
from tests.conftest import ServiceFactory
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, offered_tools, tool_results
from tests.helpers import CHANNEL, collect, post

FAKE_SERVER = Path(__file__).parent / "fakes" / "mcp_server.py"
SECRET = "tok-9f8e7d6c5b4a-never-logged"


def stdio_entry(record: Path, *, extra: str = "", name: str = "tracker") -> str:
    return f"""
[[mcp_servers]]
name = "{name}"
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(FAKE_SERVER))}, {json.dumps(str(record))}, "stdio"]
env = {{ TRACKER_TOKEN = "${{TRACKER_TOKEN}}" }}
needs_approval = ["close_issue"]
{extra}
"""


def assistants(servers: str, tools: str = '["tracker"]') -> str:
    return f"""
default = "team"

[[assistants]]
name = "team"
instructions = "You help the team."
model = "fake-model"
tools = {tools}
{servers}
"""


def calls(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def of_kind(record: Path, kind: str) -> list[dict[str, Any]]:
    return [c for c in calls(record) if c["kind"] == kind]


def result_text(req: dict[str, Any]) -> str:
    """The text of the tool result the model was sent (an MCP tool's comes as content parts)."""
    content = tool_results(req)[0]["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def call_then_answer(tool: str, arguments: dict[str, Any]) -> Any:
    def script(req: dict[str, Any]) -> Reply:
        if tool_results(req):
            return Reply(text=f"Result: {result_text(req)}")
        return Reply(tool_calls=(ToolCall(tool, arguments),))

    return script


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "mcp-record.jsonl"


@pytest.fixture
def told() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def mcp_service(open_service: ServiceFactory, tmp_path: Path, told: list[tuple[str, str]]) -> Any:
    """Open a service whose assistants file has ``servers``; messages for channels land in ``told``."""

    async def notify(channel: str, text: str) -> None:
        told.append((channel, text))

    async def factory(servers: str, tools: str = '["tracker"]', **overrides: Any) -> Threadline:
        path = tmp_path / "assistants.toml"
        path.write_text(assistants(servers, tools))
        overrides.setdefault("environ", {"TRACKER_TOKEN": SECRET})
        return await open_service(notify=notify, assistants_file=path, **overrides)

    return factory


async def test_the_model_is_offered_the_tools_and_a_call_runs_on_the_server(
    mcp_service: Any, fake_model: FakeOpenAI, record: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service = await mcp_service(stdio_entry(record))
    fake_model.script = call_then_answer("tracker__find_issue", {"number": 7})
    events = await collect(await post(service, "what is issue 7?"))

    first = fake_model.chat_requests[0]
    assert {"tracker__find_issue", "tracker__close_issue", "tracker__slow_report"} <= set(offered_tools(first))
    schema = next(t for t in first["tools"] if t["function"]["name"] == "tracker__find_issue")["function"]
    assert schema["parameters"]["properties"]["number"]["type"] == "integer"
    assert "Look an issue up" in schema["description"]
    assert [c["arguments"] for c in of_kind(record, "call")] == [{"number": 7}]
    assert result_text(fake_model.chat_requests[-1]) == "Issue 7: the printer is on fire (open)"
    assert isinstance(events[-1], RunCompleted)
    assert events[-1].text == "Result: Issue 7: the printer is on fire (open)"
    # The secret reached the server's environment, and no log line.
    assert [s["token"] for s in of_kind(record, "start")] == [SECRET]
    assert SECRET not in caplog.text


async def test_a_tool_that_needs_approval_runs_only_when_approved(
    mcp_service: Any, fake_model: FakeOpenAI, record: Path
) -> None:
    service = await mcp_service(stdio_entry(record))
    fake_model.script = call_then_answer("tracker__close_issue", {"number": 7, "reason": "fixed"})

    handle = await post(service, "close 7")
    approval = await anext(e async for e in handle.events() if isinstance(e, ApprovalRequired))
    assert approval.tool == "tracker__close_issue"
    assert of_kind(record, "call") == []  # nothing reaches the server before the decision
    await service.decide(approval.approval_id, approve=False, decided_by="U_BOB")
    assert isinstance(await handle.result(), RunCompleted)
    assert of_kind(record, "call") == []  # denied: never reached it
    assert "U_BOB denied" in result_text(fake_model.chat_requests[-1])

    handle = await post(service, "close 7 now")
    approval = await anext(e async for e in handle.events() if isinstance(e, ApprovalRequired))
    await service.decide(approval.approval_id, approve=True, decided_by="U_BOB")
    result = await handle.result()
    assert isinstance(result, RunCompleted)
    assert result.text == "Result: Issue 7 closed: fixed"
    assert [c["tool"] for c in of_kind(record, "call")] == ["close_issue"]
    # The approval is audited like any other tool's.
    stored = await service.approval(approval.approval_id)
    assert stored is not None
    assert (stored.status, stored.decided_by) == ("approved", "U_BOB")


async def kill(pid: int) -> None:
    """Kill the process ``pid`` and wait until it has ended (its pidfd, opened first, becomes readable)."""
    fd = os.pidfd_open(pid)
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(fd, lambda: ended.done() or ended.set_result(None))
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        await asyncio.wait_for(ended, timeout=10)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_a_server_killed_mid_life_is_reconnected_and_serves_the_next_run(
    mcp_service: Any,
    fake_model: FakeOpenAI,
    record: Path,
    told: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = await mcp_service(stdio_entry(record))
    fake_model.script = call_then_answer("tracker__find_issue", {"number": 1})
    assert isinstance((await collect(await post(service, "issue 1?")))[-1], RunCompleted)
    (first,) = of_kind(record, "start")
    await kill(first["pid"])

    events = await collect(await post(service, "issue 1 again?"))
    assert isinstance(events[-1], RunCompleted)
    assert events[-1].text == "Result: Issue 1: the printer is on fire (open)"
    starts = of_kind(record, "start")
    assert len(starts) == 2
    assert starts[1]["pid"] != first["pid"]
    assert [c["pid"] for c in of_kind(record, "call")] == [first["pid"], starts[1]["pid"]]
    assert "tracker__find_issue" in offered_tools(fake_model.chat_requests[-1])
    assert told == []  # it was back before the run began: nothing to tell
    assert "MCP server 'tracker': connection lost" in caplog.text


async def test_a_server_that_cannot_start_leaves_the_bot_answering_with_a_note(
    mcp_service: Any, fake_model: FakeOpenAI, caplog: pytest.LogCaptureFixture, told: list[tuple[str, str]]
) -> None:
    caplog.set_level(logging.INFO)
    broken = f"""
[[mcp_servers]]
name = "tracker"
command = {json.dumps(sys.executable)}
args = ["-c", "import sys; sys.exit(3)"]
"""
    service = await mcp_service(broken, tools='["tracker", "get_weather"]')
    for question in ("first?", "second?"):
        events = await collect(await post(service, question))
        assert isinstance(events[-1], RunCompleted)
        assert events[-1].text == f"echo: alice: {question}"
    assert offered_tools(fake_model.chat_requests[-1]) == ["get_weather"]
    note = "The tools of 'tracker' are unavailable right now; answering without them."
    assert told == [(CHANNEL, note), (CHANNEL, note)]
    lines = [r for r in caplog.records if "'tracker'" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "is unavailable" in lines[0].getMessage()

    reply = await handle_command(service, CHANNEL, "/assistant")
    assert "MCP server tracker (down): not listed yet" in reply.text


async def test_a_call_that_times_out_is_a_tool_error_and_the_run_goes_on(
    mcp_service: Any, fake_model: FakeOpenAI, record: Path
) -> None:
    service = await mcp_service(stdio_entry(record, extra="timeout_seconds = 0.5"))
    fake_model.script = call_then_answer("tracker__slow_report", {"seconds": 30})
    events = await collect(await post(service, "the report, please"))
    result = result_text(fake_model.chat_requests[-1])
    assert "did not answer within 0.5 seconds" in result
    assert result.startswith("The tool failed (")
    assert isinstance(events[-1], RunCompleted)
    assert any(isinstance(e, ToolCallFinished) and "did not answer" in e.output for e in events)

    fake_model.script = call_then_answer("tracker__find_issue", {"number": 2})  # the server still serves
    events = await collect(await post(service, "issue 2?"))
    assert isinstance(events[-1], RunCompleted)
    assert events[-1].text == "Result: Issue 2: the printer is on fire (open)"


async def test_the_policy_rules_mcp_tools_by_the_name_the_model_sees(
    mcp_service: Any, fake_model: FakeOpenAI, record: Path
) -> None:
    policy = '[policy.tools.tracker__close_issue]\nuse = ["console:bob"]\n'
    service = await mcp_service(stdio_entry(record) + policy)
    fake_model.script = call_then_answer("tracker__close_issue", {"number": 7, "reason": "fixed"})
    events = await collect(await post(service, "close 7"))  # alice may not use it
    assert "tracker__close_issue" not in offered_tools(fake_model.chat_requests[0])
    assert "tracker__find_issue" in offered_tools(fake_model.chat_requests[0])
    assert "Refused: the person who asked may not use tracker__close_issue" in result_text(fake_model.chat_requests[-1])
    assert isinstance(events[-1], RunCompleted)
    assert of_kind(record, "call") == []


async def test_assistant_command_shows_the_mcp_tools(mcp_service: Any, record: Path) -> None:
    service = await mcp_service(stdio_entry(record), tools='["tracker.find_issue", "tracker.close_issue"]')
    reply = await handle_command(service, CHANNEL, "/assistant")
    assert "MCP server tracker (up): tracker__find_issue, tracker__close_issue (needs approval)" in reply.text
    assert "slow_report" not in reply.text


# -- streamable HTTP --------------------------------------------------------------------------------


class HttpServer:
    """The fake MCP server as a process of the test's own, serving streamable HTTP on 127.0.0.1."""

    def __init__(self, record: Path) -> None:
        self.record = record
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, str(FAKE_SERVER), str(self.record), "http", str(self.port),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "TRACKER_TOKEN": ""},
        )  # fmt: skip
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout=30)
        self.port = int(line)  # printed once its socket listens

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture
async def http_server(record: Path) -> AsyncIterator[HttpServer]:
    server = HttpServer(record)
    await server.start()
    yield server
    await server.stop()


def http_entry(url: str) -> str:
    return f"""
[[mcp_servers]]
name = "tracker"
url = "{url}"
headers = {{ Authorization = "Bearer ${{TRACKER_TOKEN}}" }}
"""


async def test_a_streamable_http_server_gets_its_secret_header_and_serves_calls(
    mcp_service: Any,
    fake_model: FakeOpenAI,
    http_server: HttpServer,
    caplog: pytest.LogCaptureFixture,
    told: list[tuple[str, str]],
) -> None:
    caplog.set_level(logging.DEBUG)
    service = await mcp_service(http_entry(http_server.url))
    fake_model.script = call_then_answer("tracker__find_issue", {"number": 3})
    events = await collect(await post(service, "issue 3?"))
    assert isinstance(events[-1], RunCompleted)
    assert events[-1].text == "Result: Issue 3: the printer is on fire (open)"
    seen = {r["authorization"] for r in of_kind(http_server.record, "http")}
    assert seen == {f"Bearer {SECRET}"}
    assert SECRET not in caplog.text

    # The server restarts on the same port: streamable HTTP has no connection to lose, the next run is served.
    await http_server.stop()
    await http_server.start()
    fake_model.script = call_then_answer("tracker__find_issue", {"number": 4})
    events = await collect(await post(service, "issue 4?"))
    assert isinstance(events[-1], RunCompleted)
    assert events[-1].text == "Result: Issue 4: the printer is on fire (open)"

    # It goes away: the next run is answered without its tools, and told; once it is back, it is used again.
    await http_server.stop()
    fake_model.script = call_then_answer("tracker__find_issue", {"number": 5})
    events = await collect(await post(service, "issue 5?"))
    assert told == [(CHANNEL, "The tools of 'tracker' are unavailable right now; answering without them.")]
    assert "tracker__find_issue" not in offered_tools(fake_model.chat_requests[-1])
    assert isinstance(events[-1], RunCompleted)
    await http_server.start()
    while not service.mcp.statuses(["tracker"])[0].up:  # retried in the background, with backoff
        await asyncio.sleep(0.05)
    events = await collect(await post(service, "issue 5 now?"))
    assert events[-1].text == "Result: Issue 5: the printer is on fire (open)"
    warnings = [r.getMessage() for r in caplog.records if r.name == "core.tools.mcp" and r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # lost, then unavailable: not one per run or per retry
    assert SECRET not in caplog.text


# -- the assistants file ----------------------------------------------------------------------------


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "assistants.toml"
    path.write_text(text)
    return load_assistants(path, default_model="m")


def test_an_unset_variable_fails_at_start_naming_the_server_and_the_variable(tmp_path: Path) -> None:
    config = load(tmp_path, assistants(stdio_entry(tmp_path / "r")))
    (server,) = config.mcp_servers
    with pytest.raises(ConfigError, match=r"\('tracker'\): key 'env.TRACKER_TOKEN' needs the environment variable "
                       r"TRACKER_TOKEN, which is not set"):  # fmt: skip
        server.resolve({})
    resolved = server.resolve({"TRACKER_TOKEN": SECRET})
    assert resolved.env == {"TRACKER_TOKEN": SECRET}
    assert SECRET not in repr(resolved)
    assert SECRET not in repr(server)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('name = "t"\ncommand = "x"\nurl = "http://a"', "give either 'command'"),
        ('name = "t"', "give either 'command'"),
        ('name = "t__x"\ncommand = "x"', "key 'name' is required"),
        ('name = "t"\ncommand = "x"\nport = 3', "unknown key 'port'"),
        ('name = "t"\nurl = "ftp://a"', "key 'url' must be an http"),
        ('name = "t"\nurl = "http://a"\ntransport = "ws"', "key 'transport' must be"),
        ('name = "t"\ncommand = "x"\nenv = { API_KEY = "sk-literal" }', "key 'env.API_KEY': looks like a secret"),
        ('name = "t"\nurl = "http://a"\nheaders = { Authorization = "Bearer x" }', "'headers.Authorization': looks"),
        ('name = "t"\ncommand = "x"\nenv = { A = "${not a var}" }', "is not a ${VAR} reference"),
        ('name = "t"\ncommand = "x"\ntimeout_seconds = 0', "key 'timeout_seconds' must be"),
        ('name = "t"\ncommand = "x"\nneeds_approval = "yes"', "key 'needs_approval' must be"),
        ('name = "t"\ncommand = "x"\ntools = ["a"]\nneeds_approval = ["b"]', "names b, which its key 'tools'"),
    ],
)
def test_a_bad_entry_fails_at_start_naming_the_key(tmp_path: Path, entry: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"assistants\.toml: \[\[mcp_servers\]\] #1") as raised:
        load(tmp_path, f"[[mcp_servers]]\n{entry}\n")
    assert problem in str(raised.value)


def test_assistants_and_the_policy_name_mcp_tools(tmp_path: Path) -> None:
    servers = '[[mcp_servers]]\nname = "tracker"\ncommand = "x"\ntools = ["find_issue"]\n'
    policy = '[policy.tools.tracker__find_issue]\nuse = ["slack:U1"]\n'
    config = load(tmp_path, assistants(servers, '["tracker.find_issue"]') + policy)
    config.check_tools([])
    with pytest.raises(
        ConfigError, match=r"'tracker\.close_issue': MCP server 'tracker' offers only its tools find_issue"
    ):
        load(tmp_path, assistants(servers, '["tracker.close_issue"]')).check_tools([])
    with pytest.raises(ConfigError, match="unknown tool 'wiki'"):
        load(tmp_path, assistants(servers, '["wiki"]')).check_tools([])
    assert public_name("tracker", "find.issue/v2") == "tracker__find_issue_v2"


def test_the_commented_example_parses(tmp_path: Path) -> None:
    example = (Path(__file__).parent.parent / "assistants.example.toml").read_text()
    start = example.index("# [[mcp_servers]]")
    block = example[start : example.index("\n\n", start)]
    config = load(tmp_path, "\n".join(line.removeprefix("# ").removeprefix("#") for line in block.splitlines()))
    assert [(s.name, s.transport) for s in config.mcp_servers] == [("tracker", "stdio"), ("wiki", "streamable_http")]
    assert config.mcp_servers[0].approval("close_issue")
    assert not config.mcp_servers[0].approval("find_issue")
