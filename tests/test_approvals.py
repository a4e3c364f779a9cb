"""Approvals: a tool that changes the world waits for a person; the pause survives restarts and expires."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from core.events import ApprovalRequired, ApprovalResolved, RunCompleted, RunFailed, ToolCallFinished
from core.service import ApprovalError
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import CHANNEL, post
from tests.tool_modules import team_tools


def deploy_script(req: dict[str, Any]) -> Reply:
    if results := tool_results(req):
        return Reply(text=f"Result: {results[0]['content']}")
    return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))


async def until_approval(handle) -> ApprovalRequired:
    async for event in handle.events():
        if isinstance(event, ApprovalRequired):
            return event
    raise AssertionError("the run ended without asking for approval")


async def test_approve_runs_the_tool(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = deploy_script
    handle = await post(service, "deploy billing")
    approval = await until_approval(handle)
    assert approval.tool == "deploy"
    assert json.loads(approval.arguments) == {"service": "billing"}
    run = await service.store.get_run(handle.run_id)
    assert run.status == "requires_action"
    assert team_tools.TIMELINE == []  # nothing ran before the decision

    same = await service.decide(approval.approval_id, approve=True, decided_by="U_BOB")
    assert same is handle
    rest = [e async for e in handle.events()]
    resolved = [e for e in rest if isinstance(e, ApprovalResolved)]
    assert [(e.outcome, e.decided_by) for e in resolved] == [("approved", "U_BOB")]
    assert any(isinstance(e, ToolCallFinished) and e.output == "billing deployed" for e in rest)
    assert isinstance(rest[-1], RunCompleted)
    assert rest[-1].text == "Result: billing deployed"
    assert team_tools.TIMELINE == ["deployed billing"]
    assert (await service.store.get_run(handle.run_id)).status == "completed"


async def test_deny_tells_the_model(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = deploy_script
    handle = await post(service, "deploy billing")
    approval = await until_approval(handle)
    await service.decide(approval.approval_id, approve=False, decided_by="U_BOB")
    result = await handle.result()
    assert isinstance(result, RunCompleted)
    assert team_tools.TIMELINE == []
    told = tool_results(fake_model.chat_requests[-1])[0]["content"]
    assert "U_BOB denied" in told
    with pytest.raises(ApprovalError, match="already denied by U_BOB"):
        await service.decide(approval.approval_id, approve=True, decided_by="U_EVE")


async def test_approval_expires(open_service, fake_model: FakeOpenAI) -> None:
    service = await open_service(approval_timeout=0.3)
    fake_model.script = deploy_script
    handle = await post(service, "deploy billing")
    approval = await until_approval(handle)
    rest = [e async for e in handle.events()]
    assert [e.outcome for e in rest if isinstance(e, ApprovalResolved)] == ["expired"]
    assert isinstance(rest[-1], RunFailed)
    assert rest[-1].status == "expired"
    assert "Nobody approved deploy" in rest[-1].message
    assert team_tools.TIMELINE == []
    assert (await service.store.get_run(handle.run_id)).status == "expired"
    with pytest.raises(ApprovalError):
        await service.decide(approval.approval_id, approve=True, decided_by="U_BOB")


async def test_pending_approval_survives_a_restart(open_service, fake_model: FakeOpenAI) -> None:
    fake_model.script = deploy_script
    first = await open_service()
    handle = await post(first, "deploy billing")
    approval = await until_approval(handle)
    await first.close()

    told: list[tuple[str, str]] = []

    async def notify(channel: str, text: str) -> None:
        told.append((channel, text))

    second = await open_service(notify=notify)
    assert (await second.store.get_run(handle.run_id)).status == "requires_action"
    resumed = await second.decide(approval.approval_id, approve=True, decided_by="U_BOB")
    result = await resumed.result()
    assert isinstance(result, RunCompleted)
    assert result.text == "Result: billing deployed"
    assert team_tools.TIMELINE == ["deployed billing"]
    assert told == []  # a paused run is not an interrupted one
    history = await second.store.thread_messages(await second.store.current_thread(CHANNEL))
    assert [m.role for m in history] == ["user", "tool_call", "tool_result", "assistant"]


async def test_expiry_after_restart_tells_the_channel(open_service, fake_model: FakeOpenAI) -> None:
    fake_model.script = deploy_script
    first = await open_service(approval_timeout=0.4)
    await until_approval(await post(first, "deploy billing"))
    await first.close()

    told: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def notify(channel: str, text: str) -> None:
        told.put_nowait((channel, text))

    await open_service(notify=notify, approval_timeout=0.4)
    channel, text = await asyncio.wait_for(told.get(), timeout=5)
    assert channel == CHANNEL
    assert "Nobody approved deploy" in text


async def test_unknown_approval_is_refused(service) -> None:
    with pytest.raises(ApprovalError, match="unknown"):
        await service.decide("appr_nope", approve=True, decided_by="U_BOB")


async def test_cancelling_a_paused_run_closes_its_approval(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = deploy_script
    handle = await post(service, "deploy billing")
    approval = await until_approval(handle)
    assert await service.cancel(CHANNEL) == 1
    result = await handle.result()
    assert isinstance(result, RunFailed)
    assert result.status == "cancelled"
    with pytest.raises(ApprovalError, match="no longer waiting: its run was cancelled"):
        await service.decide(approval.approval_id, approve=True, decided_by="U_BOB")
    assert team_tools.TIMELINE == []


def chatty_deploy_script(req: dict[str, Any]) -> Reply:
    """Answers "hi" in words, and "deploy" with a call needing approval."""
    if results := tool_results(req):
        return Reply(text=f"Result: {results[0]['content']}")
    if "deploy" in last_user_text(req):
        return Reply(tool_calls=(ToolCall("deploy", {"service": "billing"}),))
    if "ticket" in last_user_text(req):
        return Reply(tool_calls=(ToolCall("lookup_ticket", {"ticket_id": 7}),))
    return Reply(text="Hello! How can I help?")


@pytest.mark.parametrize("approve", [True, False])
@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("summary", [False, True])
async def test_decision_in_a_thread_with_earlier_answers_and_tool_calls(
    open_service, fake_model: FakeOpenAI, approve: bool, restart: bool, summary: bool
) -> None:
    """The thread has answers, a completed tool call, an earlier approval and (or not) a rolling summary
    before the paused call."""
    fake_model.script = chatty_deploy_script
    service = await open_service()
    if summary:  # a long history first, folded into a summary when it outgrows the assistant's 4,000 tokens
        for n in range(8):
            assert isinstance(await (await post(service, f"note {n}: " + "lorem ipsum " * 160)).result(), RunCompleted)
    assert isinstance(await (await post(service, "hi")).result(), RunCompleted)
    assert isinstance(await (await post(service, "weather ticket please")).result(), RunCompleted)
    earlier = await until_approval(await post(service, "deploy billing"))
    await service.decide(earlier.approval_id, approve=True, decided_by="U_BOB")
    handle = await post(service, "deploy billing again")
    approval = await until_approval(handle)
    if restart:
        await service.close()
        service = await open_service()
    thread = await service.store.current_thread(CHANNEL)
    assert ((await service.store.thread_summary(thread))[0] is not None) == summary
    resumed = await service.decide(approval.approval_id, approve=approve, decided_by="U_BOB")
    result = await resumed.result()
    assert isinstance(result, RunCompleted), result
    run = await service.store.get_run(handle.run_id)
    assert run.status == "completed"
    sent = fake_model.chat_requests[-1]["messages"]
    if summary:
        assert "Summary of the earlier conversation" in sent[0]["content"]
    else:
        assert [m["role"] for m in sent if m["role"] != "system"][:4] == ["user", "assistant", "user", "assistant"]
    assert any(m.get("content") == "Hello! How can I help?" for m in sent)
    if approve:
        assert result.text == "Result: billing deployed"
        assert team_tools.TIMELINE == ["deployed billing", "deployed billing"]
    else:
        assert "U_BOB denied" in tool_results(fake_model.chat_requests[-1])[0]["content"]
        assert team_tools.TIMELINE == ["deployed billing"]
