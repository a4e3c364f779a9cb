"""``python -m bots``: one process, one core, Slack, Discord and the API on one port, over their real protocols.

The process runs as a subprocess against stand-ins on 127.0.0.1 (the scripted model, the fake Slack Web API,
the fake Discord REST API and gateway) and is reached as the platforms reach it: signed Slack events, the
openai SDK, Discord's gateway. Waiting is on its log lines and on the fakes' records, never on a sleep.
Questions stored by a process that is gone (the database of a crash) are answered by it where they were asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from dotenv import dotenv_values

from bots.platforms import Configured, Router
from core.errors import ConfigError
from core.handles import RunHandle
from core.store import Store
from core.store.processes import ProcessStore
from tests.fakes.discord_server import BOT_TOKEN, CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text
from tests.fakes.slack_server import TEAM_ID, FakeSlack, app_mention, event_callback, signed_headers
from tests.test_adopted_runs import leave_question
from tests.test_entry_points import ROOT, clean_env, run
from tests.test_slack_health import non_loopback_address

SECRET = "one-process-signing-secret"
SLACK_CHANNEL = "C_GENERAL"
ALICE = "U_ALICE"
API_KEY = "tl-one-process-key-0123456789"


def answer(request: dict[str, Any]) -> Reply:
    return Reply(text=f"Answer to: {last_user_text(request).split(': ', 1)[-1]}", chunk_delay=0.001)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Bots:
    """``python -m bots`` as a subprocess, its log lines collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], cwd: Path) -> Bots:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            async with self._changed:
                self.lines.append(line.decode())
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def wait_line(self, needle: str, timeout: float = 30) -> str:
        """The first log line with ``needle`` (fails when the process ends first)."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if self._reader.done():
                    pytest.fail(f"python -m bots ended before logging {needle!r}:\n{self.log}")
                await self._changed.wait()

    async def stop(self) -> int:
        """SIGTERM, as a process manager stops it; returns its exit code."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.process.wait()
            await self._reader
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


@pytest.fixture
async def started() -> AsyncIterator[list[Bots]]:
    """Every ``python -m bots`` a test starts; killed at the end if still running."""
    processes: list[Bots] = []
    yield processes
    for process in processes:
        await process.kill()


async def leave_notice(db: Path, channel: str, text: str) -> None:
    """A message for a channel that a process could not deliver (it serves other platforms, or it stopped)."""
    store = await Store.open(db)
    try:
        await ProcessStore(store, platforms=None, lease_seconds=15).queue_notice(channel, text)
    finally:
        await store.close()


def slack_answers(slack: FakeSlack, thread_ts: str) -> list[str]:
    """The bot's finished messages in the thread of ``thread_ts``."""
    return [m.text for m in slack.thread(SLACK_CHANNEL, thread_ts) if not m.streaming and not m.blocks]


async def wait_slack_answer(slack: FakeSlack, ts: str, text: str) -> None:
    """Until the answer stands in the question's thread and the bot took its reaction off the question."""

    def done() -> bool:
        unreacted = any(c.method == "reactions.remove" and c.params.get("timestamp") == ts for c in slack.calls)
        return text in slack_answers(slack, ts) and unreacted

    try:
        await slack.wait_until(done, timeout=30, what=f"{text!r} in the thread of {ts}")
    except TimeoutError as exc:  # what the thread holds instead says why
        shown = [(m.text, m.streaming, bool(m.blocks)) for m in slack.thread(SLACK_CHANNEL, ts)]
        raise TimeoutError(f"{exc}; the thread holds (text, streaming, blocks): {shown}") from None


def discord_replies(fake: FakeDiscord, question_id: str) -> list[dict[str, Any]]:
    return [
        m for m in fake.bot_messages(CHANNEL_ID) if (m.get("message_reference") or {}).get("message_id") == question_id
    ]


async def wait_discord_answer(fake: FakeDiscord, question_id: str, text: str) -> None:
    def done() -> bool:
        return any(m["content"] == text for m in discord_replies(fake, question_id))

    await fake.wait_until(done, timeout=30, what=f"{text!r} in reply to {question_id}")


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json(content_type=None)


# -- every platform in one process -------------------------------------------------------------------------


async def test_slack_discord_and_the_api_in_one_process_on_one_port(tmp_path: Path, started: list[Bots]) -> None:
    async with FakeOpenAI(answer) as model, FakeSlack(members={SLACK_CHANNEL: [ALICE]}) as slack, FakeDiscord() as fake:
        db = tmp_path / "data" / "entry.db"
        # A crash left two questions unanswered: the process answers each where it was asked.
        left_ts = "1690000000.000100"
        await leave_question(db, f"slack:{TEAM_ID}:{SLACK_CHANNEL}", left_ts, "left in slack")
        left_discord = fake.add_message("left in discord")
        await leave_question(db, f"discord:{GUILD_ID}:{CHANNEL_ID}", left_discord["id"], "left in discord")
        # And a message for each platform's channel, waiting for a process that serves it: each goes to its own.
        await leave_notice(db, f"slack:{TEAM_ID}:{SLACK_CHANNEL}", "a notice for slack")
        await leave_notice(db, f"discord:{GUILD_ID}:{CHANNEL_ID}", "a notice for discord")

        port = free_port()
        env = clean_env(
            tmp_path,
            OPENAI_BASE_URL=model.base_url,
            OPENAI_API_KEY="sk-test-not-a-real-key",
            SLACK_BOT_TOKEN=slack.bot_token,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            DISCORD_TOKEN=BOT_TOKEN,
            DISCORD_API_URL=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            THREADLINE_API="on",
            PORT=str(port),
            THREADLINE_HTTP_HOST="127.0.0.1",
            THREADLINE_LEASE_SECONDS="3",  # notices that could not be delivered yet are tried again every second
        )
        bots = await Bots.start(env, tmp_path)
        started.append(bots)
        origin = f"http://127.0.0.1:{port}"
        assert f"serving Slack (HTTP mode) on {origin}/slack/events" in await bots.wait_line("serving Slack")
        assert "serving Discord as threadline" in await bots.wait_line("serving Discord")
        api_line = await bots.wait_line("serving the Assistants-compatible API")
        assert f"on {origin}/v1 (no keys: this machine only)" in api_line
        await bots.wait_line(f"health and metrics on {origin}/healthz")

        # What the process that died left: answered in the question's Slack thread, and as a Discord reply.
        await wait_slack_answer(slack, left_ts, "Answer to: left in slack")
        await wait_discord_answer(fake, left_discord["id"], "Answer to: left in discord")

        # Slack: a signed event at /slack/events, answered in the mention's thread.
        ts = "1690000001.000100"
        body = json.dumps(event_callback(app_mention(SLACK_CHANNEL, ALICE, "<@U_BOT> hello slack", ts), "Ev1")).encode()
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{origin}/slack/events", data=body, headers=signed_headers(SECRET, body)) as sent:
                assert sent.status == 200
            unsigned = {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=00"}
            async with http.post(f"{origin}/slack/events", data=body, headers=unsigned) as refused:
                assert refused.status == 401
        await wait_slack_answer(slack, ts, "Answer to: hello slack")

        # The API: the openai SDK at /v1 of the same port.
        async with openai.AsyncOpenAI(base_url=f"{origin}/v1", api_key="unused", max_retries=0) as client:
            helper = await client.beta.assistants.create(model="fake-model", instructions="Help.")
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "hello api"}])
            async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=helper.id) as stream:
                await stream.until_done()
                api_run = await stream.get_final_run()
            assert api_run.status == "completed"
            messages = (await client.beta.threads.messages.list(thread.id, run_id=api_run.id)).data
            content = messages[0].content[0]
            assert content.type == "text"
            assert content.text.value == "Answer to: hello api"

        # Discord: a mention over the gateway, answered with a reply.
        question = await fake.send_message("hello discord")
        await wait_discord_answer(fake, question["id"], "Answer to: hello discord")

        def slack_notices() -> list[str]:
            return [m.text for m in slack.messages.values() if m.thread_ts is None]

        def discord_notices() -> list[str]:
            return [m["content"] for m in fake.bot_messages(CHANNEL_ID) if not m.get("message_reference")]

        await slack.wait_until(lambda: bool(slack_notices()), timeout=20, what="the notice for Slack")
        await fake.wait_until(lambda: bool(discord_notices()), timeout=20, what="the notice for Discord")

        assert await get(f"{origin}/healthz") == (200, {"status": "ok"})
        status, ready = await get(f"{origin}/readyz")
        assert (status, ready) == (
            200,
            {"status": "ready", "checks": {"database": "ok", "platform": "ok", "model": "ok"}},
        )
        async with aiohttp.ClientSession() as http, http.get(f"{origin}/metrics") as response:
            assert response.status == 200
            assert 'threadline_runs_total{status="completed"}' in await response.text()

        assert await bots.stop() == 0
        # Each question answered once, in its place: nothing at the top level of the Slack channel.
        assert slack_answers(slack, left_ts) == ["Answer to: left in slack"]
        assert slack_answers(slack, ts) == ["Answer to: hello slack"]
        assert slack_notices() == ["a notice for slack"]  # nothing else at the top level of the Slack channel
        assert [m["content"] for m in discord_replies(fake, left_discord["id"])] == ["Answer to: left in discord"]
        assert discord_notices() == ["a notice for discord"]
        assert len(fake.bot_messages(CHANNEL_ID)) == 3
    assert "Traceback" not in bots.log, bots.log
    assert slack.bot_token not in bots.log
    assert BOT_TOKEN not in bots.log


async def test_the_api_with_keys_beside_slack_needs_its_key(tmp_path: Path, started: list[Bots]) -> None:
    async with FakeOpenAI(answer) as model, FakeSlack() as slack:
        port = free_port()
        env = clean_env(
            tmp_path,
            OPENAI_BASE_URL=model.base_url,
            SLACK_BOT_TOKEN=slack.bot_token,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            THREADLINE_API_KEYS=API_KEY,
            PORT=str(port),
            THREADLINE_HTTP_HOST="127.0.0.1",
        )
        bots = await Bots.start(env, tmp_path)
        started.append(bots)
        assert "(1 key)" in await bots.wait_line("serving the Assistants-compatible API")
        await bots.wait_line("health and metrics on")
        base_url = f"http://127.0.0.1:{port}/v1"
        async with openai.AsyncOpenAI(base_url=base_url, api_key="wrong-key-0123456789", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.beta.assistants.list()
        async with openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0) as client:
            assert (await client.beta.assistants.list()).data == []
        assert await bots.stop() == 0
    assert API_KEY not in bots.log


async def test_slack_in_socket_mode_and_the_api_with_health_on_port(tmp_path: Path, started: list[Bots]) -> None:
    async with FakeOpenAI(answer) as model, FakeSlack() as slack:
        port = free_port()
        env = clean_env(
            tmp_path,
            OPENAI_BASE_URL=model.base_url,
            SLACK_BOT_TOKEN=slack.bot_token,
            SLACK_APP_TOKEN=slack.app_token,
            SLACK_API_URL=slack.api_url,
            THREADLINE_API="on",
            PORT=str(port),
        )
        bots = await Bots.start(env, tmp_path)
        started.append(bots)
        await bots.wait_line("serving Slack (Socket Mode)")
        # Nothing on the port is for other machines (Socket Mode, an API without keys): it listens on loopback.
        origin = f"http://127.0.0.1:{port}"
        await bots.wait_line(f"health and metrics on {origin}/healthz")
        await slack.wait_connected()
        ts = "1690000002.000100"
        event = event_callback(app_mention(SLACK_CHANNEL, ALICE, "<@U_BOT> via socket", ts), "EvS1")
        await slack.wait_for_ack(await slack.socket_send("events_api", event))
        await wait_slack_answer(slack, ts, "Answer to: via socket")
        status, ready = await get(f"{origin}/readyz")
        assert (status, ready["checks"]["platform"]) == (200, "ok")
        async with openai.AsyncOpenAI(base_url=f"{origin}/v1", api_key="unused", max_retries=0) as client:
            assert (await client.beta.assistants.list()).data == []
        assert await bots.stop() == 0
    assert "Traceback" not in bots.log, bots.log


async def test_an_api_without_keys_beside_slacks_http_mode_answers_this_machine_only(
    tmp_path: Path, started: list[Bots]
) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to make a request from")
    async with FakeOpenAI(answer) as model, FakeSlack() as slack:
        port = free_port()
        env = clean_env(
            tmp_path,
            OPENAI_BASE_URL=model.base_url,
            SLACK_BOT_TOKEN=slack.bot_token,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            THREADLINE_API="on",
            PORT=str(port),
            THREADLINE_HTTP_HOST="0.0.0.0",  # Slack's events come from other machines
        )
        bots = await Bots.start(env, tmp_path)
        started.append(bots)
        await bots.wait_line("health and metrics on http://0.0.0.0")
        assert "/v1 answers clients on this machine only" in await bots.wait_line("the API has no keys")
        status, body = await get(f"http://{address}:{port}/v1/assistants")
        assert status == 403
        assert "THREADLINE_API_KEYS" in body["error"]["message"]
        assert (await get(f"http://{address}:{port}/readyz"))[0] == 403  # as on Slack's own server
        assert (await get(f"http://{address}:{port}/healthz"))[0] == 200
        assert (await get(f"http://127.0.0.1:{port}/v1/assistants"))[0] == 200
        assert await bots.stop() == 0


# -- what the environment asks for, and where messages go (pure logic) -----------------------------------------


def test_the_api_is_served_with_keys_or_when_switched_on_and_never_when_off() -> None:
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    assert Configured.from_env({**slack, "THREADLINE_API_KEYS": API_KEY}).platforms == {"slack", "api"}
    assert Configured.from_env({**slack, "THREADLINE_API": "ON"}).platforms == {"slack", "api"}
    assert Configured.from_env({**slack, "THREADLINE_API": "off", "THREADLINE_API_KEYS": API_KEY}).platforms == {
        "slack"
    }
    with pytest.raises(ConfigError, match="Nothing to serve"):
        Configured.from_env({"THREADLINE_API": "off", "THREADLINE_API_KEYS": API_KEY})
    with pytest.raises(ConfigError, match="Nothing to serve"):  # .env.example as it is: every value empty
        Configured.from_env({k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()})


def test_slack_installed_into_many_workspaces_is_served_and_its_secrets_kept_from_logs() -> None:
    many = {
        "SLACK_CLIENT_ID": "1.2",
        "SLACK_CLIENT_SECRET": "cs",
        "SLACK_STATE_SECRET": "ss",
        "SLACK_SIGNING_SECRET": "s",
    }
    configured = Configured.from_env(many)
    assert configured.platforms == {"slack"}
    assert {"cs", "ss", "s"} <= set(configured.secrets)
    assert configured.public  # HTTP mode: Slack reaches /slack/install and /slack/oauth_redirect


def test_the_port_listens_to_other_machines_only_for_what_is_for_them() -> None:
    http_mode = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}
    socket_mode = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    assert Configured.from_env(http_mode).public
    assert Configured.from_env({"THREADLINE_API_KEYS": API_KEY}).public
    assert not Configured.from_env({**socket_mode, "THREADLINE_API": "on", "DISCORD_TOKEN": "t"}).public
    configured = Configured.from_env({**http_mode, "DISCORD_TOKEN": "discord-secret", "THREADLINE_API_KEYS": API_KEY})
    assert {"xoxb-1", "s", "discord-secret", API_KEY} <= set(configured.secrets)  # kept out of the log


async def test_the_router_sends_each_channel_to_its_platform() -> None:
    router = Router(frozenset({"slack", "discord", "api"}))
    told: list[tuple[str, str, str]] = []
    shown: list[tuple[str, str, str | None]] = []

    def front(name: str) -> tuple[Any, Any]:
        async def notify(channel: str, text: str) -> None:
            told.append((name, channel, text))

        async def render(handle: RunHandle, msg_id: str | None) -> None:
            shown.append((name, handle.run_id, msg_id))

        return notify, render

    with pytest.raises(RuntimeError, match="slack is not connected"):
        await router.notify("slack:T1:C1", "too early")  # the core keeps it and tries again
    waiting = asyncio.create_task(router.render(RunHandle("run_1", "discord:G1:C1"), "42"))
    router.attach("slack", *front("slack"))
    await router.notify("slack:T1:C1", "to slack")
    router.attach("api", None, None)
    await router.notify("api:owner:thread", "nobody reads this")  # dropped: API clients read their runs
    assert not waiting.done()  # a run taken over waits for its platform
    router.attach("discord", *front("discord"))
    await waiting
    await router.notify("discord:G1:C1", "to discord")
    assert told == [("slack", "slack:T1:C1", "to slack"), ("discord", "discord:G1:C1", "to discord")]
    assert shown == [("discord", "run_1", "42")]


# -- start-up problems: one line naming the variable, exit 2 ------------------------------------------------


def assert_one_line_naming(err: str, variable: str) -> None:
    assert "Traceback" not in err, err
    failures = [line for line in err.splitlines() if " ERROR " in line or line.startswith("threadline: ")]
    assert len(failures) == 1, err
    assert variable in failures[0], err


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound here without listening, so that nobody takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-test"}, "SLACK_SIGNING_SECRET"),  # HTTP mode without its secret
        ({"SLACK_BOT_TOKEN": "not-a-bot-token", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "xoxb-wrong-kind"}, "SLACK_APP_TOKEN"),
        ({"DISCORD_TOKEN": "t", "DISCORD_GUILD_IDS": "my server"}, "DISCORD_GUILD_IDS"),
        ({"THREADLINE_API": "maybe"}, "THREADLINE_API"),
        ({"THREADLINE_API_KEYS": "short"}, "THREADLINE_API_KEYS"),
        ({"THREADLINE_API": "on", "PORT": "http"}, "PORT"),
    ],
)
async def test_a_platform_configured_wrong_stops_with_one_line_naming_the_variable(
    tmp_path: Path, extra: dict[str, str], variable: str
) -> None:
    code, _out, err = await run("bots", env=clean_env(tmp_path, **extra), cwd=tmp_path)
    assert code == 2
    assert_one_line_naming(err, variable)
    assert not (tmp_path / "data").exists()  # stopped before it opened anything


async def test_refused_tokens_stop_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    async with FakeSlack() as slack, FakeDiscord() as fake:
        common = {"OPENAI_API_KEY": "sk-test-not-a-real-key"}
        slack_env = clean_env(
            tmp_path, SLACK_BOT_TOKEN="xoxb-revoked", SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=slack.api_url, **common
        )
        discord_env = clean_env(
            tmp_path,
            DISCORD_TOKEN="revoked-token",
            DISCORD_API_URL=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            **common,
        )
        for env, variable, secret in [
            (slack_env, "SLACK_BOT_TOKEN", "xoxb-revoked"),
            (discord_env, "DISCORD_TOKEN", "revoked-token"),
        ]:
            code, _out, err = await run("bots", env=env, cwd=tmp_path)
            assert code == 2
            assert_one_line_naming(err, variable)
            assert "refused" in err
            assert secret not in err


async def test_a_busy_port_stops_with_one_line_naming_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(tmp_path, THREADLINE_API="on", PORT=str(port), OPENAI_API_KEY="sk-test-not-a-real-key")
        code, _out, err = await run("bots", env=env, cwd=tmp_path)
    assert code == 2
    assert_one_line_naming(err, "PORT")
    assert f"127.0.0.1:{port}" in err


async def test_nothing_configured_says_which_variables_to_set(tmp_path: Path) -> None:
    code, out, err = await run("bots", env=clean_env(tmp_path), cwd=tmp_path)
    assert code == 2
    assert out == ""
    assert_one_line_naming(err, "SLACK_BOT_TOKEN")
    for variable in ("DISCORD_TOKEN", "THREADLINE_API_KEYS", "THREADLINE_API=on"):
        assert variable in err
    assert not (tmp_path / "data").exists()


async def test_help_prints_usage_and_starts_nothing(tmp_path: Path, closed_port: int) -> None:
    env = clean_env(
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=f"http://127.0.0.1:{closed_port}/api/",
        THREADLINE_API="on",
    )
    code, out, err = await run("bots", "--help", env=env, cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith("usage: python -m bots")
    for variable in ("SLACK_BOT_TOKEN", "DISCORD_TOKEN", "THREADLINE_API_KEYS", "THREADLINE_API", "PORT"):
        assert variable in out
    assert not (tmp_path / "data").exists()


def test_the_procfile_runs_one_process_for_every_platform() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert lines[0] == "bot: .venv/bin/python -m bots"
    assert [line for line in lines if line and not line.startswith("#")] == [lines[0]]
