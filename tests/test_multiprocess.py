"""Real processes on one database: the API and the console, the console killed with SIGKILL mid-answer; Discord
killed with SIGKILL mid-answer, the answer finished by the next process.

Every question is answered exactly once, and the run of the process that stays alive is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from bots.discord.app import DiscordBot
from bots.discord.config import DiscordSettings
from core.settings import Settings
from tests.fakes.discord_server import BOT_TOKEN, CHANNEL_ID, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text
from tests.helpers import StoreDatabase
from tests.test_console import ROOT, console_env, start_console
from tests.test_entry_points import clean_env
from tests.test_one_process import Bots


class Script:
    """The console's first question is never answered (its process is killed while it waits); the API's
    question waits until the test lets it go; everything else is answered at once."""

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.api_release = asyncio.Event()
        self.changed = asyncio.Event()

    async def __call__(self, request: dict[str, Any]) -> Reply:
        question = last_user_text(request).split(": ", 1)[-1]
        self.asked[question] = self.asked.get(question, 0) + 1
        self.changed.set()
        if question == "console question" and self.asked[question] == 1:
            await asyncio.Event().wait()  # the connection is cut when the process dies
        if question == "api question":
            await self.api_release.wait()
        return Reply(text=f"answer to {question}")

    async def wait_asked(self, question: str, times: int = 1) -> None:
        async with asyncio.timeout(20):
            while self.asked.get(question, 0) < times:
                self.changed.clear()
                await self.changed.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_api(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.api", env={**env, "PORT": str(port), "PYTHONPATH": str(ROOT)}, cwd=str(ROOT)
    )
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            if process.returncode is not None:
                pytest.fail("python -m bots.api exited at start")
            await asyncio.sleep(0.05)


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    async with asyncio.timeout(30):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"output ended before {needle!r}; it was {seen!r}")
            seen.append(line)
            if needle in line:
                return


async def test_console_killed_mid_answer_beside_a_live_api_process(tmp_path: Path, database: StoreDatabase) -> None:
    script = Script()
    processes: list[asyncio.subprocess.Process] = []
    async with FakeOpenAI(script) as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="sk-test-not-a-real-key")
        env.update(database.env())
        env["THREADLINE_CODE_INTERPRETER"] = "off"
        port = free_port()
        try:
            api = await start_api(env, port)
            processes.append(api)
            client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            assistant = await client.beta.assistants.create(model="fake-model", instructions="Help.")
            thread = await client.beta.threads.create(messages=[{"role": "user", "content": "api question"}])
            api_run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
            await script.wait_asked("api question")

            first = await start_console(env, tmp_path)
            processes.append(first)
            assert first.stdin is not None
            first.stdin.write(b"console question\n")
            await first.stdin.drain()
            await script.wait_asked("console question")
            first.send_signal(signal.SIGKILL)
            await first.wait()

            second = await start_console(env, tmp_path)  # the console again, on the same database
            processes.append(second)
            assert second.stdout is not None
            seen: list[str] = []
            await read_until(second.stdout, "answer to console question", seen)
            assert not any("restarted" in line for line in seen)
            assert script.asked["console question"] == 2  # answered again from the start, once

            assert (await client.beta.threads.runs.retrieve(api_run.id, thread_id=thread.id)).status == "in_progress"
            script.api_release.set()
            async with asyncio.timeout(20):
                while (run := await client.beta.threads.runs.retrieve(api_run.id, thread_id=thread.id)).status in (
                    "queued",
                    "in_progress",
                ):
                    await asyncio.sleep(0.05)
            assert run.status == "completed"
            assert run.last_error is None
            await client.close()
            assert second.stdin is not None
            second.stdin.close()
            assert await asyncio.wait_for(second.wait(), timeout=20) == 0
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    statuses = dict(database.rows("SELECT id, status FROM runs"))
    answers = [r[0] for r in database.rows("SELECT text FROM messages WHERE role = 'assistant' ORDER BY id")]
    assert sorted(statuses.values()) == ["completed", "completed"]
    assert sorted(answers) == ["answer to api question", "answer to console question"]


HALF = "Once upon a time, in a channel far away,"
FULL = HALF + " a bot was stopped mid-sentence, and another one finished the story."


async def kept_reply_ref(database: StoreDatabase) -> str:
    """The messages the process answering the only run keeps with it, once it has kept them."""

    def read() -> str | None:
        rows = database.rows("SELECT reply_ref FROM runs")
        return str(rows[0][0]) if rows and rows[0][0] else None

    async with asyncio.timeout(10):
        while (ref := await asyncio.to_thread(read)) is None:
            await asyncio.sleep(0.05)  # another process writes it: nothing here to wait on
    return ref


async def test_discord_killed_mid_answer_the_next_process_finishes_it_in_the_same_message(
    tmp_path: Path, settings: Settings, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    """``python -m bots`` serving Discord is killed with SIGKILL while it writes an answer (no tool started); the
    next process on the database answers again from the start, in the message the first had begun: no second
    message, nothing left half-written."""
    asked: list[str] = []

    def script(request: dict[str, Any]) -> Reply:
        asked.append(last_user_text(request))
        if len(asked) == 1:  # the first process: the start of the answer, then silence until it is killed
            return Reply(text=HALF, chunk_delay=0.01, stall=True)
        return Reply(text=FULL, chunk_delay=0.001)

    fake_model.script = script
    async with FakeDiscord() as fake:
        fake.patch_discord()
        env = clean_env(
            tmp_path,
            OPENAI_BASE_URL=fake_model.base_url,
            OPENAI_API_KEY="sk-test-not-a-real-key",
            THREADLINE_ASSISTANTS=str(settings.assistants_file),
            DISCORD_TOKEN=BOT_TOKEN,
            DISCORD_API_URL=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            DISCORD_EDIT_INTERVAL="0.2",
            **database.env(),
        )
        first = await Bots.start(env, tmp_path)
        try:
            await first.wait_line("serving Discord")
            question = await fake.send_message("tell me a story")
            await fake.wait_until(
                lambda: [m["content"] for m in fake.bot_messages(CHANNEL_ID)] == [HALF],
                timeout=20,
                what="the first process's half-written answer",
            )
            [half] = fake.bot_messages(CHANNEL_ID)
            assert await kept_reply_ref(database) == half["id"]  # the message it writes into, kept with the run
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()
        finally:
            await first.kill()

        discord_settings = DiscordSettings(
            token=BOT_TOKEN, api_url=fake.api_base, gateway_url=fake.gateway_url, edit_interval=0.2
        )
        second = await DiscordBot.start(settings, discord_settings, guild_ready_timeout=0.05)
        try:
            await fake.wait_until(
                lambda: any(m["content"] == FULL for m in fake.bot_messages(CHANNEL_ID)),
                timeout=20,
                what="the answer finished by the second process",
            )
            await second.service.wait_idle()
            await second.client.replies.wait_idle()
        finally:
            await second.stop()
        [answer] = fake.bot_messages(CHANNEL_ID)
        shown = fake.history[int(half["id"])]

    assert answer["id"] == half["id"]  # the same message, finished
    assert answer["content"] == FULL
    assert answer["message_reference"]["message_id"] == question["id"]
    assert HALF in shown
    assert shown[-1] == FULL
    assert fake.deleted == []
    assert len(asked) == 2  # answered again from the start, once
