"""/healthz, /readyz and /metrics over HTTP on the API, Discord and console entry points; log lines during runs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bots.api.app import ApiServer
from bots.health import Health, HealthServer, always_ready
from core.logs import configure_logging
from core.service import Threadline
from core.settings import Settings
from tests.fakes.openai_server import Error, FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import CHANNEL, ask
from tests.test_console import console_env, start_console
from tests.test_discord import ROOT, Harness, harness  # noqa: F401 - the Discord harness fixture

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def tools_then_answer(req: dict[str, Any]) -> Reply:
    """A ticket question calls one tool that works and one that fails, then answers."""
    if results := tool_results(req):
        return Reply(text=f"Done: {len(results)} results", prompt_tokens=30, completion_tokens=5)
    if "ticket" in last_user_text(req):
        calls = (ToolCall("lookup_ticket", {"ticket_id": 42}), ToolCall("broken_tool", {"reason": "test"}))
        return Reply(tool_calls=calls, prompt_tokens=20, completion_tokens=3)
    return Reply(text=f"echo: {last_user_text(req)}")


def parse(text: str) -> Samples:
    """Every sample of a /metrics page, by name and labels (prometheus_client's own parser)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


def origin(server: ApiServer) -> str:
    return f"http://{server.host}:{server.port}"


# -- the API's own server --------------------------------------------------------------------------


async def test_api_metrics_count_a_run_its_tools_tokens_and_timings(
    api_server: ApiServer, service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = tools_then_answer
    events = await ask(service, "what about ticket 42?")
    assert events[-1].type == "run_completed"
    status, text = await get(f"{origin(api_server)}/metrics")
    assert status == 200
    samples = parse(text)
    assert value(samples, "threadline_runs_total", status="completed") == 1
    assert value(samples, "threadline_runs_total", status="failed") == 0
    assert value(samples, "threadline_run_duration_seconds_count") == 1
    assert value(samples, "threadline_time_to_first_token_seconds_count") == 1
    assert value(samples, "threadline_tool_calls_total", tool="lookup_ticket", outcome="ok") == 1
    assert value(samples, "threadline_tool_calls_total", tool="broken_tool", outcome="error") == 1
    assert value(samples, "threadline_tokens_total", channel=CHANNEL, direction="input") >= 50
    assert value(samples, "threadline_tokens_total", channel=CHANNEL, direction="output") >= 8
    assert value(samples, "threadline_queued_runs") == 0


async def test_api_health_and_readiness_and_a_broken_database(api_server: ApiServer, service: Threadline) -> None:
    assert await get(f"{origin(api_server)}/healthz") == (200, '{"status": "ok"}')
    status, body = await get(f"{origin(api_server)}/readyz")
    assert status == 200, body
    assert json.loads(body) == {"status": "ready", "checks": {"database": "ok", "platform": "ok", "model": "ok"}}

    await service.store.call(lambda db: db.conn.close())  # the database stops answering
    status, body = await get(f"{origin(api_server)}/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["failed"] == ["database"]
    assert "cannot be queried" in answer["checks"]["database"]
    assert (await get(f"{origin(api_server)}/healthz"))[0] == 200  # alive all the same
    assert (await get(f"{origin(api_server)}/metrics"))[0] == 200  # the counters are still worth reading


async def test_readiness_reports_a_model_endpoint_that_failed_at_its_last_call(
    api_server: ApiServer, service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda req: Error(401, "bad key")
    events = await ask(service, "hello")
    assert events[-1].type == "run_failed"
    status, body = await get(f"{origin(api_server)}/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["failed"] == ["model"]
    assert "AuthenticationError" in answer["checks"]["model"]

    fake_model.script = lambda req: Reply(text="back")
    await ask(service, "again")
    assert (await get(f"{origin(api_server)}/readyz"))[0] == 200  # the last call worked


# -- a port of their own -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_busy_metrics_port_is_one_log_line_and_no_crash(
    service: Threadline, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = replace(settings, metrics_port=taken.getsockname()[1])
        with caplog.at_level(logging.INFO, logger="bots.health"):
            server = await HealthServer.start(Health(service, always_ready), busy, default_port=9100)
    assert server is None
    (record,) = [r for r in caplog.records if r.name == "bots.health"]
    assert record.levelno == logging.ERROR
    assert "THREADLINE_METRICS_PORT" in record.getMessage()


async def test_without_a_port_set_the_console_serves_nothing(service: Threadline, settings: Settings) -> None:
    unset = replace(settings, metrics_port=None)
    assert await HealthServer.start(Health(service, always_ready), unset, default_port=None) is None


# -- Discord ------------------------------------------------------------------------------------------


async def _wait_status(url: str, wanted: int) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            status, body = await get(url)
            if status == wanted:
                return dict(json.loads(body))
            await asyncio.sleep(0.02)


async def test_discord_serves_health_readiness_and_metrics_and_tracks_the_gateway(harness: Harness) -> None:  # noqa: F811
    assert harness.bot is not None
    assert harness.bot.health is not None
    base = f"http://127.0.0.1:{harness.bot.health.port}"
    assert (await get(f"{base}/healthz"))[0] == 200
    ready = await _wait_status(f"{base}/readyz", 200)
    assert ready["checks"]["platform"] == "ok"

    question = await harness.fake.send_message("hello metrics")
    await harness.answer(question, ending="hello metrics")
    await harness.bot.service.wait_idle()
    status, text = await get(f"{base}/metrics")
    assert status == 200
    samples = parse(text)
    assert value(samples, "threadline_runs_total", status="completed") == 1
    channel = next(labels for name, labels in samples if name == "threadline_tokens_total")
    assert dict(channel)["channel"].startswith("discord:")

    async with harness.fake._send_lock:  # the gateway drops and stays silent (no HELLO) while this is held
        live = harness.fake.live_socket()
        assert live is not None
        await live.close(code=4000, message=b"fake disconnect")
        down = await _wait_status(f"{base}/readyz", 503)
        assert down["failed"] == ["platform"]
        assert "gateway" in down["checks"]["platform"]
    await harness.fake.wait_resumed()
    await _wait_status(f"{base}/readyz", 200)
    samples = parse((await get(f"{base}/metrics"))[1])
    assert value(samples, "threadline_platform_errors_total", platform="discord", kind="gateway_disconnect") >= 1


# -- the console ----------------------------------------------------------------------------------


@pytest.fixture
async def console_with_metrics(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    async with FakeOpenAI() as fake:
        port = free_port()
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url, THREADLINE_METRICS_PORT=str(port))
        process = await start_console(env, tmp_path)
        try:
            yield process, f"http://127.0.0.1:{port}"
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_console_serves_metrics_when_its_port_is_set(
    console_with_metrics: tuple[asyncio.subprocess.Process, str],
) -> None:
    process, base = console_with_metrics
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(b"hello from the console\n")
    await process.stdin.drain()
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    assert line.decode().startswith("echo: ")
    assert (await get(f"{base}/healthz"))[0] == 200
    assert (await get(f"{base}/readyz"))[0] == 200
    samples = parse((await get(f"{base}/metrics"))[1])
    assert value(samples, "threadline_runs_total", status="completed") == 1
    process.stdin.close()
    assert await asyncio.wait_for(process.wait(), timeout=30) == 0


# -- logs ---------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def log_to(stream: io.StringIO) -> None:
    root = logging.getLogger()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


@pytest.mark.usefixtures("restore_logging")
async def test_json_log_lines_carry_the_run_thread_and_channel(
    service: Threadline, settings: Settings, fake_model: FakeOpenAI
) -> None:
    fake_model.script = tools_then_answer
    configure_logging(replace(settings, log_format="json"))
    stream = io.StringIO()
    log_to(stream)
    events = await ask(service, "what about ticket 7?")
    run = await service.store.get_run(events[0].run_id)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    tool_failed = [line for line in lines if line["message"].startswith("tool failed")]
    assert tool_failed, lines
    assert tool_failed[0]["run"] == run.id
    assert tool_failed[0]["thread"] == run.thread_id
    assert tool_failed[0]["channel"] == CHANNEL
    logging.getLogger("outside").warning("not in a run")
    outside = json.loads(stream.getvalue().splitlines()[-1])
    assert "run" not in outside


@pytest.mark.usefixtures("restore_logging")
async def test_text_log_lines_end_with_the_run_ids(
    service: Threadline, settings: Settings, fake_model: FakeOpenAI
) -> None:
    fake_model.script = tools_then_answer
    configure_logging(settings)
    stream = io.StringIO()
    log_to(stream)
    events = await ask(service, "what about ticket 7?")
    run = await service.store.get_run(events[0].run_id)
    (line,) = [line for line in stream.getvalue().splitlines() if "tool failed" in line]
    assert line.endswith(f" [channel={CHANNEL} thread={run.thread_id} run={run.id}]")


@pytest.mark.usefixtures("restore_logging")
async def test_message_text_is_logged_only_when_asked_for(
    open_service: Any, settings: Settings, fake_model: FakeOpenAI
) -> None:
    secret = "the-launch-code-is-zebra"
    stream = io.StringIO()
    configure_logging(settings, level=logging.INFO)
    log_to(stream)
    quiet = await open_service()
    await ask(quiet, f"please remember {secret}")
    assert secret not in stream.getvalue()  # neither the question nor the answer (which echoes it)
    await quiet.close()

    configure_logging(settings, level=logging.DEBUG)
    log_to(stream)
    loud = await open_service(log_content=True)  # THREADLINE_LOG_CONTENT=1
    await ask(loud, f"again {secret}")
    assert secret in stream.getvalue()
