"""Real processes on one database: the API and the console, the console killed with SIGKILL mid-answer.

Every question is answered exactly once, and the run of the process that stays alive is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text
from tests.test_console import ROOT, console_env, start_console


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


async def test_console_killed_mid_answer_beside_a_live_api_process(tmp_path: Path) -> None:
    script = Script()
    processes: list[asyncio.subprocess.Process] = []
    async with FakeOpenAI(script) as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="sk-test-not-a-real-key")
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

    with sqlite3.connect(tmp_path / "console.db") as db:
        statuses = dict(db.execute("SELECT id, status FROM runs").fetchall())
        answers = [r[0] for r in db.execute("SELECT text FROM messages WHERE role = 'assistant' ORDER BY id")]
    assert sorted(statuses.values()) == ["completed", "completed"]
    assert sorted(answers) == ["answer to api question", "answer to console question"]
