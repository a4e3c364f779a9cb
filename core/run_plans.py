"""How a run is set up, by kind: a chat run (the assistants file, the channel's tools, budgets) or an
API run (the settings its client gave, the client's functions).

The run executor (core/run_executor.py) asks a plan for the agent, input and limits of a run's
first stretch and of its resumption, how long a pause waits and for whom, and what an answer
records beyond the thread's messages; it never asks which kind of run it has.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from agents import Agent, FunctionTool, ModelSettings

from core.api_objects import api_owner
from core.assistants import Assistant, AssistantsConfig
from core.citations import citations
from core.code_files import CODE_FILES, OWNER, CodeFiles
from core.code_outputs import RunOutputs
from core.context import ContextBuilder
from core.knowledge.base import KnowledgeBase
from core.knowledge.passages import RESULTS, in_prompt
from core.knowledge.tool import FILE_SEARCH, run_context
from core.metrics import Metrics
from core.model_client import ModelClient
from core.models import Approval, Author, Run
from core.notices import MCP_TOOLS_UNAVAILABLE
from core.policy import Policy
from core.run_budget import RunBudget, Tell
from core.run_spec import CLIENT_OUTPUT_SECONDS, RunSpec, build_agent
from core.runner import SegmentOutcome
from core.settings import Settings
from core.store.api_runs import RunStore
from core.store.budgets import BudgetStore, Subjects
from core.tokens import TokenCounter
from core.tools.code_interpreter import CODE_INTERPRETER
from core.tools.mcp import McpServers
from core.tools.registry import ToolRegistry

__all__ = ["INDEXING_WAIT_SECONDS", "ApiPlan", "ChatPlan", "Prepared", "RunPlan", "actor", "actor_json"]

# How long an API run waits, before it starts, for files its vector stores are still indexing (this process's).
INDEXING_WAIT_SECONDS = 60.0


@dataclass
class Prepared:
    """What one stretch of a run needs: its agent, what it starts from and its limits.

    ``refusal``: set instead when the run must not start (a budget used up), for the person."""

    agent: Agent[Any] | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] | None = None
    refused: frozenset[str] = frozenset()  # tools the person who asked may not use
    budget: RunBudget | None = None
    refusal: str | None = None


class RunPlan(Protocol):
    async def prepare(self, run: Run) -> Prepared:
        """The first stretch: the thread's context, the agent, the budgets."""
        ...

    async def prepare_resume(self, run: Run, approvals: list[Approval]) -> Prepared:
        """The stretch after a pause (the items come from the paused state)."""
        ...

    def pause(self, run: Run, tool_names: list[str]) -> tuple[frozenset[str], float]:
        """For a paused run: the calls a client answers rather than a person, and how long they wait."""
        ...

    async def answer_ids(self, run: Run, roles: list[str]) -> tuple[list[str | None], str | None]:
        """Ids chosen in advance for the answer's messages and its step (none: random ones)."""
        ...

    async def completed(self, run: Run, outcome: SegmentOutcome) -> None:
        """What an answer records besides the thread's messages."""
        ...


class ChatPlan:
    """A person's message in a conversation: its scope's assistant, files and budgets (core/models.py), the
    tools that person may use."""

    def __init__(
        self,
        settings: Settings,
        assistants: AssistantsConfig,
        tools: ToolRegistry,
        models: ModelClient,
        tokens: TokenCounter,
        context: ContextBuilder,
        knowledge: KnowledgeBase,
        budgets: BudgetStore,
        metrics: Metrics,
        tell: Tell,
        scope: Callable[[str], Awaitable[str]],
        mcp: McpServers | None = None,
    ) -> None:
        self._settings = settings
        self._assistants = assistants
        self._tools = tools
        self._models = models
        self._tokens = tokens
        self._context = context
        self._knowledge = knowledge
        self._budgets = budgets
        self._metrics = metrics
        self._tell = tell
        self._scope = scope  # a conversation → the channel whose files and budgets it shares (Store.scope)
        self._mcp = mcp or McpServers()  # MCP servers' tools, for the assistants that name them
        self._agents: dict[str, Agent[Any]] = {}  # a cache: one built Agent per assistant and tool set

    @property
    def _policy(self) -> Policy:
        return self._assistants.policy

    async def prepare(self, run: Run) -> Prepared:
        scope = await self._scope(run.channel)
        budget = await self._budget(run, scope)
        refusal = await budget.refusal() if budget is not None else None
        if refusal is not None:  # before any model call, the context's summary included
            return Prepared(refusal=refusal)
        assistant = self._assistants.get(run.assistant)
        instructions = self._instructions(assistant)
        person = actor(run.actor)
        mcp_tools: list[FunctionTool] = []
        if assistant.tool_calling:  # a model without tool calling gets none of its servers' tools either
            mcp_tools, down = await self._mcp.for_run(assistant.tools)
            if down:  # the servers said so in the log once; the person who asked is told each time
                await self._tell(run.channel, MCP_TOOLS_UNAVAILABLE.format(servers=_quoted(down)))
        tools = self._offered(assistant, person, mcp_tools)
        context = run_context(run.channel, run.id, scope)
        passages = await self._passages(run, assistant, person, scope, context)
        summary, items = await self._context.build(
            thread_id=run.thread_id,
            up_to_turn=run.trigger_message_id,
            instructions=instructions,
            model=assistant.model,
            budget=assistant.context_tokens,
            fixed_tokens=sum(self._tokens.count(json.dumps(t.params_json_schema)) for t in tools)
            + self._tokens.count(passages),
            run_id=run.id,
        )
        agent = await self._agent(assistant, instructions, summary, person, scope, mcp_tools, passages)
        return Prepared(agent, items, context, self._refused(person), budget)

    async def prepare_resume(self, run: Run, approvals: list[Approval]) -> Prepared:
        summary, _ = await self._context.summary(run.thread_id)
        assistant = self._assistants.get(run.assistant)
        person = actor(run.actor)
        scope = await self._scope(run.channel)
        known = self._mcp.known(assistant.tools)  # up or not: the paused call reconnects its server
        agent = await self._agent(assistant, self._instructions(assistant), summary, person, scope, known)
        return Prepared(agent, refused=self._refused(person), budget=await self._budget(run, scope))

    def pause(self, run: Run, tool_names: list[str]) -> tuple[frozenset[str], float]:
        return frozenset(), self._settings.approval_timeout

    async def answer_ids(self, run: Run, roles: list[str]) -> tuple[list[str | None], str | None]:
        return [], None

    async def completed(self, run: Run, outcome: SegmentOutcome) -> None:
        return None

    def _instructions(self, assistant: Assistant) -> str:
        today = datetime.now(UTC).strftime("%A %d %B %Y")
        return f"{assistant.instructions}\n\nToday is {today} (UTC)."

    def _offered(
        self, assistant: Assistant, person: Author | None, mcp_tools: Sequence[FunctionTool] = ()
    ) -> list[FunctionTool]:
        """The assistant's tools (its MCP servers' given) that ``person`` may use, file search aside; none when
        its model has no tool calling."""
        if not assistant.tool_calling:
            return []
        tools = [*self._tools.select(assistant.tools), *mcp_tools]
        return [t for t in tools if self._policy.may_use(t.name, person)]

    def _may_search(self, assistant: Assistant, person: Author | None) -> bool:
        found = self._tools.channel_tool(FILE_SEARCH, assistant.tools)
        return found is not None and self._policy.may_use(FILE_SEARCH, person)

    async def _passages(
        self, run: Run, assistant: Assistant, person: Author | None, scope: str, context: dict[str, Any]
    ) -> str:
        """For a model without tool calling: the scope's best passages for the question, numbered into the
        run's sources, to put in its instructions ('' for other models, or when nothing matches)."""
        if assistant.tool_calling or not self._may_search(assistant, person):
            return ""
        if not await self._knowledge.searchable(scope):
            return ""
        question = await self._context.question(run.thread_id, run.trigger_message_id)
        if not question.strip():
            return ""
        hits = await self._knowledge.search_many([scope], question, k=RESULTS)
        return in_prompt(hits, context, self._tokens, assistant.context_tokens)

    async def _agent(
        self,
        assistant: Assistant,
        instructions: str,
        summary: str | None,
        person: Author | None,
        scope: str,
        mcp_tools: Sequence[FunctionTool] = (),
        passages: str = "",
    ) -> Agent[Any]:
        """The agent for an assistant and the tools ``person`` may use (reused while its instructions stay the
        same), with file search when the scope's knowledge base has indexed files; a model without tool
        calling gets no tools, and ``passages`` in its instructions instead."""
        if summary:
            instructions += f"\n\nSummary of the earlier conversation in this channel:\n{summary}"
        tools = self._offered(assistant, person, mcp_tools)
        # An MCP server listed anew makes new tool objects: a new agent.
        key = f"{assistant.name}\0{','.join(f'{t.name}:{id(t)}' for t in tools)}"
        agent = self._agents.get(key)
        if agent is None or agent.instructions != instructions:
            agent = self._agents[key] = Agent(
                name=assistant.name,
                instructions=instructions,
                model=self._models.chat_model(assistant.model),
                tools=list(tools),
                model_settings=ModelSettings(temperature=assistant.temperature, include_usage=True),
            )
        # Each run gets an Agent object of its own: openai-agents checks, at every turn, that no run sharing
        # the object changed its tools, by walking all of them (13 % of the CPU at 1,000 concurrent runs).
        if not assistant.tool_calling:
            return agent.clone(instructions=f"{instructions}\n\n{passages}") if passages else agent.clone()
        file_search = self._tools.channel_tool(FILE_SEARCH, assistant.tools)
        if file_search is None or not self._policy.may_use(FILE_SEARCH, person):
            return agent.clone()
        if not await self._knowledge.searchable(scope):
            return agent.clone()
        return agent.clone(tools=[*agent.tools, file_search])

    def _refused(self, person: Author | None) -> frozenset[str]:
        """The tools ``person`` may not use: a call to one of them is answered with a refusal."""
        names = [*self._tools.names(), *self._mcp.names()]
        return frozenset(names) - self._policy.usable(names, person)

    async def _budget(self, run: Run, scope: str) -> RunBudget | None:
        """The budgets that apply to the run (its scope's channel budget, its person's), or None when none do."""
        person = actor(run.actor)
        subjects = Subjects(scope, person.key if person else "", person.name if person else "")
        if not await self._budgets.budgets(subjects, time.time()):
            return None
        return RunBudget(
            self._budgets,
            self._tokens,
            self._tell,
            self._metrics,
            run_id=run.id,
            run_started=run.created_at,
            model=run.model or self._assistants.get(run.assistant).model,
            subjects=subjects,
            conversation=run.channel,
        )


class ApiPlan:
    """A run created over the Assistants-compatible API: the settings it carries, its client's functions, the
    files of its thread and assistant (file search waits for their indexing; the code interpreter gets them and
    keeps what it writes: core/code_files.py, core/code_outputs.py)."""

    def __init__(
        self,
        models: ModelClient,
        tools: ToolRegistry,
        context: ContextBuilder,
        knowledge: KnowledgeBase,
        runs: RunStore,
        code_files: CodeFiles | None = None,
        outputs: RunOutputs | None = None,
    ) -> None:
        self._models = models
        self._tools = tools
        self._context = context
        self._knowledge = knowledge
        self._runs = runs
        self._code_files = code_files
        self._outputs = outputs

    async def prepare(self, run: Run) -> Prepared:
        spec = RunSpec.from_json(run.spec or "{}")
        if spec.collections:
            await self._knowledge.indexed(spec.collections, INDEXING_WAIT_SECONDS)
        summary, items = await self._context.build(
            thread_id=run.thread_id,
            up_to_turn=run.trigger_message_id,
            instructions=spec.instructions,
            model=spec.model,
            budget=spec.context_tokens,
            last_messages=spec.last_messages,
            run_id=run.id,
        )
        context = run_context(run.channel, run.id) | {"collections": list(spec.collections)}
        owner = api_owner(run.channel)
        if self._runs_code(spec) and owner is not None:
            context |= {OWNER: owner, CODE_FILES: list(spec.code_files)}
        return Prepared(await self._agent(spec, summary, {}, owner), items, context)

    async def prepare_resume(self, run: Run, approvals: list[Approval]) -> Prepared:
        spec = RunSpec.from_json(run.spec or "{}")
        summary = None if spec.last_messages is not None else (await self._context.summary(run.thread_id))[0]
        submitted = {a.call_id: a.output or "" for a in approvals if a.kind == "client_output"}
        return Prepared(await self._agent(spec, summary, submitted, api_owner(run.channel)))

    def pause(self, run: Run, tool_names: list[str]) -> tuple[frozenset[str], float]:
        """The client answers its own functions, within the old API's deadline."""
        spec = RunSpec.from_json(run.spec or "{}")
        return frozenset(spec.client_functions(tool_names)), CLIENT_OUTPUT_SECONDS

    async def answer_ids(self, run: Run, roles: list[str]) -> tuple[list[str | None], str | None]:
        """The ids the run's stream announced for its answer."""
        return await self._runs.answer_public_ids(run.id, roles)

    async def completed(self, run: Run, outcome: SegmentOutcome) -> None:
        """The old API's file citations, with the ids the run's owner uploaded; the code interpreter's files in
        the run's messages."""
        if outcome.sources:
            uploads = await self._runs.upload_ids([s.file_id for s in outcome.sources if s.file_id])
            found = citations(outcome.text, outcome.sources, uploads)
            await self._runs.set_annotations(run.id, [asdict(c) for c in found])
        if self._outputs is not None:
            await self._outputs.show(run)

    async def _code_note(self, spec: RunSpec, owner: str | None) -> str:
        """What the run's instructions say of the files its code finds in /mnt/data ("" when none)."""
        if self._code_files is None or owner is None or not spec.code_files or not self._runs_code(spec):
            return ""
        return await self._code_files.note(owner, spec.code_files)

    def _runs_code(self, spec: RunSpec) -> bool:
        """Whether the run may use the code interpreter (it is among its tools, and works here)."""
        names = self._tools.names()
        return CODE_INTERPRETER in names and CODE_INTERPRETER in spec.threadline_tools(names)

    async def _agent(
        self, spec: RunSpec, summary: str | None, outputs: dict[str, str], owner: str | None
    ) -> Agent[Any]:
        instructions = spec.instructions
        if note := await self._code_note(spec, owner):
            instructions = f"{instructions}\n\n{note}" if instructions else note
        if summary:
            instructions += f"\n\nSummary of the earlier conversation in this thread:\n{summary}"
        searchable = bool(spec.collections) and await self._knowledge.searchable(spec.collections)
        return build_agent(
            spec,
            model=self._models.chat_model(spec.model),
            registry=self._tools,
            instructions=instructions,
            outputs=outputs,
            searchable=searchable,
        )


def _quoted(names: list[str]) -> str:
    """'a', 'a' and 'b', 'a', 'b' and 'c'."""
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def actor_json(person: Author) -> str | None:
    """Who asked for a run, as stored with it (only what the policy needs)."""
    if not person.key and not person.roles:
        return None
    return json.dumps({"key": person.key, "roles": list(person.roles), "name": person.name})


def actor(stored: str | None) -> Author | None:
    if not stored:
        return None
    data = json.loads(stored)
    return Author(
        id="",
        name=str(data.get("name") or ""),
        key=str(data.get("key") or ""),
        roles=tuple(str(r) for r in data.get("roles") or ()),
    )
