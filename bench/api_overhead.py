"""The Assistants-compatible API's overhead: one turn through the API vs the same turn through the core.

    .venv/bin/python -m bench.api_overhead [--turns 60] [--warmup 5] [--chunk-delay 0.02]

One scripted model server (:mod:`bench.fake_server`, its own process, 127.0.0.1) answers every
request with the same ~200-character text, four characters a chunk, ``--chunk-delay`` apart.

* C, the console's path: :meth:`Threadline.post` on a service in this process, then the run's
  events until ``RunCompleted`` (what ``python -m bots.console`` does, less the printing).
* P, create-run-and-poll: ``python -m bots.api`` in its own process, as an operator runs it; the
  openai SDK adds the message (``messages.create``), runs ``runs.create_and_poll`` (the server's
  ``openai-poll-after-ms`` sets the polling pace) and reads the answer (``messages.list``).
* S, streamed: the same, with ``runs.stream`` and an ``AssistantEventHandler`` until the stream's
  end; first text is the first ``on_text_delta``.

Every turn is a new message on the side's own thread, so C and the API build the same context.
The sides alternate in a random order in every round, after a warm-up. Reported: median and
p99 of the time to the complete answer (and to the first text, for C and S), and the ratios of
medians and of p99s to C, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
from openai.lib.streaming import AsyncAssistantEventHandler
from typing_extensions import override

from bench.common import REPO, bench_settings, forbid_non_loopback, machine, model_server, summary, write_result
from core.events import RunCompleted, TextDelta
from core.models import Author, Incoming
from core.service import Threadline

__all__ = ["main"]

API_KEY = "bench-api-key-0123456789abcdef"
REPLY_CHARS = 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def api_process(model_url: str, db_path: Path) -> AsyncIterator[str]:
    """``python -m bots.api`` on a free loopback port; yields its base URL once /healthz answers."""
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "OPENAI_BASE_URL": model_url,
        "THREADLINE_MODEL": "fake-model",
        "THREADLINE_DB": str(db_path),
        "THREADLINE_TOKENIZER": "estimate",
        "THREADLINE_CODE_INTERPRETER": "off",
        "THREADLINE_API_KEYS": API_KEY,
        "THREADLINE_HTTP_HOST": "127.0.0.1",
        "PORT": str(port),
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bots.api", cwd=REPO, env=env)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                if process.returncode is not None:
                    raise RuntimeError("python -m bots.api exited; see its output above")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("python -m bots.api did not answer /healthz within 30 s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            process.kill()
            await process.wait()


class _Handler(AsyncAssistantEventHandler):
    def __init__(self, started: float) -> None:
        super().__init__()
        self._started = started
        self.first: float | None = None
        self.text = ""

    @override
    async def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self._started
        self.text += delta.value or ""


class Sides:
    def __init__(self, service: Threadline, client: openai.AsyncOpenAI, assistant_id: str) -> None:
        self._service = service
        self._client = client
        self._assistant = assistant_id
        self._threads: dict[str, str] = {}
        self._turn = 0

    async def setup(self) -> None:
        for side in ("P", "S"):
            self._threads[side] = (await self._client.beta.threads.create()).id

    def _text(self) -> str:
        self._turn += 1
        return f"question {self._turn}"

    async def console(self) -> dict[str, float]:
        started = time.perf_counter()
        handle = await self._service.post(Incoming("console:local:bench", Author("U1", "bench"), self._text()))
        assert handle is not None
        first = None
        async for event in handle.events():
            if isinstance(event, TextDelta) and first is None:
                first = time.perf_counter() - started
            if isinstance(event, RunCompleted):
                assert len(event.text) >= REPLY_CHARS, event.text
        return {"first": first or 0.0, "complete": time.perf_counter() - started}

    async def poll(self) -> dict[str, float]:
        thread = self._threads["P"]
        started = time.perf_counter()
        await self._client.beta.threads.messages.create(thread, role="user", content=self._text())
        run = await self._client.beta.threads.runs.create_and_poll(thread_id=thread, assistant_id=self._assistant)
        assert run.status == "completed", run.status
        page = await self._client.beta.threads.messages.list(thread, limit=1, order="desc")
        text = page.data[0].content[0].text.value  # type: ignore[union-attr]
        assert len(text) >= REPLY_CHARS, text
        return {"complete": time.perf_counter() - started}

    async def stream(self) -> dict[str, float]:
        thread = self._threads["S"]
        started = time.perf_counter()
        await self._client.beta.threads.messages.create(thread, role="user", content=self._text())
        handler = _Handler(started)
        async with self._client.beta.threads.runs.stream(
            thread_id=thread, assistant_id=self._assistant, event_handler=handler
        ) as stream:
            await stream.until_done()
        assert len(handler.text) >= REPLY_CHARS, handler.text
        return {"first": handler.first or 0.0, "complete": time.perf_counter() - started}


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK deprecates what we keep alive
    rng = random.Random(args.seed)
    samples: dict[str, list[dict[str, float]]] = {"C": [], "P": [], "S": []}
    async with model_server(reply_chars=REPLY_CHARS, chunk_delay=args.chunk_delay) as model:
        with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
            service = await Threadline.open(bench_settings(model.base_url, Path(tmp) / "console.db"))
            try:
                async with api_process(model.base_url, Path(tmp) / "api.db") as base_url:
                    client = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
                    try:
                        assistant = await client.beta.assistants.create(
                            model="fake-model", name="Bench", instructions=service.assistants.get(None).instructions
                        )
                        sides = Sides(service, client, assistant.id)
                        await sides.setup()
                        run = {"C": sides.console, "P": sides.poll, "S": sides.stream}
                        for _ in range(args.warmup):
                            for side in run:
                                await run[side]()
                        for turn in range(args.turns):
                            order = list(run)
                            rng.shuffle(order)
                            for side in order:
                                samples[side].append(await run[side]())
                                await service.wait_idle()
                            if (turn + 1) % 10 == 0:
                                print(f"{turn + 1}/{args.turns} rounds", file=sys.stderr)
                    finally:
                        await client.close()
            finally:
                await service.close()
    result = {"machine": machine(), "args": vars(args), "sides": {}}
    for side, rows in samples.items():
        result["sides"][side] = {key: summary([r[key] for r in rows]) for key in rows[0]}
    base = result["sides"]["C"]
    for side in ("P", "S"):
        for stat in ("median", "p99"):
            result[f"{side}/C complete {stat}"] = result["sides"][side]["complete"][stat] / base["complete"][stat]
    for stat in ("median", "p99"):
        result[f"S/C first text {stat}"] = result["sides"]["S"]["first"][stat] / base["first"][stat]
    path = write_result("api_overhead", result)
    report(result)
    print(f"results: {path}")
    return 0


def report(result: dict[str, Any]) -> None:
    names = {"C": "C console path (core)", "P": "P API create_and_poll", "S": "S API streamed"}
    print(f"{'ms':28} {'first p50':>10} {'first p99':>10} {'complete p50':>13} {'complete p99':>13}")
    for side, name in names.items():
        row = result["sides"][side]
        first = row.get("first")
        cells = [f"{first[s] * 1000:10.1f}" if first else f"{'-':>10}" for s in ("median", "p99")]
        complete = [f"{row['complete'][s] * 1000:13.1f}" for s in ("median", "p99")]
        print(f"{name:28} {' '.join(cells)} {' '.join(complete)}")
    for key, value in result.items():
        if "/C" in key:
            print(f"{key}: {value:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--chunk-delay", type=float, default=0.02, help="model: seconds between 4-character chunks")
    parser.add_argument("--seed", type=int, default=7)
    raise SystemExit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
