"""/metrics over HTTP: what runs cost by channel (at the assistants file's prices) and queue depth per thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bots.api.app import ApiServer
from core.events import RunCompleted
from core.service import Threadline
from tests.conftest import TEAM_ASSISTANTS
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import CHANNEL, ask, post
from tests.test_approvals import until_approval
from tests.test_health import Samples, get, origin, parse, value

OTHER = "console:local:other"

# fake-model's price here: 2 EUR per million input tokens, 10 EUR per million output tokens.
PRICED_ASSISTANTS = (
    TEAM_ASSISTANTS
    + """
[prices."fake-model"]
input_per_million = 2.0
output_per_million = 10.0
currency = "EUR"
"""
)


@pytest.fixture
def team_assistants(tmp_path: Path) -> Path:
    path = tmp_path / "assistants.toml"
    path.write_text(PRICED_ASSISTANTS)
    return path


def deploy_or_echo(req: dict[str, Any]) -> Reply:
    """``deploy ...`` asks for the deploy tool (which waits for approval); anything else is echoed."""
    if results := tool_results(req):
        return Reply(text=f"Result: {results[0]['content']}")
    if "deploy" in last_user_text(req):
        return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))
    return Reply(text=f"echo: {last_user_text(req)}")


def thread_depths(samples: Samples) -> dict[str, float]:
    """threadline_thread_queued_runs by thread: only the threads that have a series."""
    return {
        dict(labels)["thread"]: v for (name, labels), v in samples.items() if name == "threadline_thread_queued_runs"
    }


async def test_cost_by_channel_is_priced_from_the_assistants_file(
    api_server: ApiServer, service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = lambda req: Reply(text="priced", prompt_tokens=1000, completion_tokens=200)
    runs = []
    for channel in (CHANNEL, CHANNEL, OTHER):
        events = await ask(service, "how much?", channel=channel)
        assert isinstance(events[-1], RunCompleted)
        runs.append(await service.store.get_run(events[0].run_id))
    assert [(r.model, r.input_tokens, r.output_tokens) for r in runs] == [("fake-model", 1000, 200)] * 3

    status, text = await get(f"{origin(api_server)}/metrics")
    assert status == 200
    samples = parse(text)
    one_run = (1000 * 2.0 + 200 * 10.0) / 1e6  # 0.004 EUR
    assert value(samples, "threadline_cost_total", channel=CHANNEL, currency="EUR") == pytest.approx(2 * one_run)
    assert value(samples, "threadline_cost_total", channel=OTHER, currency="EUR") == pytest.approx(one_run)
    cost_series = {labels for name, labels in samples if name == "threadline_cost_total"}
    assert cost_series == {
        (("channel", CHANNEL), ("currency", "EUR")),
        (("channel", OTHER), ("currency", "EUR")),
    }
    assert value(samples, "threadline_tokens_total", channel=CHANNEL, direction="input") == 2000


async def test_queue_depth_per_thread_counts_runs_waiting_behind_an_approval(
    api_server: ApiServer, service: Threadline, fake_model: FakeOpenAI
) -> None:
    fake_model.script = deploy_or_echo
    paused = await post(service, "deploy billing")
    approval = await until_approval(paused)
    waiting = [await post(service, f"then {n}") for n in (1, 2)]  # queued behind the paused run
    other = await post(service, "deploy billing", channel=OTHER)
    await until_approval(other)
    await post(service, "then 3", channel=OTHER)
    thread = (await service.store.get_run(paused.run_id)).thread_id
    other_thread = (await service.store.get_run(other.run_id)).thread_id

    samples = parse((await get(f"{origin(api_server)}/metrics"))[1])
    depths = thread_depths(samples)
    assert depths == {thread: 2, other_thread: 1}  # the run awaiting approval is not counted
    assert value(samples, "threadline_thread_queued_runs", channel=CHANNEL, thread=thread) == 2
    assert value(samples, "threadline_thread_queued_runs", channel=OTHER, thread=other_thread) == 1
    assert value(samples, "threadline_queued_runs") == 3

    await service.decide(approval.approval_id, approve=False, decided_by="U_BOB")
    assert isinstance(await paused.result(), RunCompleted)
    for handle in waiting:
        assert isinstance(await handle.result(), RunCompleted)

    samples = parse((await get(f"{origin(api_server)}/metrics"))[1])
    depths = thread_depths(samples)
    assert depths == {other_thread: 1}  # a thread with nothing waiting has no series
    assert value(samples, "threadline_queued_runs") == 1
