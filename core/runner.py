"""One stretch of a run on openai-agents: stream the model, run tools, stop at an answer or an approval.

openai-agents does the loop (model → tool calls, concurrently → model ...), tool schemas,
tool errors as results, approvals and the serialisable paused state. This module maps its
stream onto Threadline's events and run steps, and its outcome onto run statuses.

The tool calls of one model response are one run step (core/store/api_runs.py, ``tool_step_id``):
the stream names it as the model begins the first call (``ToolCallDelta``, with each call's
arguments as they are written), and the step is stored before any of its tools runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agents import Agent, MaxTurnsExceeded, RunConfig, RunContextWrapper, RunHooks, Runner
from agents.items import ModelResponse, ToolApprovalItem, ToolCallItem, ToolCallOutputItem
from agents.run_config import ToolErrorFormatterArgs
from agents.run_state import RunState
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent
from agents.tool_context import ToolContext

from core import tool_details
from core.budgets import BudgetExceeded
from core.citations import completed_by
from core.conversation_items import stored
from core.events import Citation, Event, Source, TextDelta, ToolCallDelta, ToolCallFinished, ToolCallStarted
from core.model_client import describe_model_error, endpoint_problem, is_model_error
from core.run_budget import RunBudget
from core.store import Store
from core.store.api_runs import tool_step_id

__all__ = ["PendingCall", "RunSegment", "SegmentOutcome"]

_log = logging.getLogger(__name__)

MAX_TURNS = 12
# What a cut-off answer is stored with, so that the thread (and the model, next time) knows it was not finished.
CUT_OFF_NOTE = "\n\n[This answer was cut off here.]"
_MARKER_TAIL = len("[999")  # the longest start of a citation marker that words to come can complete
Emit = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True)
class PendingCall:
    call_id: str
    tool: str
    arguments: str


@dataclass
class SegmentOutcome:
    status: Literal["completed", "requires_action", "failed", "expired"]
    text: str = ""
    message: str = ""  # for people, when it did not complete
    error: str = ""  # for the log and runs.last_error
    state_json: str | None = None
    pending: list[PendingCall] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)  # what to append to the thread
    sources: tuple[Source, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    model_error: str = ""  # set when the model endpoint could not serve the run (readiness reports it)


class RunSegment:
    """Runs ``agent`` from fresh input or a paused state until it answers, pauses or fails."""

    def __init__(
        self,
        store: Store,
        *,
        run_id: str,
        emit: Emit,
        timeout: float,
        tracing: bool,
        refused: frozenset[str] = frozenset(),
        budget: RunBudget | None = None,
    ) -> None:
        """``refused``: tools the person who asked may not use; they are not offered, and a call to one
        (the model may copy one from the history) is answered with a refusal instead of failing the run.
        ``budget``: reserves every model call against the budgets that apply (None: none do)."""
        self._store = store
        self._stepped: dict[str, asyncio.Future[None]] = {}  # the writes of tool steps, by call id
        self._steps: dict[str, tuple[str, int]] = {}  # (step id, index) of each call of the run's model responses
        self._hooks = _RunHooks(budget, self._record_step, self._record_response)
        self._run_id = run_id
        self._emit = emit
        self._timeout = timeout
        self._refused = refused
        self._partial: list[str] = []  # the text of the model's answer in progress, as streamed so far
        self._written = 0  # its length
        self._tail = ""  # its last characters, where a citation marker may have begun
        self._calls: dict[int, tuple[str, str]] = {}  # the response's tool calls by output index: (call id, tool)
        self._context: Any = None  # the run's context (what its tools found)
        # A call to a tool that is not offered (refused by the policy, or one the model made up) is
        # answered with an error the model can read, instead of failing the run.
        self._config = RunConfig(
            tracing_disabled=not tracing,
            workflow_name="threadline run",
            tool_not_found_behavior="return_error_to_model",
            tool_error_formatter=self._refusal,
        )

    def _refusal(self, args: ToolErrorFormatterArgs[Any]) -> str | None:
        if args.kind != "tool_not_found" or args.tool_name not in self._refused:
            return None
        _log.info(
            "run %s: call to %s refused: the person who asked may not use it (policy)", self._run_id, args.tool_name
        )
        return (
            f"Refused: the person who asked may not use {args.tool_name} here, so it was not run. "
            "Tell them, and do not call it again."
        )

    async def execute(
        self, agent: Agent[Any], start: list[dict[str, Any]] | RunState[Any], context: dict[str, Any] | None = None
    ) -> SegmentOutcome:
        outcome = await self._execute(agent, start, context)
        partial = "".join(self._partial)
        if outcome.status in {"failed", "expired"} and partial.strip():
            # The person saw these words: the thread keeps them, marked as cut off, and the message says so.
            outcome.items.append({"role": "assistant", "content": partial + CUT_OFF_NOTE})
            outcome.message = f"{outcome.message} The answer above is incomplete: it was cut off there."
        return outcome

    async def _execute(
        self, agent: Agent[Any], start: list[dict[str, Any]] | RunState[Any], context: dict[str, Any] | None
    ) -> SegmentOutcome:
        result = Runner.run_streamed(
            agent,
            start,  # type: ignore[arg-type]
            context=context,
            max_turns=MAX_TURNS,
            run_config=self._config,
            hooks=self._hooks,
        )
        self._context = result.context_wrapper.context
        try:
            async with asyncio.timeout(self._timeout):
                async for event in result.stream_events():
                    await self._on_event(event)
        except TimeoutError:
            result.cancel()
            minutes = self._timeout / 60
            return SegmentOutcome(
                status="expired",
                message=f"The answer took longer than the {minutes:g}-minute limit, so it was stopped. "
                "Try a smaller request.",
                error=f"run exceeded its {self._timeout:g} s limit",
                items=_complete_pairs(result.new_items),
                **_usage(result),
            )
        except asyncio.CancelledError:
            result.cancel()
            raise
        except BudgetExceeded as exc:
            budget = exc.budget
            return SegmentOutcome(
                status="failed",
                message=str(exc),
                error=f"{budget.scope} {budget.period} budget reached ({budget.limit.describe()})",
                items=_complete_pairs(result.new_items),
                **_usage(result),
            )
        except MaxTurnsExceeded as exc:
            return SegmentOutcome(
                status="failed",
                message="The assistant kept calling tools without reaching an answer, so it was stopped. "
                "Try asking a narrower question.",
                error=str(exc),
                items=_complete_pairs(result.new_items),
                **_usage(result),
            )
        except Exception as exc:
            if is_model_error(exc):
                _log.warning("run %s: model call failed: %s: %s", self._run_id, type(exc).__name__, exc)
                message = describe_model_error(exc)
            else:
                _log.exception("run %s failed", self._run_id)
                message = "Something went wrong on the bot's side while answering; the details are in its log."
            error = f"{type(exc).__name__}: {exc}"[:2000]
            return SegmentOutcome(
                status="failed",
                message=message,
                error=error,
                model_error=endpoint_problem(exc),  # no bodies: they may echo keys
                items=_complete_pairs(result.new_items),
                **_usage(result),
            )

        if result.interruptions:
            pending = [
                PendingCall(call_id=_call_id(item), tool=item.tool_name or "", arguments=_arguments(item))
                for item in result.interruptions
                if isinstance(item, ToolApprovalItem)
            ]
            return SegmentOutcome(
                status="requires_action",
                state_json=json.dumps(result.to_state().to_json()),
                pending=pending,
                **_usage(result),
            )
        text = result.final_output if isinstance(result.final_output, str) else str(result.final_output or "")
        return SegmentOutcome(
            status="completed",
            text=text,
            items=_complete_pairs(result.new_items),
            sources=cited_sources(text, result.context_wrapper.context),
            **_usage(result),
        )

    async def _record_step(self, call_id: str, name: str, arguments: str) -> None:
        """The tool call's step, once (from the hooks before the tool runs, or from the stream's event)."""
        written = self._stepped.get(call_id)
        if written is None:  # whichever comes first writes it; the other waits until it is written
            written = self._stepped[call_id] = asyncio.ensure_future(
                self._store.add_tool_step_once(self._run_id, call_id, name, arguments, self._steps.get(call_id))
            )
        await asyncio.shield(written)

    def _in_step(self, call_ids: list[str]) -> None:
        """The calls of one model response, in order: one step, named by the first."""
        if call_ids:
            step_id = tool_step_id(self._run_id, call_ids[0])
            for index, call_id in enumerate(call_ids):
                self._steps.setdefault(call_id, (step_id, index))

    async def _record_response(self, calls: list[tuple[str, str, str]]) -> None:
        """A model response's (call id, tool, arguments), recorded as their step before any of its tools runs."""
        self._in_step([call_id for call_id, _, _ in calls])
        for call_id, name, arguments in calls:
            await self._record_step(call_id, name, arguments)

    async def _on_event(self, event: Any) -> None:
        if isinstance(event, RawResponsesStreamEvent):
            await self._on_raw(event.data)
            return
        if not isinstance(event, RunItemStreamEvent):
            return
        item = event.item
        if event.name == "tool_called" and isinstance(item, ToolCallItem):
            raw = item.raw_item
            call_id = str(getattr(raw, "call_id", "") or "")
            name = str(getattr(raw, "name", "") or "")
            arguments = str(getattr(raw, "arguments", "") or "")
            await self._record_step(call_id, name, arguments)  # a call no tool runs for (refused, unknown)
            await self._emit(ToolCallStarted(self._run_id, call_id, name, arguments))
        elif event.name == "tool_output" and isinstance(item, ToolCallOutputItem):
            output_raw = item.raw_item
            call_id = str(
                output_raw.get("call_id", "") if isinstance(output_raw, dict) else getattr(output_raw, "call_id", "")
            )
            output = item.output if isinstance(item.output, str) else json.dumps(item.output, default=str)
            details = tool_details.take(self._context, call_id)
            tool = await self._store.finish_tool_step(self._run_id, call_id, "completed", output, details)
            await self._emit(ToolCallFinished(self._run_id, call_id, tool or "", output))

    async def _on_raw(self, data: Any) -> None:
        """The model's stream: its words, and its tool calls as it writes them."""
        kind = getattr(data, "type", "")
        if kind in {"response.created", "response.completed"}:  # completed: its text is among the run's items
            self._partial.clear()
            self._written, self._tail = 0, ""
            self._calls.clear()
        delta = getattr(data, "delta", None)
        if kind == "response.output_text.delta" and isinstance(delta, str) and delta:
            await self._text(delta)
        elif kind == "response.output_item.added" and getattr(data.item, "type", "") == "function_call":
            call_id, name = str(data.item.call_id or ""), str(data.item.name or "")
            self._calls[int(data.output_index)] = (call_id, name)
            self._in_step([c for c, _ in self._calls.values()])
            await self._call_delta(call_id, name, "")
        elif kind == "response.function_call_arguments.delta" and isinstance(delta, str) and delta:
            call = self._calls.get(int(getattr(data, "output_index", -1)))
            if call is not None:
                await self._call_delta(*call, delta)

    async def _text(self, delta: str) -> None:
        """Words of the model's message, with the citations they complete (offsets into the message)."""
        before = self._tail
        self._partial.append(delta)
        self._written += len(delta)
        self._tail = (before + delta)[-_MARKER_TAIL:]
        cited: tuple[Citation, ...] = ()
        if "]" in delta and (sources := _sources(self._context)):
            offset = self._written - len(delta) - len(before)  # where ``before`` begins in the message
            cited = tuple(
                replace(c, start_index=c.start_index + offset, end_index=c.end_index + offset)
                for c in completed_by(before + delta, len(before), sources)
            )
        await self._emit(TextDelta(self._run_id, delta, cited))

    async def _call_delta(self, call_id: str, name: str, arguments: str) -> None:
        step_id, index = self._steps.get(call_id, (tool_step_id(self._run_id, call_id), 0))
        await self._emit(ToolCallDelta(self._run_id, step_id, call_id, index, name, arguments))


class _RunHooks(RunHooks[Any]):
    """What must happen before a model call or a tool call, awaited by the run loop before it:

    - a model call is reserved against the run's budgets (when any apply);
    - the tool calls of a model response are recorded as their step before any of them runs (and a
      tool call's step, if it is not yet, before the tool runs), so that a crash in between is known
      to have started a tool (such a run is not answered again: the tool might run twice). The
      stream's own ``tool_called`` event can come after the tool has begun."""

    def __init__(
        self,
        budget: RunBudget | None,
        record: Callable[[str, str, str], Awaitable[None]],
        record_response: Callable[[list[tuple[str, str, str]]], Awaitable[None]],
    ) -> None:
        self._budget = budget
        self._record = record
        self._record_response = record_response

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Any) -> None:
        if isinstance(context, ToolContext):
            await self._record(context.tool_call_id, context.tool_name, context.tool_arguments)

    async def on_llm_end(self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse) -> None:
        calls = [_function_call(item) for item in response.output if getattr(item, "type", "") == "function_call"]
        if calls:
            await self._record_response(calls)

    async def on_llm_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], system_prompt: str | None, input_items: list[Any]
    ) -> None:
        if self._budget is None:
            return
        usage = context.usage
        await self._budget.before_call(
            int(usage.input_tokens or 0), int(usage.output_tokens or 0), system_prompt, input_items, agent.tools
        )


def cited_sources(text: str, context: Any) -> tuple[Source, ...]:
    """The file-search passages the answer cites as [n]; all of them when it cites none by number."""
    sources = _sources(context)
    cited = [s for s in sources if f"[{s.number}]" in text]
    return tuple(cited or sources)


def _sources(context: Any) -> list[Source]:
    """The passages the run's file search returned so far, by number."""
    found = context.get("sources") if isinstance(context, dict) else None
    return [
        Source(int(s["number"]), str(s["file_name"]), str(s.get("location") or ""), s.get("link"), s.get("file_id"))
        for s in found or ()
    ]


def _function_call(item: Any) -> tuple[str, str, str]:
    """(call id, name, arguments) of a model response's function call."""
    return str(item.call_id or ""), str(item.name or ""), str(item.arguments or "")


def _call_id(item: ToolApprovalItem) -> str:
    raw = item.raw_item
    value = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
    return str(value or "")


def _arguments(item: ToolApprovalItem) -> str:
    raw = item.raw_item
    value = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
    return str(value or "")


def _usage(result: Any) -> dict[str, Any]:
    usage = result.context_wrapper.usage
    return {"input_tokens": int(usage.input_tokens or 0), "output_tokens": int(usage.output_tokens or 0)}


def _complete_pairs(new_items: list[Any]) -> list[dict[str, Any]]:
    """The run's items as model input, keeping only tool calls that have their results (and vice versa)."""
    items: list[dict[str, Any]] = []
    for run_item in new_items:
        if isinstance(run_item, ToolApprovalItem):
            continue
        try:
            item = dict(run_item.to_input_item())
        except Exception:  # an item kind that cannot be replayed: leave it out of the history
            _log.debug("skipping %s in history", type(run_item).__name__)
            continue
        items.append(stored(item))
    calls = {i.get("call_id") for i in items if i.get("type") == "function_call"}
    outputs = {i.get("call_id") for i in items if i.get("type") == "function_call_output"}
    paired = calls & outputs
    return [
        i for i in items if i.get("type") not in {"function_call", "function_call_output"} or i.get("call_id") in paired
    ]
