"""/healthz, /readyz and /metrics on the Slack bot's own HTTP server (HTTP mode, at PORT), over real requests.

That server also takes Slack's events, so /readyz and /metrics answer this machine only unless
THREADLINE_METRICS_HOST is set. Who is "this machine" is decided from the connection's peer address:
the tests make real requests from a loopback address other than 127.0.0.1 and from this machine's
non-loopback address (skipped where the machine has none).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, app_mention
from tests.test_slack import ALICE, CHANNEL, SLACK_ASSISTANTS, Harness, chat_script

LOCAL_ONLY = ("/readyz", "/metrics")


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    """The Slack harness, not started: each test starts the bot on the host it needs."""
    assistants = tmp_path / "slack-assistants.toml"
    assistants.write_text(SLACK_ASSISTANTS)
    fake_model.script = chat_script
    async with FakeSlack(members={CHANNEL: [ALICE]}) as slack:
        h = Harness(slack, fake_model, replace(settings, assistants_file=assistants), tmp_path)
        yield h
        await h.stop()
        await h.http.close()


async def get(url: str, *, source: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, from the local address ``source`` when given."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None)
    async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, or None. Sends nothing: a UDP connect picks a route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # TEST-NET-2: the route, not the peer, is what matters
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    if address.startswith("127.") or address == "0.0.0.0":
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as check:
        try:
            check.bind((address, 0))
        except OSError:
            return None
    return address


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_slack_http_mode_serves_health_readiness_and_metrics_at_its_port(harness: Harness) -> None:
    bot = await harness.start()
    origin = f"http://127.0.0.1:{bot.port}"
    assert await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> hello", "1700000200.000100")) == 200
    await harness.answer(CHANNEL, "1700000200.000100")

    status, _, body = await get(f"{origin}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, _, body = await get(f"{origin}/readyz")
    assert status == 200
    assert json.loads(body) == {
        "status": "ready",
        "checks": {"database": "ok", "platform": "ok", "model": "ok"},
    }
    status, content_type, body = await get(f"{origin}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert samples(body)[("threadline_runs_total", (("status", "completed"),))] == 1
    # The same server still takes Slack's events: the routes were added to it, not served instead of it.
    assert bot.health is None  # no second server in HTTP mode


async def test_any_loopback_peer_counts_as_this_machine(harness: Harness) -> None:
    bot = await harness.start()
    for path in LOCAL_ONLY:
        status, _, _ = await get(f"http://127.0.0.1:{bot.port}{path}", source="127.0.0.2")
        assert status == 200, path


async def test_readiness_and_metrics_refuse_other_machines_unless_opened(harness: Harness) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to make a request from")
    bot = await harness.start(host="0.0.0.0")  # PORT on every interface, as in production
    origin = f"http://{address}:{bot.port}"
    status, _, _ = await get(f"{origin}/healthz")
    assert status == 200  # liveness is for anyone
    for path in LOCAL_ONLY:
        status, _, body = await get(origin + path)
        assert status == 403, path
        assert "THREADLINE_METRICS_HOST" in json.loads(body)["error"]
        assert "threadline_" not in body
    # From loopback, the same server answers.
    assert (await get(f"http://127.0.0.1:{bot.port}/metrics"))[0] == 200

    # THREADLINE_METRICS_HOST set: the operator chose who reaches them, and the server stops filtering.
    await harness.stop()
    harness.settings = replace(harness.settings, metrics_host="0.0.0.0")
    bot = await harness.start(host="0.0.0.0")
    origin = f"http://{address}:{bot.port}"
    status, _, body = await get(f"{origin}/readyz")
    assert (status, json.loads(body)["status"]) == (200, "ready")
    status, _, body = await get(f"{origin}/metrics")
    assert status == 200
    assert "threadline_" in body
