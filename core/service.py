"""The core service: the one small API every adapter talks to.

    service = await Threadline.open(settings, notify=send_to_channel)
    handle = await service.post(Incoming(channel, author, text, platform_msg_id))
    async for event in handle.events(): ...render...
    await service.decide(approval_id, approve=True, decided_by="U123")

Each thread has one lane: a task that answers the thread's queued runs one at a time, in
the order their messages arrived, and waits while a run needs approval. Lanes exist only
while there is work; every piece of state they act on is in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from agents import Agent, ModelSettings
from agents.run_state import RunState

from core.api_files import ApiFiles
from core.api_objects import ApiObjects
from core.assistants import Assistant, AssistantsConfig, load_assistants
from core.budgets import Budget
from core.citations import citations
from core.context import ContextBuilder
from core.conversation_items import text_of
from core.errors import ThreadlineError
from core.events import (
    ApprovalRequired,
    ApprovalResolved,
    Event,
    RunCompleted,
    RunFailed,
    RunStarted,
)
from core.handles import RunHandle
from core.health import ModelStatus, core_problems
from core.knowledge.base import KnowledgeBase
from core.knowledge.tool import FILE_SEARCH, make_file_search_tool, run_context
from core.logs import log_context
from core.metrics import Metrics
from core.model_client import ModelClient
from core.models import TERMINAL_STATUSES, Approval, Author, Incoming, Run
from core.policy import Policy
from core.process_lease import ProcessLease
from core.retention import RetentionJob
from core.run_budget import RunBudget
from core.run_spec import CLIENT_OUTPUT_SECONDS, RunSpec, build_agent, decision
from core.runner import RunSegment, SegmentOutcome
from core.sandbox.process import SandboxLimits
from core.sandbox.sessions import CodeSessions, SandboxSettings
from core.settings import Settings
from core.store import Store
from core.store.api_runs import RunStore
from core.store.api_threads import NewMessageRow
from core.store.budgets import BudgetStore, Subjects
from core.store.leases import ACTIVE
from core.store.processes import Notice, ProcessStore, Recovered
from core.store.queue import QueueStore
from core.store.store import NewItem
from core.tokens import TokenCounter, load_token_counter
from core.tools.code_interpreter import CODE_INTERPRETER, FileOutbox, make_code_interpreter_tool
from core.tools.registry import ToolRegistry

__all__ = ["AdoptedRenderer", "ApprovalError", "ChannelNotServed", "Notifier", "Threadline"]

_log = logging.getLogger(__name__)

Notifier = Callable[[str, str], Awaitable[None]]
# Shows a run this process took over: (its handle, the platform message id of the question or None).
AdoptedRenderer = Callable[[RunHandle, str | None], Awaitable[None]]

NO_MODEL_MESSAGE = (
    "No model endpoint is configured, so I cannot answer yet. Whoever runs the bot should set "
    "OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL (for a local OpenAI-compatible server) and restart it."
)
RESTART_REASON = "Threadline stopped while this run was queued or in progress."
BUSY_POLL_SECONDS = 0.5  # how often a lane looks again at a thread another process is answering in
TAKEN_OVER_MESSAGE = "Another instance of the bot took over this answer, so it stopped here."
STOPPED_MESSAGE = "I was stopped (the bot is restarting) before I could answer this. Your message is saved; ask again."
SHUTDOWN_REASON = "Threadline was shut down while this run was in progress."


def sandbox_settings(settings: Settings) -> SandboxSettings:
    limits = SandboxLimits(call_seconds=settings.sandbox_call_seconds, memory_mb=settings.sandbox_memory_mb)
    return SandboxSettings(
        python=settings.sandbox_python.absolute(),
        limits=limits,
        idle_seconds=settings.sandbox_idle_minutes * 60,
        max_sessions=settings.sandbox_max_sessions,
        first_uid=settings.sandbox_first_uid,
        cgroup=settings.sandbox_cgroup,
    )


class ApprovalError(ThreadlineError):
    """An approval that cannot be decided (unknown, already decided, expired); the message is for people."""


class ChannelNotServed(ThreadlineError):
    """A message in a channel the policy does not serve; the message (for people) says so."""


class ToolOutputsError(ThreadlineError):
    """Tool outputs a run cannot take (not waiting for them, missing or unknown call ids)."""


@dataclass
class _Lane:
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    segment: asyncio.Task[SegmentOutcome] | None = None
    segment_run: str | None = None
    run: str | None = None  # the run the lane holds (claimed, maybe not yet in a segment)
    cancelled: bool = False  # someone asked to cancel ``run``

    def cancel(self) -> None:
        self.cancelled = True
        if self.segment is not None:
            self.segment.cancel()


class Threadline:
    """Runs assistants on channels' threads. Create with :meth:`open`, finish with :meth:`close`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        assistants: AssistantsConfig,
        tools: ToolRegistry,
        models: ModelClient,
        tokens: TokenCounter,
        http: aiohttp.ClientSession,
        knowledge: KnowledgeBase,
        notify: Notifier | None = None,
        metrics: Metrics | None = None,
        platforms: frozenset[str] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()  # Prometheus series (core/metrics.py); adapters count platform errors
        self.model_status = ModelStatus()  # the model endpoint as the last run found it (readiness)
        self.store = store
        self.assistants = assistants
        self.tools = tools
        self._models = models
        self._tokens = tokens
        self._http = http
        self._notify = notify
        self.knowledge = knowledge
        self.objects = ApiObjects(store, tokens)  # the Assistants-compatible API's objects
        self.runs = RunStore(store)  # and their runs
        self.files = ApiFiles(store, knowledge)  # and their uploads and vector stores, on the knowledge base
        self.budgets = BudgetStore(store, assistants.budgets, assistants.prices)  # spending limits (core/budgets.py)
        self._context = ContextBuilder(store, models, tokens)
        self._lanes: dict[str, _Lane] = {}
        self._handles: dict[str, RunHandle] = {}
        self._agents: dict[str, Agent[Any]] = {}  # a cache: one built Agent per assistant
        self._closing = False
        self._sessions: CodeSessions | None = None  # code interpreter sessions, when a sandbox works here
        self._outbox = FileOutbox()
        self.retention = RetentionJob(
            store, knowledge, days=settings.retention_days, keep_last=settings.retention_keep_last
        )
        self.processes = ProcessStore(store, platforms=platforms, lease_seconds=settings.lease_seconds)
        self._lease = ProcessLease(
            self.processes,
            lease_seconds=settings.lease_seconds,
            restart_reason=RESTART_REASON,
            on_recovered=self._on_recovered,
            deliver=self._deliver,
            on_tick=self._cancel_from_elsewhere,
        )
        self._render_adopted: AdoptedRenderer | None = None
        self._adopted: dict[str, RunHandle] = {}  # runs taken over from a process that is gone, not yet rendered
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        notify: Notifier | None = None,
        metrics: Metrics | None = None,
        platforms: frozenset[str] | set[str] | tuple[str, ...] | None = None,
    ) -> Threadline:
        """Load the assistants file, open and migrate the store, and take over what stopped processes left.

        ``metrics``: an adapter that counts platform calls before the service exists passes its own.
        ``platforms``: the channel platforms this process serves (``slack``, ``discord``, ``console``,
        ``api``; None: all). Only their runs are taken over from stopped processes, and only their
        notices are delivered here; the others wait in the database for a process that serves them.
        """
        metrics = metrics or Metrics()
        assistants = await asyncio.to_thread(load_assistants, settings.assistants_file, default_model=settings.model)
        tokens = await load_token_counter(settings.tokenizer)
        store = await Store.open(settings.db_path)
        http = aiohttp.ClientSession()
        models = ModelClient(settings)
        knowledge = KnowledgeBase(settings, store, models, tokens, metrics)
        outbox = FileOutbox()
        sessions: CodeSessions | None = None
        try:
            extra = []
            if settings.code_interpreter:
                sessions, why = await CodeSessions.open(sandbox_settings(settings), knowledge.contents)
                if sessions is None:
                    _log.warning("the code interpreter is off: %s", why)
                else:
                    timeout = settings.sandbox_call_seconds + 40  # a call, its grace period, a session start
                    extra.append(make_code_interpreter_tool(sessions, outbox, timeout))
            tools = ToolRegistry.build(
                settings, http, assistants.tool_modules, channel_tools=[make_file_search_tool(knowledge)], extra=extra
            )
            assistants.check_tools([*tools.names(), *([] if sessions else [CODE_INTERPRETER])])
        except BaseException:
            if sessions is not None:
                await sessions.close()
            await http.close()
            await models.close()
            await store.close()
            raise
        served = frozenset(platforms) if platforms is not None else None
        service = cls(settings, store, assistants, tools, models, tokens, http, knowledge, notify, metrics, served)
        service._sessions, service._outbox = sessions, outbox
        await service._lease.start()
        await knowledge.recover()
        knowledge.start()
        service.retention.start()
        return service

    async def close(self) -> None:
        """Stop every lane, end the runs this process was answering (each one's watchers are told), release all.

        A run waiting for approval stays paused: its buttons keep working after the next start.
        """
        self._closing = True
        lanes = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        self._lanes.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for run_id in list(self._handles):  # queued runs (one in progress was ended by its lane)
            run = await self.store.get_run(run_id)
            if run.status in ("queued", "in_progress", "cancelling"):
                await self._end(run, "failed", STOPPED_MESSAGE, SHUTDOWN_REASON, [], expect=(run.status,))
        await self._lease.close()
        if self._sessions is not None:
            await self._sessions.close()
        await self.retention.close()
        await self.knowledge.close()
        await self._models.close()
        await self._http.close()
        await self.store.close()

    # -- the adapter-facing API ---------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """Access control from the assistants file's [policy] (core/policy.py)."""
        return self.assistants.policy

    async def post(self, incoming: Incoming) -> RunHandle | None:
        """Store a person's message and queue the answer. None: this platform message was seen before.

        Raises ChannelNotServed (nothing stored) when the policy does not serve the channel.
        """
        refusal = self.policy.refusal(incoming.channel)
        if refusal is not None:
            _log.info("message from %s in %s not served (policy)", incoming.author.key or "?", incoming.channel)
            raise ChannelNotServed(refusal)
        content = f"{incoming.author.name}: {incoming.text}" if incoming.author.name else incoming.text
        item = {"role": "user", "content": content}
        posted = await self.store.post_user_message(
            channel=incoming.channel,
            author_id=incoming.author.id,
            author_name=incoming.author.name,
            text=incoming.text,
            item=item,
            tokens=self._tokens.count_item(item),
            platform_msg_id=incoming.platform_msg_id,
            actor=_actor_json(incoming.author),
        )
        if posted is None:
            _log.info("duplicate delivery of %s in %s ignored", incoming.platform_msg_id, incoming.channel)
            return None
        if self.settings.log_content:  # THREADLINE_LOG_CONTENT=1: a debugging aid, off by default
            _log.debug("message %s in %s: %s", incoming.platform_msg_id, incoming.channel, incoming.text)
        _, run = posted
        handle = self._handle(run)
        self._wake(run.thread_id)
        return handle

    async def decide(
        self, approval_id: str, *, approve: bool, decided_by: str, person: Author | None = None
    ) -> RunHandle:
        """Approve or deny a pending tool call; returns the run's handle (its events go on there).

        ``person``: who pressed, for the policy's ``approve`` rule of the tool (None: nobody in particular).
        """
        approval = await self.store.get_approval(approval_id)
        if approval is None:
            raise ApprovalError("That approval request is unknown here.")
        if approval.kind == "approval" and not self.policy.may_approve(approval.tool_name, person):
            who = person.key if person and person.key else decided_by
            _log.info("%s may not decide %s (%s): refused (policy)", who, approval.id, approval.tool_name)
            raise ApprovalError(f"You may not approve or deny {approval.tool_name} here; ask a channel manager.")
        if approval.status != "pending":
            who = f" by {approval.decided_by}" if approval.decided_by else ""
            raise ApprovalError(f"That request was already {approval.status}{who}.")
        if time.time() >= approval.expires_at:
            raise ApprovalError("That request has expired; ask the assistant again if it is still needed.")
        run = await self.store.get_run(approval.run_id)
        if run.status != "requires_action":
            raise ApprovalError(f"That request is no longer waiting: its run was {run.status}.")
        outcome: Literal["approved", "denied"] = "approved" if approve else "denied"
        if not await self.store.decide_approval(approval_id, outcome, decided_by):
            current = await self.store.get_approval(approval_id)
            status = current.status if current else "decided"
            raise ApprovalError(f"That request was already {status}.")
        handle = self._handle(run)
        handle.put(ApprovalResolved(run.id, approval_id, approval.tool_name, outcome, decided_by))
        self._wake(run.thread_id)
        return handle

    async def approval(self, approval_id: str) -> Approval | None:
        """An approval request: the tool, its arguments and its status (to show it)."""
        return await self.store.get_approval(approval_id)

    async def cancel(self, channel: str) -> int:
        """Cancel the channel's active and queued runs; returns how many were cancelled."""
        runs = await self.store.runs_with_status(["queued", "in_progress", "requires_action"], channel=channel)
        for run in runs:
            await self._cancel(run)
        return len(runs)

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel one run (no-op once it has ended); returns it as it is now (``cancelling`` while it stops)."""
        run = await self.store.get_run(run_id)
        if run.status in ("queued", "in_progress", "requires_action"):
            await self._cancel(run)
        return await self.store.get_run(run_id)

    async def _cancel(self, run: Run) -> None:
        lane = self._lanes.get(run.thread_id)
        if run.status == "in_progress" and lane and lane.run == run.id:
            await self.store.update_run(run.id, status="cancelling")
            lane.cancel()
        elif run.status == "in_progress":  # another process runs it: it stops it at its next tick
            await self.store.update_run_if(run.id, ("in_progress",), status="cancelling")
        elif await self._end(run, "cancelled", "Cancelled.", "cancelled by request", [], expect=(run.status,)):
            self._wake(run.thread_id)  # a lane waiting on this run's approvals moves on
        else:  # it started meanwhile
            current = await self.store.get_run(run.id)
            if current.status == "in_progress":
                await self._cancel(current)

    async def _cancel_from_elsewhere(self) -> None:
        """Runs of this process that another one asked to cancel: stop them."""
        running = {lane.run: lane for lane in self._lanes.values() if lane.run}
        if not running:
            return
        for run_id in await self.processes.cancelling(list(running)):
            running[run_id].cancel()

    # -- runs of the Assistants-compatible API ---------------------------------------------------

    async def queue_run(
        self,
        *,
        channel: str,
        thread_id: str,
        spec: RunSpec,
        assistant_id: str,
        metadata: dict[str, str],
        messages: list[NewMessageRow],
    ) -> tuple[Run, RunHandle]:
        """Queue a run of ``spec`` on an API thread after ``messages``; RunActive while another is going."""
        run = await self.runs.queue(
            channel=channel,
            thread_id=thread_id,
            spec=spec.to_json(),
            assistant_id=assistant_id,
            model=spec.model,
            metadata=metadata,
            expires_at=time.time() + CLIENT_OUTPUT_SECONDS,
            messages=messages,
        )
        handle = self._handle(run)
        self._wake(thread_id)
        return run, handle

    def watch(self, run: Run) -> RunHandle:
        """The run's events from now on (for a stream opened after the run started)."""
        return self._handle(run)

    async def submit_tool_outputs(self, run_id: str, outputs: dict[str, str]) -> RunHandle:
        """Outputs for every call a paused run waits for, by call id; the run goes on."""
        run = await self.store.get_run(run_id)
        if run.status != "requires_action":
            raise ToolOutputsError(f"Runs in status {run.status} do not accept tool outputs.")
        pending = await self.runs.pending_calls(run_id)
        waiting = [a.call_id for a in pending]
        if sorted(outputs) != sorted(waiting):
            raise ToolOutputsError(f"Expected tool outputs for call_ids {sorted(waiting)}, got {sorted(outputs)}.")
        decisions = [(a.id, decision(a.kind, outputs[a.call_id]), outputs[a.call_id]) for a in pending]
        if not await self.runs.record_outputs(run_id, decisions):
            raise ToolOutputsError("The run stopped waiting for these tool outputs (they expired); create a new run.")
        # A fresh handle: its events start here, not with what nobody read before the run paused.
        handle = self._handles[run.id] = RunHandle(run.id, run.channel)
        self._wake(run.thread_id)
        return handle

    async def channel_assistant(self, channel: str) -> Assistant:
        """The assistant the channel uses (the default one unless switched)."""
        _, name = await self.store.channel_info(channel)
        return self.assistants.get(name)

    async def set_channel_assistant(self, channel: str, name: str) -> Assistant:
        """Switch the channel's next runs to the named assistant (KeyError: no such assistant)."""
        assistant = self.assistants.assistants[name]
        await self.store.set_channel_assistant(channel, assistant.name)
        return assistant

    async def reset(self, channel: str) -> str:
        """Start a new thread for the channel; the old one stays stored. Returns the new thread id."""
        return await self.store.reset_thread(channel)

    async def problems(self) -> dict[str, str]:
        """What keeps the core from serving (``database``, ``model``), for readiness checks; empty when ready."""
        return await core_problems(self.settings, self.store, self.model_status)

    async def metrics_exposition(self) -> bytes:
        """``/metrics``: the service's series in Prometheus' text format, with the queue depths counted now."""
        try:
            self.metrics.set_queues(await QueueStore(self.store).depths())
        except Exception as exc:  # the database is down: /readyz says so; the other series are still worth serving
            _log.warning("could not count queued runs for /metrics: %s: %s", type(exc).__name__, exc)
        return self.metrics.exposition()

    async def wait_idle(self) -> None:
        """Wait until no lane has work and nothing this service started is left running (tests, benchmarks)."""
        while tasks := [
            *(lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()),
            *(task for task in self._tasks if not task.done()),
        ]:
            await asyncio.wait(tasks)

    # -- lanes ---------------------------------------------------------------------------------

    def _handle(self, run: Run) -> RunHandle:
        handle = self._handles.get(run.id)
        if handle is None:
            handle = self._handles[run.id] = RunHandle(run.id, run.channel)
        return handle

    def _emit(self, run: Run, event: Event) -> None:
        self.metrics.observe(run, event, prices=self.assistants.prices)
        handle = self._handle(run)
        handle.put(event)
        if handle.done:
            self._handles.pop(run.id, None)
            if self._adopted.pop(run.id, None) is not None:  # taken over, and nobody shows it: post the end
                text = event.text if isinstance(event, RunCompleted) else getattr(event, "message", "")
                if text and run.spec is None:
                    self._own(self._tell(run.channel, text))

    def _wake(self, thread_id: str) -> None:
        if self._closing:
            return
        lane = self._lanes.get(thread_id)
        if lane is None:
            lane = self._lanes[thread_id] = _Lane()
        lane.wake.set()
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._lane(thread_id, lane), name=f"lane {thread_id}")

    async def _lane(self, thread_id: str, lane: _Lane) -> None:
        try:
            while True:
                lane.wake.clear()
                try:
                    worked = await self._step(thread_id, lane)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _log.exception("lane %s: unexpected error; continuing with the next run", thread_id)
                    worked = True
                if not worked and not lane.wake.is_set():
                    return
        finally:
            if self._lanes.get(thread_id) is lane and not self._closing:
                del self._lanes[thread_id]

    async def _step(self, thread_id: str, lane: _Lane) -> bool:
        """Do the thread's next piece of work; False when there is none."""
        kind, run, approvals = await self.store.claim(thread_id, self._resolve_assistant)
        if kind == "busy":  # another process answers in this thread now; a run queued here waits its turn
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), timeout=BUSY_POLL_SECONDS)
            return True
        if run is None:
            return False
        with log_context(channel=run.channel, thread=thread_id, run=run.id):
            if kind != "paused":
                lane.run, lane.cancelled = run.id, False
            try:
                return await self._step_run(kind, run, approvals, lane)
            finally:
                lane.run, lane.cancelled = None, False

    async def _step_run(self, kind: str, run: Run, approvals: list[Approval], lane: _Lane) -> bool:
        if kind == "start":
            await self._guarded(run, self._start(run, lane))
        elif kind == "resume":
            await self._guarded(run, self._resume(run, approvals, lane))
        elif kind == "expire":
            await self._expire(run, approvals)
        else:  # paused: until someone decides, or the first approval expires
            expires = min(a.expires_at for a in approvals if a.status == "pending")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), timeout=max(expires - time.time(), 0))
        return True

    def _resolve_assistant(self, name: str | None) -> tuple[str, str]:
        assistant = self.assistants.get(name)
        return assistant.name, assistant.model

    # -- runs ------------------------------------------------------------------------------------

    async def _guarded(self, run: Run, work: Awaitable[None]) -> None:
        """Run ``work`` for ``run``; an unexpected error fails that run (and only it) instead of leaving it open."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.exception("run %s failed unexpectedly", run.id)
            current = await self.store.get_run(run.id)
            if current.status not in TERMINAL_STATUSES:
                await self._end(
                    current,
                    "failed",
                    "Something went wrong on the bot's side while answering; the details are in its log.",
                    f"{type(exc).__name__}: {exc}"[:2000],
                    [],
                )

    async def _start(self, run: Run, lane: _Lane) -> None:
        self._emit(run, RunStarted(run.id, run.channel))
        if not self.settings.model_configured:
            await self._end(run, "failed", NO_MODEL_MESSAGE, "no model endpoint configured", [])
            if run.trigger_message_id is not None and run.spec is None:  # not to be sent again once a model is set
                await self.store.delete_message(run.trigger_message_id)
            return
        if run.spec is not None:
            await self._start_spec(run, RunSpec.from_json(run.spec), lane)
            return
        budget = await self._run_budget(run)
        refusal = await budget.refusal() if budget is not None else None
        if refusal is not None:  # before any model call, the context's summary included
            await self._end(run, "failed", refusal, "budget used up before the run started", [])
            return
        assistant = self.assistants.get(run.assistant)
        instructions = self._instructions(assistant)
        person = _actor(run.actor)
        tools = [t for t in self.tools.select(assistant.tools) if self.policy.may_use(t.name, person)]
        summary, items = await self._context.build(
            thread_id=run.thread_id,
            up_to_turn=run.trigger_message_id,
            instructions=instructions,
            model=assistant.model,
            budget=assistant.context_tokens,
            fixed_tokens=sum(self._tokens.count(json.dumps(t.params_json_schema)) for t in tools),
            run_id=run.id,
        )
        agent = self._agent(assistant, instructions, summary, person)
        agent = await self._with_channel_tools(agent, assistant, run.channel, person)
        context = run_context(run.channel, run.id)
        await self._segment(run, lane, agent, items, context, refused=self._refused(person), budget=budget)

    async def _start_spec(self, run: Run, spec: RunSpec, lane: _Lane) -> None:
        """A run created over the API: its own settings, its own tools, the client's functions."""
        summary, items = await self._context.build(
            thread_id=run.thread_id,
            up_to_turn=run.trigger_message_id,
            instructions=spec.instructions,
            model=spec.model,
            budget=spec.context_tokens,
            last_messages=spec.last_messages,
            run_id=run.id,
        )
        agent = await self._spec_agent(spec, summary, {})
        context = run_context(run.channel, run.id) | {"collections": list(spec.collections)}
        await self._segment(run, lane, agent, items, context)

    async def _spec_agent(self, spec: RunSpec, summary: str | None, outputs: dict[str, str]) -> Agent[Any]:
        instructions = spec.instructions
        if summary:
            instructions += f"\n\nSummary of the earlier conversation in this thread:\n{summary}"
        searchable = bool(spec.collections) and await self.knowledge.searchable(spec.collections)
        return build_agent(
            spec,
            model=self._models.chat_model(spec.model),
            registry=self.tools,
            instructions=instructions,
            outputs=outputs,
            searchable=searchable,
        )

    async def _resume(self, run: Run, approvals: list[Approval], lane: _Lane) -> None:
        summary, _ = await self.store.thread_summary(run.thread_id)
        if run.spec is not None:
            spec = RunSpec.from_json(run.spec)
            submitted = {a.call_id: a.output or "" for a in approvals if a.kind == "client_output"}
            agent = await self._spec_agent(spec, None if spec.last_messages is not None else summary, submitted)
            refused = frozenset[str]()
        else:
            assistant = self.assistants.get(run.assistant)
            person = _actor(run.actor)
            agent = self._agent(assistant, self._instructions(assistant), summary, person)
            agent = await self._with_channel_tools(agent, assistant, run.channel, person)
            refused = self._refused(person)
        try:
            state = await RunState.from_json(agent, json.loads(run.state_json or "{}"))
        except Exception as exc:
            _log.exception("run %s: paused state cannot be restored", run.id)
            await self._end(
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
        run = await self.store.update_run(run.id, state_json=None)
        await self._segment(run, lane, agent, state, refused=refused, budget=await self._run_budget(run))

    async def _segment(
        self,
        run: Run,
        lane: _Lane,
        agent: Agent[Any],
        start: Any,
        context: dict[str, Any] | None = None,
        *,
        refused: frozenset[str] = frozenset(),
        budget: RunBudget | None = None,
    ) -> None:
        segment = RunSegment(
            self.store,
            run_id=run.id,
            emit=self._emitter(run),
            timeout=self.settings.run_timeout,
            tracing=self.settings.tracing,
            refused=refused,
            budget=budget,
        )
        if lane.cancelled:  # asked to stop before it got here
            await self._end(run, "cancelled", "Cancelled.", "cancelled by request", [])
            return
        task = asyncio.create_task(segment.execute(agent, start, context), name=f"run {run.id}")
        lane.segment, lane.segment_run = task, run.id
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # the service is shutting down
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await self._end(run, "failed", STOPPED_MESSAGE, SHUTDOWN_REASON, [])
            raise
        finally:
            lane.segment, lane.segment_run = None, None
        if task.cancelled():
            await self._end(run, "cancelled", "Cancelled.", "cancelled by request", [])
            return
        outcome = task.result()
        self.model_status.record(outcome.model_error)
        usage: dict[str, Any] = {"input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens}
        if outcome.status == "completed":
            items = self._new_items(outcome.items)
            ids: tuple[list[str | None], str | None] = ([], None)
            if run.spec is not None:  # an API run: its answer gets the ids its streams announced
                ids = await self.runs.answer_public_ids(run.id, [role for role, *_ in items])
            finished = await self.store.finish_run(
                run, status="completed", items=items, public_ids=ids[0], step_id=ids[1], expect=ACTIVE, **usage
            )
            if finished is None:
                self._taken_over(run)
                return
            run = finished
            if run.spec is not None and outcome.sources:
                await self._annotate(run, outcome)
            self._emit(run, RunCompleted(run.id, outcome.text, outcome.sources))
        elif outcome.status == "requires_action":
            client: frozenset[str] = frozenset()
            seconds = self.settings.approval_timeout
            if run.spec is not None:  # an API run: the client answers, within the old API's deadline
                client = frozenset(RunSpec.from_json(run.spec).client_functions(self.tools.names()))
                seconds = CLIENT_OUTPUT_SECONDS
            expires_at = time.time() + seconds
            # The approvals first: a run another process sees paused always has them.
            approvals = await self.store.add_approvals(
                run.id, [(p.call_id, p.tool, p.arguments) for p in outcome.pending], expires_at, client
            )
            paused = await self.store.finish_run(
                run, status="requires_action", state_json=outcome.state_json, expect=ACTIVE, **usage
            )
            if paused is None:
                self._taken_over(run)
                return
            run = paused
            if run.spec is not None:
                run = await self.store.update_run(run.id, expires_at=expires_at)
            for approval in approvals:
                self._emit(
                    run,
                    ApprovalRequired(run.id, approval.id, approval.tool_name, approval.arguments, expires_at),
                )
        elif not await self._end(
            run, outcome.status, outcome.message, outcome.error, outcome.items, expect=ACTIVE, **usage
        ):
            self._taken_over(run)
            return
        if budget is not None and outcome.input_tokens + outcome.output_tokens:
            await budget.after()

    def _taken_over(self, run: Run) -> None:
        """The run was taken from this process while it ran (its lease ran out): its result is not recorded."""
        _log.error("run %s was taken over by another process while this one ran it; its result is dropped", run.id)
        self._emit(run, RunFailed(run.id, "failed", TAKEN_OVER_MESSAGE))

    async def _annotate(self, run: Run, outcome: SegmentOutcome) -> None:
        """An API run's answer gets the old API's file citations, with the ids its owner uploaded."""
        uploads = await self.runs.upload_ids([s.file_id for s in outcome.sources if s.file_id])
        found = citations(outcome.text, outcome.sources, uploads)
        await self.runs.set_annotations(run.id, [asdict(c) for c in found])

    async def _expire(self, run: Run, pending: list[Approval]) -> None:
        """The claim marked ``pending`` expired and took the run: end it, and say so."""
        live = run.id in self._handles  # someone is watching this run; otherwise tell the channel
        for approval in pending:
            self._emit(run, ApprovalResolved(run.id, approval.id, approval.tool_name, "expired", None))
        tools = ", ".join(sorted({a.tool_name for a in pending}))
        minutes = self.settings.approval_timeout / 60
        message = (
            f"Nobody approved {tools} within {minutes:g} minutes, so it was not run. Ask again if it is still needed."
        )
        await self._end(run, "expired", message, "approval expired", [])
        if not live:
            await self._tell(run.channel, message)

    async def _end(
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
        ended = await self.store.finish_run(
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
        self._emit(ended, RunFailed(ended.id, status, message))  # type: ignore[arg-type]
        return True

    def _emitter(self, run: Run) -> Callable[[Event], Awaitable[None]]:
        async def emit(event: Event) -> None:
            self._emit(run, event)
            if event.type == "tool_call_finished":
                for output in self._outbox.take(run.id):
                    self._emit(run, output)

        return emit

    # -- helpers -----------------------------------------------------------------------------------

    def _instructions(self, assistant: Assistant) -> str:
        today = datetime.now(UTC).strftime("%A %d %B %Y")
        return f"{assistant.instructions}\n\nToday is {today} (UTC)."

    def _agent(self, assistant: Assistant, instructions: str, summary: str | None, person: Author | None) -> Agent[Any]:
        """The openai-agents Agent for an assistant and the tools ``person`` may use; reused while its
        instructions stay the same."""
        if summary:
            instructions += f"\n\nSummary of the earlier conversation in this channel:\n{summary}"
        tools = [t for t in self.tools.select(assistant.tools) if self.policy.may_use(t.name, person)]
        key = f"{assistant.name}\0{','.join(t.name for t in tools)}"
        cached = self._agents.get(key)
        if cached is not None and cached.instructions == instructions:
            return cached
        agent = self._agents[key] = Agent(
            name=assistant.name,
            instructions=instructions,
            model=self._models.chat_model(assistant.model),
            tools=list(tools),
            model_settings=ModelSettings(temperature=assistant.temperature, include_usage=True),
        )
        return agent

    async def _run_budget(self, run: Run) -> RunBudget | None:
        """The budgets of a chat run, or None when none apply (API runs have none)."""
        if run.spec is not None:
            return None
        person = _actor(run.actor)
        subjects = Subjects(run.channel, person.key if person else "", person.name if person else "")
        budgets: list[Budget] = await self.budgets.budgets(subjects, time.time())
        if not budgets:
            return None
        return RunBudget(
            self.budgets,
            self._tokens,
            self._tell,
            self.metrics,
            run_id=run.id,
            run_started=run.created_at,
            model=run.model or self.assistants.get(run.assistant).model,
            subjects=subjects,
        )

    def _refused(self, person: Author | None) -> frozenset[str]:
        """The tools ``person`` may not use: a call to one of them is answered with a refusal."""
        return frozenset(self.tools.names()) - self.policy.usable(self.tools.names(), person)

    async def _with_channel_tools(
        self, agent: Agent[Any], assistant: Assistant, channel: str, person: Author | None
    ) -> Agent[Any]:
        """``agent`` plus file search when the assistant and ``person`` may use it and the channel has indexed files."""
        file_search = self.tools.channel_tool(FILE_SEARCH, assistant.tools)
        if not self.policy.may_use(FILE_SEARCH, person):
            return agent
        if file_search is None or not await self.knowledge.searchable(channel):
            return agent
        return agent.clone(tools=[*agent.tools, file_search])

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

    async def _tell(self, channel: str, text: str) -> None:
        """A message for a channel outside any run's stream. Sent now when this process serves the channel;
        kept in the database for a process that does otherwise, or when sending fails (tried again)."""
        if self.processes.serves(channel):
            if self._notify is None:
                _log.info("no notifier; a message for %s was not delivered", channel)
                return
            try:
                await self._notify(channel, text)
                return
            except Exception as exc:
                _log.warning("could not tell channel %s (%s: %s); trying again later", channel, type(exc).__name__, exc)
        await self.processes.queue_notice(channel, text)
        self._lease.poke()

    async def _deliver(self, notice: Notice) -> None:
        """A notice waiting in the database for this process's platforms (raises: tried again later)."""
        if self._notify is None:
            raise RuntimeError("this process has no way to post to its channels")
        await self._notify(notice.channel, notice.text)

    async def _on_recovered(self, found: Recovered) -> None:
        """Runs this process took over from processes that are gone: answer, or tell the channel once."""
        by_channel: dict[str, int] = {}
        for run in found.failed:
            by_channel[run.channel] = by_channel.get(run.channel, 0) + 1
        for channel, count in by_channel.items():
            what = "a message" if count == 1 else f"{count} messages"
            await self._tell(
                channel,
                f"I was restarted while answering {what} here, after I had started using a tool, so I did not "
                "finish. Your messages are saved; please ask again.",
            )
        for run in found.adopted:
            self._adopted[run.id] = self._handle(run)
            self._hand_over(run.id)
            self._wake(run.thread_id)
        for thread_id in found.paused_threads:
            if thread_id not in self._lanes:
                self._wake(thread_id)

    def adopt_with(self, render: AdoptedRenderer) -> None:
        """Show runs this process takes over (their question was asked through a process that is gone)
        with ``render(handle, platform_msg_id of the question)``, as the adapter shows its own runs.
        Without one, such a run's answer is posted to its channel as a plain message."""
        self._render_adopted = render
        for run_id in list(self._adopted):
            self._hand_over(run_id)

    def _hand_over(self, run_id: str) -> None:
        render = self._render_adopted
        handle = self._adopted.get(run_id)
        if render is None or handle is None:
            return
        del self._adopted[run_id]

        async def show() -> None:
            try:
                await render(handle, await self.store.question_msg_id(run_id))
            except Exception:
                _log.exception("could not show run %s, taken over from a stopped process", run_id)

        self._own(show())

    def _own(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _actor_json(person: Author) -> str | None:
    """Who asked for a run, as stored with it (only what the policy needs)."""
    if not person.key and not person.roles:
        return None
    return json.dumps({"key": person.key, "roles": list(person.roles), "name": person.name})


def _actor(stored: str | None) -> Author | None:
    if not stored:
        return None
    data = json.loads(stored)
    return Author(
        id="",
        name=str(data.get("name") or ""),
        key=str(data.get("key") or ""),
        roles=tuple(str(r) for r in data.get("roles") or ()),
    )
