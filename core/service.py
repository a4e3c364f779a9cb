"""The core service: the one small API every adapter talks to.

    service = await Threadline.open(settings, notify=send_to_channel, platforms={"slack"})
    handle = await service.post(Incoming(channel, author, text, platform_msg_id))
    received = await service.receive(Incoming(..., images=(SharedImage(...),)))  # and what to tell the person
    # a Slack thread: Incoming(conversation_key(channel, thread_ts), ..., context=(its first message, ...));
    # a Discord thread: Incoming(thread_key, ..., scope=parent_channel_key)
    async for event in handle.events(): ...render...
    await service.decide(approval_id, approve=True, decided_by="U123")

The path of a message through the core, module by module: this facade stores it and wakes the
thread's lane (core/lanes.py), which claims the thread's next run and hands it to the run
executor (core/run_executor.py); a run plan (core/run_plans.py) sets the run up by its kind, and
core/runner.py streams it on openai-agents. Its events reach the adapter through its handle
(core/run_handles.py). core/process_lease.py and core/takeover.py are this process's part in a
database other processes share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from core.api_files import ApiFiles
from core.api_objects import ApiObjects
from core.assistants import Assistant, AssistantsConfig, load_assistants
from core.attachments import ThreadFiles
from core.code_files import CodeFiles
from core.code_outputs import RunOutputs
from core.context import ContextBuilder
from core.errors import ThreadlineError
from core.events import ApprovalResolved, RunFailed
from core.feedback import Feedback
from core.handles import RunHandle
from core.health import ModelStatus, core_problems
from core.image_inputs import ImageInputs
from core.image_intake import ImageIntake, TakenImages
from core.images import IMAGE_TOKENS, ReadyImage, seen_placeholder, user_message
from core.installations import Installations
from core.knowledge.base import KnowledgeBase
from core.knowledge.tool import make_file_search_tool
from core.lanes import Lane, Lanes
from core.metrics import Metrics
from core.model_client import ModelClient
from core.models import Approval, Author, Incoming, Run
from core.policy import Policy
from core.process_lease import ProcessLease
from core.retention import RetentionJob
from core.run_executor import RESTARTING_MESSAGE, SHUTDOWN_REASON, STOPPED_MESSAGE, RunExecutor
from core.run_handles import RunHandles
from core.run_plans import ApiPlan, ChatPlan, actor_json
from core.run_spec import CLIENT_OUTPUT_SECONDS, RunSpec, decision
from core.sandbox.process import SandboxLimits
from core.sandbox.sessions import CodeSessions, SandboxSettings
from core.settings import Settings
from core.store import Store
from core.store.api_files import ApiFileStore
from core.store.api_runs import RunStore
from core.store.api_threads import NewMessageRow, ThreadStore
from core.store.budgets import BudgetStore
from core.store.conversations import ConversationState, conversation_state, exchange
from core.store.deliveries import first_delivery
from core.store.feedback import FeedbackStore
from core.store.images import ImageRow
from core.store.processes import ProcessStore
from core.store.queue import QueueStore
from core.store.store import ClaimKind, NewItem
from core.takeover import AdoptedRenderer, CutOff, CutOffRenderer, Notifier, Takeover
from core.tokens import TokenCounter, load_token_counter
from core.tools.code_interpreter import CODE_INTERPRETER, FileOutbox, make_code_interpreter_tool
from core.tools.mcp import McpServers
from core.tools.registry import ToolRegistry

__all__ = [
    "RESTART_REASON",
    "SHUTDOWN_REASON",
    "AdoptedRenderer",
    "ApprovalError",
    "ChannelNotServed",
    "CutOff",
    "CutOffRenderer",
    "Notifier",
    "Received",
    "Threadline",
    "ToolOutputsError",
]

_log = logging.getLogger(__name__)

RESTART_REASON = "Threadline stopped while this run was queued or in progress."
# How long a message that stored nothing (images alone, none shown) is remembered, to tell the person once
# when the platform delivers it again.
IMAGE_NOTICE_SECONDS = 3600


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


@dataclass(frozen=True)
class Received:
    """What became of a person's message: the run answering it (None: a repeated delivery, or nothing to
    answer), and a short message for that person about its images (None: nothing to tell)."""

    handle: RunHandle | None
    notice: str | None = None


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
        sessions: CodeSessions | None = None,
        outbox: FileOutbox | None = None,
        mcp: McpServers | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()  # Prometheus series (core/metrics.py); adapters count platform errors
        self.model_status = ModelStatus()  # the model endpoint as the last run found it (readiness)
        self.store = store
        self.assistants = assistants
        self.tools = tools
        self.mcp = mcp or McpServers()  # MCP tool servers (core/tools/mcp.py)
        self._models = models
        self._tokens = tokens
        self._http = http
        self._sessions = sessions  # code interpreter sessions, when a sandbox works here
        self.knowledge = knowledge
        image_bytes = int(settings.max_image_mb * 1024 * 1024)
        self._images = ImageIntake(settings.max_image_mb)  # images that come with people's messages
        self.files = ApiFiles(store, knowledge)  # the Assistants-compatible API's uploads and vector stores
        thread_files = ThreadFiles(ApiFileStore(store), self.files.vector_stores, ThreadStore(store))
        self.objects = ApiObjects(store, tokens, settings.max_image_mb, thread_files)  # and its objects
        self.runs = RunStore(store)  # and their runs
        self.run_outputs = RunOutputs(store)  # the files their code interpreter wrote (core/code_outputs.py)
        self.budgets = BudgetStore(store, assistants.budgets, assistants.prices)  # spending limits (core/budgets.py)
        self.feedback = Feedback(FeedbackStore(store), self.metrics)  # votes on answers (core/feedback.py)
        self.retention = RetentionJob(
            store, knowledge, days=settings.retention_days, keep_last=settings.retention_keep_last
        )
        self.processes = ProcessStore(store, platforms=platforms, lease_seconds=settings.lease_seconds)
        self._closing = False
        self._handles = RunHandles(self.metrics, assistants.prices)
        self._lanes = Lanes(store, self._work, self._resolve_assistant, concurrent_runs=settings.concurrent_runs)
        self.metrics.watch_run_slots(self._lanes.slots)
        self._takeover = Takeover(store, self.processes, self._handles, notify, self._lanes.wake, self._lanes.has)
        # what each run is given of its thread
        context = self._context = ContextBuilder(store, models, tokens, ImageInputs(store, image_bytes))
        chat = ChatPlan(
            settings, assistants, tools, models, tokens, context, knowledge, self.budgets, self.metrics,
            self._takeover.tell, store.scope, self.mcp,
        )  # fmt: skip
        api = ApiPlan(models, tools, context, knowledge, self.runs, CodeFiles(ApiFileStore(store)), self.run_outputs)
        self._executor = RunExecutor(
            settings, store, tools, tokens, self._handles, self.model_status, outbox or FileOutbox(), (chat, api),
            self._takeover.tell,
        )  # fmt: skip
        self._lease = ProcessLease(
            self.processes,
            lease_seconds=settings.lease_seconds,
            restart_reason=RESTART_REASON,
            on_recovered=self._takeover.recovered,
            deliver=self._takeover.deliver,
            on_tick=self._tick,
        )
        self._takeover.poke = self._lease.poke

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
        store = await Store.open(settings.db_path, url=settings.database_url)
        http = aiohttp.ClientSession()
        models = ModelClient(settings)
        knowledge = KnowledgeBase(settings, store, models, tokens, metrics)
        outbox = FileOutbox()
        sessions: CodeSessions | None = None
        mcp: McpServers | None = None
        try:
            extra = []
            if settings.code_interpreter:
                sessions, why = await CodeSessions.open(sandbox_settings(settings), knowledge.contents)
                if sessions is None:
                    _log.warning("the code interpreter is off: %s", why)
                else:
                    timeout = settings.sandbox_call_seconds + 40  # a call, its grace period, a session start
                    files = CodeFiles(ApiFileStore(store))  # an API run's files in and out
                    extra.append(make_code_interpreter_tool(sessions, outbox, timeout, files))
            tools = ToolRegistry.build(
                settings, http, assistants.tool_modules, channel_tools=[make_file_search_tool(knowledge)], extra=extra
            )
            assistants.check_tools([*tools.names(), *([] if sessions else [CODE_INTERPRETER])])
            mcp = await McpServers.open(assistants.mcp_servers, settings.environ)
        except BaseException:
            if mcp is not None:
                await mcp.close()
            if sessions is not None:
                await sessions.close()
            await http.close()
            await models.close()
            await store.close()
            raise
        served = frozenset(platforms) if platforms is not None else None
        service = cls(
            settings, store, assistants, tools, models, tokens, http, knowledge, notify, metrics, served,
            sessions, outbox, mcp,
        )  # fmt: skip
        await service._lease.start()
        await knowledge.recover()
        await knowledge.describe_vector_search()
        knowledge.start()
        service.retention.start()
        return service

    async def close(self) -> None:
        """Stop gracefully: hand this process's work over instead of failing it, then release all.

        No new work is taken from the first moment. Runs in progress get ``shutdown_grace_seconds`` to
        finish; those still going are then left as recovery after a crash would leave them: queued again
        (owner cleared), to be answered from the start by a process still running or by the next start, or,
        when they had started a tool (which cannot safely run twice), closed and their channel told once.
        Queued runs stay queued, and their watchers are told the answer will follow. A run waiting for
        approval stays paused: its buttons keep working after the next start. Last, this process retires
        from the database, so that the others take what it left at their next lease tick.
        """
        self._closing = True
        self._lanes.stop_claiming()
        if running := self._lanes.busy():
            await asyncio.wait(running, timeout=self.settings.shutdown_grace_seconds)
        await self._lanes.close()  # cut off what is still running: left in progress, owned here
        try:
            await self._hand_over()
        except Exception as exc:  # the database is down: what is left is recovered as after a crash
            _log.warning("could not hand this process's runs over: %s: %s", type(exc).__name__, exc)
        await self._takeover.close()
        await self._lease.close()
        if self._sessions is not None:
            await self._sessions.close()
        await self.mcp.close()
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

    async def first_delivery(self, parts: tuple[str, ...], ttl: float) -> bool:
        """A platform delivery that stores nothing of its own (a slash command), identified by ``parts``:
        True the first time any process on the database sees it within ``ttl`` seconds, then False."""
        return await first_delivery(self.store, parts, ttl)

    def installations(self, platform: str) -> Installations:
        """Where ``platform``'s installations into many workspaces are kept (Slack's OAuth install)."""
        return Installations(self.store, platform)

    async def conversation_state(self, key: str) -> ConversationState:
        """Whether the conversation ``key`` is known (ever posted to) and whether its thread has begun."""
        return await conversation_state(self.store, key)

    async def exchange(self, key: str, platform_msg_id: str) -> list[dict[str, str]]:
        """The person's message stored under ``platform_msg_id`` in conversation ``key`` and the answer to it,
        as ``Incoming.context`` items for a conversation that continues it (a Slack thread under a mention);
        [] when that message is not stored."""
        return await exchange(self.store, key, platform_msg_id)

    async def post(self, incoming: Incoming) -> RunHandle | None:
        """Store a person's message and queue the answer. None: this platform message was seen before.

        The message joins its conversation's thread (``incoming.channel``, a conversation key: see
        core/models.py); the conversation's scope (``incoming.scope`` when the adapter names it,
        remembered from then on) decides the policy, the assistant, the budgets and the files searched.
        Raises ChannelNotServed when the policy does not serve the scope: nothing is stored, but the scope
        the adapter named (so that later commands in the conversation are refused too). A message with
        images goes through :meth:`receive`, which also says what to tell the person about them.
        """
        return (await self.receive(incoming)).handle

    async def receive(self, incoming: Incoming) -> Received:
        """:meth:`post`, for a message that may carry images (``incoming.images``; core/images.py).

        The images are shown to the model when the conversation's assistant has ``vision = true``; the
        notice says, in one message, which were not and why (an assistant without vision, a kind or size
        not shown, a failed download). Images alone with none shown store nothing and run nothing: only
        the notice, once per platform message. A repeated delivery of a stored message tells nothing.
        """
        refusal = await self._refusal(incoming.channel, incoming.scope)
        if refusal is not None:
            _log.info("message from %s in %s not served (policy)", incoming.author.key or "?", incoming.channel)
            if incoming.scope is not None:
                await self.store.set_scope(incoming.channel, incoming.scope)
            raise ChannelNotServed(refusal)
        images = await self._take_images(incoming)
        if incoming.images and not incoming.text.strip() and not images.ready:
            first = incoming.platform_msg_id is None or await self.first_delivery(
                ("images", incoming.channel, incoming.platform_msg_id), IMAGE_NOTICE_SECONDS
            )
            if not first:
                _log.info(
                    "images of %s in %s were told of before: not again", incoming.platform_msg_id, incoming.channel
                )
            return Received(None, images.notice if first else None)
        text, item = user_message(incoming.author.name, incoming.text, images.ready, images.left_out)
        posted = await self.store.post_user_message(
            channel=incoming.channel,
            author_id=incoming.author.id,
            author_name=incoming.author.name,
            text=text,
            item=item,
            tokens=self._tokens.count_item(item),
            platform_msg_id=incoming.platform_msg_id,
            actor=actor_json(incoming.author),
            scope=incoming.scope,
            context=[self._context_item(i) for i in incoming.context],
            images=[self._image_row(image) for image in images.ready],
        )
        if posted is None:
            _log.info("duplicate delivery of %s in %s ignored", incoming.platform_msg_id, incoming.channel)
            return Received(None)
        if self.settings.log_content:  # THREADLINE_LOG_CONTENT=1: a debugging aid, off by default
            _log.debug("message %s in %s: %s", incoming.platform_msg_id, incoming.channel, incoming.text)
        _, run = posted
        handle = self._handles.get(run)
        self._lanes.wake(run.thread_id)
        return Received(handle, images.notice)

    def _image_row(self, image: ReadyImage) -> ImageRow:
        """An image to keep with its message, and what the message costs less once its run has shown it."""
        saved = IMAGE_TOKENS - self._tokens.count(seen_placeholder(image.name))
        return ImageRow(image.id, image.name, image.mime, image.data, saved)

    async def _take_images(self, incoming: Incoming) -> TakenImages:
        """The message's images checked for its conversation's assistant: those it is shown, and what to say."""
        if not incoming.images:
            return TakenImages()
        assistant = await self.channel_assistant(incoming.scope or incoming.channel)
        taken = await self._images.take(incoming.images, vision=assistant.vision, assistant=assistant.name)
        if taken.left_out:
            _log.info(
                "%d of %d images of %s in %s not shown (%s)",
                len(taken.left_out),
                len(incoming.images),
                incoming.platform_msg_id,
                incoming.channel,
                "vision is off" if not assistant.vision else "refused",
            )
        return taken

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
        handle = self._handles.get(run)
        handle.put(ApprovalResolved(run.id, approval_id, approval.tool_name, outcome, decided_by))
        self._lanes.wake(run.thread_id)
        return handle

    async def approval(self, approval_id: str) -> Approval | None:
        """An approval request: the tool, its arguments and its status (to show it)."""
        return await self.store.get_approval(approval_id)

    async def cancel(self, channel: str) -> int:
        """Cancel the conversation's active and queued runs (not those of its scope's other conversations);
        returns how many were cancelled."""
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

    async def showing(self, run_id: str, reply_ref: str) -> None:
        """The adapter's message that shows the run's answer (a Slack ts; on Discord the ids of its messages),
        kept with the run: a process that takes the run over after a crash replaces it (see :meth:`earlier_reply`)."""
        await self.store.set_reply_ref(run_id, reply_ref)

    async def earlier_reply(self, run_id: str) -> str | None:
        """For a run taken over: the message in which a process that is gone had begun its answer, if any."""
        return await self.store.reply_ref(run_id)

    def adopt_with(self, render: AdoptedRenderer, cut_off: CutOffRenderer | None = None) -> None:
        """Show runs this process takes over (their question was asked through a process that is gone)
        with ``render(handle, platform_msg_id of the question)``, as the adapter shows its own runs.
        Without one, such a run's answer is posted to its channel as a plain message. ``cut_off``: tells of a
        run a restart closed after it had started a tool, where its answer was going (without one: its channel)."""
        self._takeover.adopt_with(render, cut_off)

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
        handle = self._handles.get(run)
        self._lanes.wake(thread_id)
        return run, handle

    def watch(self, run: Run) -> RunHandle:
        """The run's events from now on (for a stream opened after the run started)."""
        return self._handles.get(run)

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
        handle = self._handles.fresh(run)
        self._lanes.wake(run.thread_id)
        return handle

    # -- channels ----------------------------------------------------------------------------------

    async def channel_assistant(self, channel: str) -> Assistant:
        """The assistant the conversation uses: its scope's (the default one unless switched)."""
        _, name = await self.store.channel_info(channel)
        return self.assistants.get(name)

    async def set_channel_assistant(self, channel: str, name: str) -> Assistant:
        """Switch the next runs of the conversation's scope, in all its conversations, to the named assistant
        (KeyError: no such assistant)."""
        assistant = self.assistants.assistants[name]
        await self.store.set_channel_assistant(channel, assistant.name)
        return assistant

    async def reset(self, channel: str) -> str:
        """Start a new thread for the conversation (only this one: not its scope's other conversations); the
        old one stays stored. Returns the new thread id."""
        return await self.store.reset_thread(channel)

    async def scope(self, conversation: str, explicit: str | None = None) -> str:
        """The channel whose knowledge base, assistant, policy and budgets ``conversation`` shares (itself for
        a channel's own conversation; see core/models.py). ``explicit``: the adapter knows it (a Discord
        thread's parent channel); it is recorded, so later lookups without it find the same."""
        if explicit is None:
            return await self.store.scope(conversation)
        await self.store.set_scope(conversation, explicit)
        return explicit

    # -- operating it ------------------------------------------------------------------------------

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
        while tasks := [*self._lanes.busy(), *self._takeover.busy()]:
            await asyncio.wait(tasks)

    # -- inside ------------------------------------------------------------------------------------

    async def _work(self, kind: ClaimKind, run: Run, approvals: list[Approval], lane: Lane) -> None:
        if kind == "take":  # left by a process that is gone, found before recovery did: shown as one it finds
            self._takeover.adopt(run)
        await self._executor.work(kind, run, approvals, lane)

    async def _hand_over(self) -> None:
        """At a stop, once no lane runs: leave this process's runs as recovery would, and tell whoever watches them."""
        left = await self.processes.hand_over(SHUTDOWN_REASON)
        if left.requeued or left.failed:
            _log.warning(
                "stopping: left %d runs in progress queued again for another process or the next start, and closed %d "
                "that had started a tool",
                len(left.requeued),
                len(left.failed),
            )
        unwatched: list[Run] = []
        for run in left.failed:
            if self._handles.watched(run.id):  # shown where its answer was being written
                self._handles.emit(run, RunFailed(run.id, "failed", STOPPED_MESSAGE))
            else:
                unwatched.append(run)
        await self._takeover.cut_off(unwatched)  # as recovery tells them: once a channel
        for run in left.cancelled:
            self._handles.emit(run, RunFailed(run.id, "cancelled", "Cancelled."))
        for run_id in self._handles.run_ids():  # queued now: the runs cut off, and those that waited their turn
            run = await self.store.get_run(run_id)
            if run.status == "queued":
                self._handles.emit(run, RunFailed(run.id, "failed", RESTARTING_MESSAGE, handed_over=True))

    async def _refusal(self, conversation: str, scope: str | None) -> str | None:
        """Why the policy does not serve the conversation's scope (``scope`` when the adapter names it), or None."""
        if self.policy.serves_every_channel:  # the usual case: no scope to look up
            return None
        return self.policy.refusal(scope or await self.store.scope(conversation))

    def _context_item(self, item: dict[str, Any]) -> NewItem:
        """One item a new conversation begins with (Incoming.context), as the store keeps it."""
        role, content = item.get("role"), item.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise ValueError(f"a context item is {{'role': 'user' | 'assistant', 'content': str}}, not {item!r}")
        plain = {"role": role, "content": content}
        return role, content, plain, self._tokens.count_item(plain)

    def _resolve_assistant(self, name: str | None) -> tuple[str, str]:
        assistant = self.assistants.get(name)
        return assistant.name, assistant.model

    async def _cancel(self, run: Run) -> None:
        lane = self._lanes.get(run.thread_id)
        if run.status == "in_progress" and lane and lane.run == run.id:
            await self.store.update_run(run.id, status="cancelling")
            lane.cancel()
        elif run.status == "in_progress":  # another process runs it: it stops it at its next tick
            await self.store.update_run_if(run.id, ("in_progress",), status="cancelling")
        elif await self._executor.end(run, "cancelled", "Cancelled.", "cancelled by request", [], expect=(run.status,)):
            self._lanes.wake(run.thread_id)  # a lane waiting on this run's approvals moves on
        else:  # it started meanwhile
            current = await self.store.get_run(run.id)
            if current.status == "in_progress":
                await self._cancel(current)

    async def _tick(self) -> None:
        """At every tick of the lease (5 s at the most): stop the runs another process asked to cancel, and
        fail the files a process that is gone left half-indexed (their redeliveries would find them in progress)."""
        holding = self._lanes.holding()
        if holding:
            for run_id in await self.processes.cancelling(list(holding)):
                holding[run_id].cancel()
        await self.knowledge.recover()
