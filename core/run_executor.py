"""The run executor: what happens to a run a lane claimed, from its start to its end or its pause.

A run's kind decides how it is set up (core/run_plans.py: a chat run or an API run); the rest is
the same for both: stream a stretch of it on openai-agents (core/runner.py), then record it as
completed, paused for approvals or client outputs, or ended, and tell whoever watches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.run_state import RunState

from core.conversation_items import text_of
from core.events import ApprovalRequired, ApprovalResolved, Event, RunCompleted, RunFailed, RunStarted
from core.health import ModelStatus
from core.lanes import Lane
from core.models import TERMINAL_STATUSES, Approval, Run
from core.run_handles import RunHandles
from core.run_plans import Prepared, RunPlan
from core.runner import RunSegment
from core.settings import Settings
from core.store import Store
from core.store.store import ClaimKind, NewItem
from core.tokens import TokenCounter
from core.tools.code_interpreter import FileOutbox
from core.tools.registry import ToolRegistry

__all__ = [
    "NO_MODEL_MESSAGE",
    "RESTARTING_MESSAGE",
    "SHUTDOWN_REASON",
    "STOPPED_MESSAGE",
    "TAKEN_OVER_MESSAGE",
    "RunExecutor",
]

_log = logging.getLogger(__name__)

NO_MODEL_MESSAGE = (
    "No model endpoint is configured, so I cannot answer yet. Whoever runs the bot should set "
    "OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL (for a local OpenAI-compatible server) and restart it."
)
# A graceful stop cut the answer off before it used a tool (or before it began): it is left queued, and
# another process, or the next start, answers it in full.
RESTARTING_MESSAGE = "The bot is restarting; the answer will follow in full once it is back."
# ... after it had started a tool, which cannot safely be run twice: the run is closed.
STOPPED_MESSAGE = (
    "The bot is restarting, and I had already started using a tool for this, so I stopped here rather than "
    "risk running it twice. Your message is saved; ask again if it is still needed."
)
SHUTDOWN_REASON = "Threadline was shut down while this run was in progress."
# What a segment's outcome is recorded over: a run just running. Cancelling (asked through another process, or
# before the lane knew its run) is not: the outcome is dropped and the run ends cancelled.
RUNNING = ("in_progress",)
TAKEN_OVER_MESSAGE = "Another instance of the bot took over this answer, so it stopped here."
UNEXPECTED_MESSAGE = "Something went wrong on the bot's side while answering; the details are in its log."

Tell = Callable[[str, str], Awaitable[None]]


class RunExecutor:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        tools: ToolRegistry,
        tokens: TokenCounter,
        handles: RunHandles,
        model_status: ModelStatus,
        outbox: FileOutbox,
        plans: tuple[RunPlan, RunPlan],
        tell: Tell,
    ) -> None:
        """``plans``: (for chat runs, for API runs); ``tell``: a message for a channel outside any run's stream."""
        self._settings = settings
        self._store = store
        self._tools = tools
        self._tokens = tokens
        self._handles = handles
        self._model_status = model_status
        self._outbox = outbox
        self._chat, self._api = plans
        self._tell = tell

    def plan(self, run: Run) -> RunPlan:
        return self._api if run.spec is not None else self._chat

    async def work(self, kind: ClaimKind, run: Run, approvals: list[Approval], lane: Lane) -> None:
        """A lane's claimed work: start a run, resume it after its pause, or end it when its pause expired."""
        if kind == "expire":
            await self._expire(run, approvals)
        elif kind in ("start", "take"):
            await self._guarded(run, self._start(run, lane))
        elif kind == "resume":
            await self._guarded(run, self._resume(run, approvals, lane))

    async def end(
        self,
        run: Run,
        status: str,
        message: str,
        error: str,
        items: list[dict[str, Any]],
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        expect: tuple[str, ...] | None = None,
    ) -> bool:
        """Close a run that did not complete: record why, keep finished tool calls, tell its handle.

        ``expect``: only if the run is still in one of these statuses (False, and nothing done, if not)."""
        ended = await self._store.finish_run(
            run,
            status=status,
            items=self._new_items(items),
            last_error=error,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            expect=expect,
        )
        if ended is None:
            return False
        self._handles.emit(ended, RunFailed(ended.id, status, message))  # type: ignore[arg-type]
        return True

    async def _guarded(self, run: Run, work: Awaitable[None]) -> None:
        """Run ``work`` for ``run``; an unexpected error fails that run (and only it) instead of leaving it open."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.exception("run %s failed unexpectedly", run.id)
            current = await self._store.get_run(run.id)
            if current.status not in TERMINAL_STATUSES:
                await self.end(current, "failed", UNEXPECTED_MESSAGE, f"{type(exc).__name__}: {exc}"[:2000], [])

    async def _start(self, run: Run, lane: Lane) -> None:
        self._handles.emit(run, RunStarted(run.id, run.channel))
        if not self._settings.model_configured:
            if run.trigger_message_id is not None and run.spec is None:  # not to be sent again once a model is set
                await self._store.delete_message(run.trigger_message_id)
            await self.end(run, "failed", NO_MODEL_MESSAGE, "no model endpoint configured", [])
            return
        prepared = await self.plan(run).prepare(run)
        if prepared.refusal is not None:
            await self.end(run, "failed", prepared.refusal, "budget used up before the run started", [])
            return
        await self._segment(run, lane, prepared, prepared.items)

    async def _resume(self, run: Run, approvals: list[Approval], lane: Lane) -> None:
        prepared = await self.plan(run).prepare_resume(run, approvals)
        assert prepared.agent is not None
        try:
            state = await RunState.from_json(prepared.agent, json.loads(run.state_json or "{}"))
        except Exception as exc:
            _log.exception("run %s: paused state cannot be restored", run.id)
            await self.end(
                run,
                "failed",
                "The paused request could not be resumed (the bot's configuration changed). Please ask again.",
                f"restore failed: {type(exc).__name__}: {exc}",
                [],
            )
            return
        decisions = {a.call_id: a for a in approvals}
        for item in state.get_interruptions():
            raw = item.raw_item
            call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
            approval = decisions.get(str(call_id))
            if approval is not None and approval.status == "approved":
                state.approve(item)
            else:
                who = approval.decided_by if approval and approval.decided_by else "a person"
                state.reject(
                    item,
                    rejection_message=f"{who} denied this call to {item.tool_name}; it was not run. "
                    "Tell the user, and do not retry it unless they ask.",
                )
        run = await self._store.update_run(run.id, state_json=None)
        await self._segment(run, lane, prepared, state)

    async def _segment(self, run: Run, lane: Lane, prepared: Prepared, start: Any) -> None:
        """One stretch of the run on openai-agents, then its outcome recorded."""
        assert prepared.agent is not None
        if lane.cancelled:  # asked to stop before it got here
            await self.end(run, "cancelled", "Cancelled.", "cancelled by request", [])
            return
        segment = RunSegment(
            self._store,
            run_id=run.id,
            emit=self._emitter(run),
            timeout=self._settings.run_timeout,
            tracing=self._settings.tracing,
            refused=prepared.refused,
            budget=prepared.budget,
        )
        task = asyncio.create_task(segment.execute(prepared.agent, start, prepared.context), name=f"run {run.id}")
        lane.segment = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # the service is stopping: the run stays in progress, for it to hand over
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            lane.segment = None
        if task.cancelled():
            await self.end(run, "cancelled", "Cancelled.", "cancelled by request", [])
            return
        outcome = task.result()
        self._model_status.record(outcome.model_error)
        usage: dict[str, Any] = {"input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens}
        plan = self.plan(run)
        if outcome.status == "completed":
            items = self._new_items(outcome.items)
            ids, step_id = await plan.answer_ids(run, [role for role, *_ in items])
            finished = await self._store.finish_run(
                run, status="completed", items=items, public_ids=ids, step_id=step_id, expect=RUNNING, **usage
            )
            if finished is None:
                await self._not_recorded(run, usage)
                return
            await plan.completed(finished, outcome)
            self._handles.emit(finished, RunCompleted(finished.id, outcome.text, outcome.sources))
        elif outcome.status == "requires_action":
            client, seconds = plan.pause(run, self._tools.names())
            expires_at = time.time() + seconds
            # The approvals first: a run another process sees paused always has them.
            approvals = await self._store.add_approvals(
                run.id, [(p.call_id, p.tool, p.arguments) for p in outcome.pending], expires_at, client
            )
            paused = await self._store.finish_run(
                run, status="requires_action", state_json=outcome.state_json, expect=RUNNING, **usage
            )
            if paused is None:
                await self._not_recorded(run, usage)
                return
            if paused.spec is not None:  # the old API shows when a paused run expires
                paused = await self._store.update_run(paused.id, expires_at=expires_at)
            for approval in approvals:
                self._handles.emit(
                    paused, ApprovalRequired(paused.id, approval.id, approval.tool_name, approval.arguments, expires_at)
                )
        elif not await self.end(
            run, outcome.status, outcome.message, outcome.error, outcome.items, expect=RUNNING, **usage
        ):
            await self._not_recorded(run, usage)
            return
        if prepared.budget is not None and outcome.input_tokens + outcome.output_tokens:
            await prepared.budget.after()

    async def _not_recorded(self, run: Run, usage: dict[str, Any]) -> None:
        """The segment's outcome found the run no longer simply running: cancelled meanwhile (through another
        process, or before this lane knew the run it claimed), it ends cancelled and its answer is dropped, as
        the cancel promised; taken by another process, its result is dropped."""
        if await self.end(run, "cancelled", "Cancelled.", "cancelled by request", [], expect=("cancelling",), **usage):
            return
        self._taken_over(run)

    def _taken_over(self, run: Run) -> None:
        """The run was taken from this process while it ran (its lease ran out): its result is not recorded."""
        _log.error("run %s was taken over by another process while this one ran it; its result is dropped", run.id)
        self._handles.emit(run, RunFailed(run.id, "failed", TAKEN_OVER_MESSAGE))

    async def _expire(self, run: Run, pending: list[Approval]) -> None:
        """The claim marked ``pending`` expired and took the run: end it, and say so."""
        watched = self._handles.watched(run.id)  # someone is showing this run; otherwise tell the channel
        for approval in pending:
            self._handles.emit(run, ApprovalResolved(run.id, approval.id, approval.tool_name, "expired", None))
        tools = ", ".join(sorted({a.tool_name for a in pending}))
        minutes = self._settings.approval_timeout / 60
        message = (
            f"Nobody approved {tools} within {minutes:g} minutes, so it was not run. Ask again if it is still needed."
        )
        await self.end(run, "expired", message, "approval expired", [])
        if not watched:
            await self._tell(run.channel, message)

    def _emitter(self, run: Run) -> Callable[[Event], Awaitable[None]]:
        async def emit(event: Event) -> None:
            self._handles.emit(run, event)
            if event.type == "tool_call_finished":
                for output in self._outbox.take(run.id):
                    self._handles.emit(run, output)

        return emit

    def _new_items(self, items: list[dict[str, Any]]) -> list[NewItem]:
        out: list[NewItem] = []
        for item in items:
            kind = item.get("type")
            if kind == "function_call":
                role, text = "tool_call", f"{item.get('name')}({item.get('arguments')})"
            elif kind == "function_call_output":
                output = item.get("output")
                role, text = "tool_result", output if isinstance(output, str) else json.dumps(output)
            else:
                role, text = str(item.get("role") or kind or "other"), text_of(item.get("content"))
            out.append((role, text, item, self._tokens.count_item(item)))
        return out
