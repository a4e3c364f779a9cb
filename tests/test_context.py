"""The context window: budget, never splitting a tool call from its result, and the rolling summary."""

from __future__ import annotations

import json
from typing import Any

from core.context import HistoryEntry, plan_window
from core.events import RunCompleted
from core.tokens import TokenCounter
from tests.fakes.openai_server import Error, FakeOpenAI, Reply, last_user_text
from tests.helpers import CHANNEL, ask

SUMMARY_MARK = "You keep the running summary"


def entries(roles: str, tokens: int = 10) -> list[HistoryEntry]:
    """u=user a=assistant c=tool call r=tool result, oldest first."""
    names = {"u": "user", "a": "assistant", "c": "tool_call", "r": "tool_result"}
    return [HistoryEntry(i + 1, i + 1, tokens, names[r]) for i, r in enumerate(roles)]


def test_everything_fits_nothing_folds() -> None:
    history = entries("uaua")
    plan = plan_window(history, available=100, summarised_until=None)
    assert plan.window == history
    assert plan.fold == []


def test_overflow_folds_down_to_half_the_budget_at_a_boundary() -> None:
    history = entries("ua" * 10)  # 200 tokens
    plan = plan_window(history, available=100, summarised_until=None)
    assert sum(e.tokens for e in plan.window) <= 50
    assert plan.window[0].role in {"user", "assistant"}
    assert plan.fold + plan.window == history


def test_a_tool_call_is_never_separated_from_its_result() -> None:
    # user, call, call, result, result, assistant: cutting inside the block must move to the block's start.
    history = entries("uccrra" + "u" + "ccrra")
    for available in range(20, 240, 10):
        plan = plan_window(history, available=available, summarised_until=None)
        assert not plan.window or plan.window[0].role in {"user", "assistant"}
        kept = {e.id for e in plan.window}
        for block in ([2, 3, 4, 5], [8, 9, 10, 11]):
            assert all(i in kept for i in block) or not any(i in kept for i in block)


def test_summarised_messages_are_not_sent_again() -> None:
    history = entries("uaua")
    plan = plan_window(history, available=100, summarised_until=(2, 2))
    assert [e.id for e in plan.window] == [3, 4]


def test_estimated_counts_are_close_to_four_bytes_a_token() -> None:
    counter = TokenCounter()
    assert counter.count("") == 0
    assert counter.count("abcd" * 100) == 100
    assert counter.count_item({"type": "function_call", "name": "f", "arguments": "{}"}) > 0


def _history_row(n: int) -> tuple[str, str, dict[str, Any], int]:
    if n % 50 == 3:
        item = {"type": "function_call", "call_id": f"c{n}", "name": "lookup_ticket", "arguments": '{"ticket_id": 1}'}
        return ("tool_call", "lookup_ticket(...)", item, 12)
    if n % 50 == 4:
        item = {"type": "function_call_output", "call_id": f"c{n - 1}", "output": "Ticket 1: open"}
        return ("tool_result", "Ticket 1: open", item, 10)
    role = "user" if n % 2 == 0 else "assistant"
    text = f"message number {n} about the quarterly planning of the team"
    return (role, text, {"role": role, "content": text}, 20)


def _request_tokens(messages: list[dict[str, Any]]) -> int:
    counter = TokenCounter()
    return sum(counter.count(json.dumps(m)) for m in messages)


async def test_ten_thousand_message_thread_fits_the_budget_with_a_rolling_summary(
    service, fake_model: FakeOpenAI
) -> None:
    thread = await service.store.current_thread(CHANNEL)
    await service.store.import_messages(thread, CHANNEL, [_history_row(n) for n in range(10_000)])
    summaries: list[str] = []

    def script(req: dict[str, Any]) -> Reply:
        if req["messages"][0]["content"].startswith(SUMMARY_MARK):
            summaries.append(req["messages"][1]["content"])
            return Reply(text=f"SUMMARY-{len(summaries)}")
        return Reply(text=f"echo: {last_user_text(req)}")

    fake_model.script = script
    events = await ask(service, "what did we decide?")
    assert isinstance(events[-1], RunCompleted)
    assert len(summaries) == 1
    assert "message number 99" in summaries[0]  # what just left the window went into the summary
    request = fake_model.chat_requests[-1]["messages"]
    assert "SUMMARY-1" in request[0]["content"]
    assert request[-1]["content"] == "alice: what did we decide?"
    assert request[1]["role"] in {"user", "assistant"}
    assert 10 < len(request) < 400
    assert _request_tokens(request) <= 4000  # the team assistant's context_tokens
    # Tool calls and their results travel together.
    call_ids = {c["id"] for m in request if m["role"] == "assistant" for c in m.get("tool_calls") or []}
    assert all(m["tool_call_id"] in call_ids for m in request if m["role"] == "tool")
    summary, until = await service.store.thread_summary(thread)
    assert summary == "SUMMARY-1"
    assert until is not None

    # The window now has room: the next runs need no new summary call ...
    await ask(service, "and then?")
    assert len(summaries) == 1
    # ... until it fills again, when the summary is refreshed from the previous one.
    for n in range(40):
        await ask(service, f"follow-up {n} " + "detail " * 30)
    assert len(summaries) >= 2
    assert "SUMMARY-1" in summaries[1]
    assert all(_request_tokens(r["messages"]) <= 4000 for r in fake_model.chat_requests if "tools" in r)


async def test_a_failed_summary_call_still_answers_from_the_window(service, fake_model: FakeOpenAI) -> None:
    thread = await service.store.current_thread(CHANNEL)
    await service.store.import_messages(thread, CHANNEL, [_history_row(n) for n in range(2_000)])

    def script(req: dict[str, Any]) -> Reply | Error:
        if req["messages"][0]["content"].startswith(SUMMARY_MARK):
            return Error(400, "context too long")
        return Reply(text="fine")

    fake_model.script = script
    events = await ask(service, "hello?")
    assert isinstance(events[-1], RunCompleted)
    assert await service.store.thread_summary(thread) == (None, None)
    assert _request_tokens(fake_model.chat_requests[-1]["messages"]) <= 4000


async def test_the_summary_calls_tokens_are_part_of_the_runs_usage(service, fake_model: FakeOpenAI) -> None:
    """The fold's model call is paid for like any other: /usage, budgets and metrics see it in the run."""
    thread = await service.store.current_thread(CHANNEL)
    await service.store.import_messages(thread, CHANNEL, [_history_row(n) for n in range(2_000)])

    def script(req: dict[str, Any]) -> Reply:
        if req["messages"][0]["content"].startswith(SUMMARY_MARK):
            return Reply(text="SUMMARY", prompt_tokens=2_500, completion_tokens=400)
        return Reply(text="answer", prompt_tokens=900, completion_tokens=60)

    fake_model.script = script
    events = await ask(service, "what did we decide?")
    assert isinstance(events[-1], RunCompleted)
    run = await service.store.get_run(events[-1].run_id)
    assert (run.input_tokens, run.output_tokens) == (2_500 + 900, 400 + 60)
