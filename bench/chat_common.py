"""What the chat-platform benchmarks (Slack, Discord) share: the bare-SDK reference, CPU accounting, load sides.

* the reference A: :func:`bare_call` streams one request with the openai SDK and times its first and
  last content tokens; :func:`sdk_parameters`, :func:`kwargs_for` and :func:`retag` turn a captured
  request body (the one the bot sent) into the SDK's keyword arguments, with another tag;
* CPU accounting from /proc: :func:`process_cpu_s`, :func:`machine_busy_s`, :func:`others_cpu_s`,
  :func:`children_cpu`, and the machine's accept-queue counters (:func:`tcp_counters`);
* what the platform saw of a question: :class:`Answer` (one at a time), :class:`Delivery` (under load);
* the core's public seams watched: :class:`CoreWatch` (when each message reaches
  ``Threadline.receive``, when each answer completes, the core's phases) and :class:`Phases`, with
  :func:`phase_medians`;
* under load: :class:`Run` (one side's samples), :func:`measuring` (its wall, CPU and lag),
  :func:`follow_queues` (each channel's answers in order), :func:`run_bare` (A, an ideal queue of
  bare SDK calls), :func:`run_core` (C, the same messages posted straight to the core) and
  :func:`check_store` (each channel's thread in the store: questions and answers alternating, in
  order, each right).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import inspect
import itertools
import json
import math
import os
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import openai

from bench.chat_model import message_tag, reply_text
from bench.common import REPO, LagTicker, ModelServer, bench_settings, summary
from bench.fake_server import request_digest
from core.events import Event, RunCompleted
from core.handles import RunHandle
from core.models import Incoming
from core.models import Run as RunRow
from core.service import Received, Threadline

__all__ = [
    "TCP_COUNTERS",
    "Answer",
    "BareTimes",
    "CoreWatch",
    "Delivery",
    "Phases",
    "Question",
    "Run",
    "bare_call",
    "bodies_match",
    "check_store",
    "children_cpu",
    "code_version",
    "follow_queues",
    "kwargs_for",
    "machine_busy_s",
    "measuring",
    "others_cpu_s",
    "phase_medians",
    "process_cpu_s",
    "retag",
    "run_bare",
    "run_core",
    "sdk_parameters",
    "tcp_counters",
]

TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts")


def code_version(*folders: str) -> dict[str, Any]:
    """Which code was measured: the git commit, whether ``folders`` changed since, and a digest of their *.py.

    The adapters and the core are being worked on while these benchmarks run: this tells results apart.
    """
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", *folders], cwd=REPO, capture_output=True, text=True)
        changed = bool(dirty.stdout.strip())
    except OSError:
        head, changed = "", True
    return {
        "git_head": head,
        "changed_since_head": changed,
        "folders": list(folders),
        "py_sha256": digest.hexdigest()[:16],
    }


# == the reference: the bare openai SDK ===========================================================


@dataclass
class BareTimes:
    first: float
    last: float
    end: float
    text: str


async def bare_call(client: openai.AsyncOpenAI, kwargs: dict[str, Any]) -> BareTimes:
    """One streaming call; seconds from the call to its first and last content token and to its end."""
    start = time.monotonic()
    first = last = float("nan")
    parts: list[str] = []
    stream = await client.chat.completions.create(**kwargs)
    async for chunk in stream:
        if chunk.choices and (content := chunk.choices[0].delta.content):
            now = time.monotonic()
            if not parts:
                first = now
            last = now
            parts.append(content)
    end = time.monotonic()
    return BareTimes(first - start, last - start, end - start, "".join(parts))


def sdk_parameters() -> set[str]:
    probe = openai.AsyncOpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")
    return set(inspect.signature(probe.chat.completions.create).parameters)


def kwargs_for(body: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The SDK's keyword arguments that send exactly ``body``."""
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def retag(body: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``body`` with the tag ``#old`` swapped for ``#new`` (tags of one width keep every length the same)."""
    text = json.dumps(body)
    if text.count(f"#{old}") < 1:
        raise AssertionError(f"the tag #{old} is not in the captured body")
    swapped: dict[str, Any] = json.loads(text.replace(f"#{old}", f"#{new}"))
    return swapped


def bodies_match(bodies: list[dict[str, Any]], mentions: int) -> bool:
    """Every measured B request (tag ``L…``) and its A twin (tag ``A…``) had the same body, but for the tag."""
    by_tag: dict[str, list[str]] = {}
    for body in bodies:
        tag = message_tag(str(body["messages"][-1]["content"]))
        if tag.startswith("L"):
            body = retag(body, tag, "A" + tag[1:])
        by_tag.setdefault(tag[1:], []).append(request_digest(body))
    return len(by_tag) == mentions and all(len(d) == 2 and d[0] == d[1] for d in by_tag.values())


# == CPU and the machine ==========================================================================


def process_cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU time the whole machine has spent busy (all CPUs, all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def others_cpu_s(*pids: int) -> float:
    """CPU time so far of everything on the machine but this process and ``pids`` (a noise indicator)."""
    return machine_busy_s() - time.process_time() - sum(process_cpu_s(pid) for pid in pids)


def children_cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU so far of each named process, of this one (``bot``), and of everything else on the machine (``others``)."""
    mine = {name: process_cpu_s(pid) for name, pid in pids.items()} | {"bot": time.process_time()}
    return mine | {"others": machine_busy_s() - sum(mine.values())}


def tcp_counters() -> dict[str, int]:
    """The machine's TCP counters that show a full accept queue (each costs a client a SYN retransmit: 1 s)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    values = dict(zip(lines[0][1:], lines[1][1:], strict=True))
    return {name: int(values.get(name, 0)) for name in TCP_COUNTERS}


# == phases inside the bot ========================================================================


class Phases:
    """Monotonic stamps of what happens inside the bot, for the one mention in flight."""

    def __init__(self) -> None:
        self.now: dict[str, float] = {}

    def first(self, label: str) -> None:
        self.now.setdefault(label, time.monotonic())

    def last(self, label: str) -> None:
        self.now[label] = time.monotonic()


def phase_medians(phases: list[dict[str, float]]) -> dict[str, float]:
    labels: dict[str, list[float]] = {}
    for one in phases:
        for label, ms in one.items():
            labels.setdefault(label, []).append(ms)
    medians = {label: statistics.median(values) for label, values in labels.items()}
    return dict(sorted(medians.items(), key=lambda kv: kv[1]))


# == one question at a time =======================================================================


@dataclass
class Answer:
    """What the platform saw of one question answered alone: monotonic stamps, checks, calls."""

    origin: float  # the question reached the bot (the event's POST, the MESSAGE_CREATE's dispatch)
    first_text: float  # the first answer text on screen
    complete: float  # the whole answer on screen
    problems: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # the bot's platform calls for it, by method or route
    columns: dict[str, float] = field(default_factory=dict)  # the platform's own figures, kept per pair
    stamps: dict[str, float] = field(default_factory=dict)  # labelled platform stamps, for the phase table

    @property
    def first_visible_s(self) -> float:
        return self.first_text - self.origin

    @property
    def complete_s(self) -> float:
        return self.complete - self.origin


# == under load ===================================================================================


class Question(Protocol):
    """A message to the bot: its tag (``#tag`` in the text) and the answer the scripted model gives it."""

    @property
    def tag(self) -> str: ...

    def expected(self, words: int) -> str: ...


Q = TypeVar("Q", bound=Question)


@dataclass
class Run:
    side: str
    repeat: int
    first_s: list[float] = field(default_factory=list)  # arrival to the first answer text / first token
    complete_s: list[float] = field(default_factory=list)  # arrival to the complete answer / last token
    service_s: list[float] = field(default_factory=list)  # later of arrival and previous completion; A: the call
    call_end_s: list[float] = field(default_factory=list)  # A: the call, to the end of its stream
    to_core_s: list[float] = field(default_factory=list)  # from the platform's event to Threadline.post
    ack_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    lags_s: list[float] = field(default_factory=list)
    children_cpu_s: dict[str, float] = field(default_factory=dict)  # the model's, the platform's, this, the rest
    model_served_s: list[float] = field(default_factory=list)  # how long the model took per request, as it saw it
    tcp: dict[str, int] = field(default_factory=dict)  # the machine's accept-queue counters during the load
    methods: dict[str, int] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "repeat": self.repeat,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "first_s": summary(self.first_s),
            "complete_s": summary(self.complete_s),
            "service_s": summary(self.service_s),
            "ack_s": summary(self.ack_s),
            "to_core_s": summary(self.to_core_s),
            "lag_ms": {k: v * 1000 if k != "n" else v for k, v in summary(self.lags_s).items()},
            "model_served_s": summary(self.model_served_s),
            "children_cpu_s": self.children_cpu_s,
            "tcp_during_load": self.tcp,
            "methods": self.methods,
            "checks": self.checks,
            "samples": {
                "first_s": self.first_s,
                "complete_s": self.complete_s,
                "service_s": self.service_s,
                "ack_s": self.ack_s,
                "to_core_s": self.to_core_s,
            },
        }


class CoreWatch:
    """Stamps from the public seams of a running bot's core, the way a test spies on them.

    ``reached``: when each message reached ``Threadline.receive`` (the adapters' way in), by its platform id;
    ``completed``: when each answer's ``RunCompleted`` was emitted, by the tag it names (the service feeds
    every event to ``service.metrics.observe``). With ``phases`` set, the core's phases of the one
    message in flight are stamped too. Only the instance's attributes are replaced, and put back.
    """

    def __init__(self) -> None:
        self.reached: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.phases: Phases | None = None

    @contextlib.contextmanager
    def watching(self, service: Threadline) -> Iterator[None]:
        receive, observe = service.receive, service.metrics.observe

        async def spy_receive(incoming: Incoming) -> Received:
            self.reached.setdefault(incoming.platform_msg_id or "", time.monotonic())
            received = await receive(incoming)
            if self.phases is not None:
                self.phases.first("core: receive() returned (message stored, run queued)")
            return received

        def spy_observe(run: RunRow, event: Event, **kwargs: Any) -> None:
            observe(run, event, **kwargs)
            if event.type == "run_completed":
                self.completed.setdefault(message_tag(event.text), time.monotonic())
            if self.phases is None:
                return
            if event.type == "text_delta":
                self.phases.first("core: first text delta")
                self.phases.last("core: last text delta")
            elif event.type in ("run_started", "run_completed", "run_failed"):
                self.phases.first(f"core: {event.type}")

        service.receive = spy_receive  # type: ignore[method-assign]
        service.metrics.observe = spy_observe  # type: ignore[method-assign]
        try:
            yield
        finally:
            del service.receive, service.metrics.observe  # the class's methods again


async def check_store(
    service: Threadline, threads: Sequence[tuple[str, Sequence[tuple[str, str]]]], words: int
) -> dict[str, Any]:
    """Each channel's thread in the core's store: the questions and answers, alternating, in order, each right.

    ``threads``: (the channel's key, [(a question's text as the core stores it, its expected answer), ...]).
    """
    store = service.store
    examples: list[str] = []
    lost = duplicated = wrong = misordered = runs_not_completed = 0
    for key, channel in threads:
        thread = await store.current_thread(key)
        messages = await store.thread_messages(thread)
        runs = await store.thread_runs(thread)
        runs_not_completed += sum(r.status != "completed" for r in runs) + max(0, len(channel) - len(runs))
        users = [m for m in messages if m.role == "user"]
        answers = [m for m in messages if m.role == "assistant"]
        lost += max(0, len(channel) - len(users)) + max(0, len(channel) - len(answers))
        duplicated += max(0, len(users) - len(channel)) + max(0, len(answers) - len(channel))
        expected_texts: list[str] = []
        for question, answer in channel:
            expected_texts += [question, answer]
        if [m.text for m in messages] != expected_texts:
            misordered += 1
            if len(examples) < 3:
                examples.append(" ".join(f"{m.role[0]}:{message_tag(m.text)}" for m in messages))
        # An answer is right when it answers the question just before it (even in a thread out of order).
        for before, after in itertools.pairwise(messages):
            if after.role == "assistant":
                right = before.role == "user" and after.text == reply_text(before.text, words)
                wrong += not right
    return {
        "store_lost": lost,
        "store_duplicated": duplicated,
        "store_wrong_answer": wrong,
        "store_threads_out_of_order": misordered,
        "store_runs_not_completed": runs_not_completed,
        "store_out_of_order_examples": examples,
    }


@contextlib.asynccontextmanager
async def measuring(run: Run, ticker: LagTicker, pids: Mapping[str, int]) -> AsyncIterator[float]:
    """Measure the block into ``run``: wall and CPU time, the loop's lag, the CPU of ``pids`` and of the rest of
    the machine, the accept-queue counters. Yields the monotonic start."""
    gc.collect()
    ticker.start()
    tcp_before = tcp_counters()
    children_before = children_cpu(pids)
    cpu = time.process_time()
    start = time.monotonic()
    yield start
    run.wall_s = time.monotonic() - start
    run.cpu_s = time.process_time() - cpu
    await ticker.stop()
    run.lags_s = ticker.lags
    run.tcp = {k: v - tcp_before[k] for k, v in tcp_counters().items()}
    run.children_cpu_s = {k: v - children_before[k] for k, v in children_cpu(pids).items()}


@dataclass
class Delivery:
    """What the platform saw of one message under load: its platform id and monotonic stamps."""

    id: str
    origin: float  # the message reached the bot (the event's POST, the MESSAGE_CREATE's dispatch)
    first_text: float = math.nan  # the first answer text on screen
    complete: float = math.nan  # the whole answer on screen


def follow_queues(run: Run, plan: Sequence[Sequence[Delivery | None]], reached: Mapping[str, float]) -> int:
    """Each channel's deliveries in order into ``run`` (first, complete, service, to the core); how many
    messages reached the core (``reached``: platform id -> stamp) before an earlier one of their channel."""
    overtaking = 0
    for channel in plan:
        order = [reached.get(d.id, math.inf) if d is not None else math.inf for d in channel]
        overtaking += sum(any(later < order[k] for later in order[k + 1 :]) for k in range(len(order)))
        previous_done = -math.inf
        for d in channel:
            if d is None:
                continue
            if d.id in reached:
                run.to_core_s.append(reached[d.id] - d.origin)
            if math.isnan(d.complete):
                continue
            run.first_s.append(d.first_text - d.origin)
            run.complete_s.append(d.complete - d.origin)
            run.service_s.append(d.complete - max(d.origin, previous_done))
            previous_done = d.complete
    return overtaking


async def run_bare(
    model: ModelServer,
    pids: Mapping[str, int],
    plan: Sequence[Sequence[Question]],
    bodies: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    repeat: int,
    ticker: LagTicker,
) -> Run:
    """A, the bare SDK as an ideal queue: one sequential caller per channel, on the same schedule.

    A channel's ``k``-th message arrives ``k * args.gap`` s after the start; its call starts when it
    has arrived and the previous answer is done, and sends the body B sent for it (``bodies`` by tag).
    ``pids``: the other processes whose CPU is accounted (the model's, the platform's).
    """
    run = Run("A", repeat)
    known = sdk_parameters()
    client = openai.AsyncOpenAI(api_key="sk-bench-not-a-real-key", base_url=model.base_url, max_retries=0)
    wrong = failed = 0
    try:
        await model.command("reset")

        async def channel_calls(channel: Sequence[Question]) -> None:
            nonlocal wrong, failed
            for k, m in enumerate(channel):
                arrival = base + k * args.gap
                await asyncio.sleep(max(0.0, arrival - time.monotonic()))
                started = time.monotonic()
                try:
                    bare = await bare_call(client, kwargs_for(bodies[m.tag], known))
                except openai.OpenAIError:
                    failed += 1
                    continue
                wrong += bare.text != m.expected(args.words)
                run.first_s.append(started + bare.first - arrival)
                run.complete_s.append(started + bare.last - arrival)
                run.service_s.append(bare.last)
                run.call_end_s.append(bare.end)

        async with measuring(run, ticker, pids) as base:
            await asyncio.gather(*(channel_calls(channel) for channel in plan))
        run.model_served_s = (await model.command("served"))["served"]
        sent = (await model.command("bodies"))["bodies"]
        run.checks = {
            "calls": sum(len(c) for c in plan),
            "wrong": wrong,
            "failed": failed,
            "bodies_as_B": sorted(request_digest(b) for b in sent)
            == sorted(request_digest(b) for b in bodies.values()),
        }
    finally:
        await client.close()
    return run


async def run_core(
    model: ModelServer,
    pids: Mapping[str, int],
    db: Path,
    plan: Sequence[Sequence[Q]],
    args: argparse.Namespace,
    repeat: int,
    ticker: LagTicker,
    *,
    incoming: Callable[[Q], Incoming],
    warm: Q,
) -> tuple[Run, list[dict[str, Any]]]:
    """C: the same schedule posted straight to ``Threadline.post`` (what the adapter would post), read from the handles.

    ``incoming`` builds what the adapter posts for a message; ``warm`` is posted (untimed) first.
    """
    run = Run("C", repeat)
    service = await Threadline.open(bench_settings(model.base_url, db))
    wrong = failed = 0

    async def follow(handle: RunHandle | None, arrival: float, m: Q) -> tuple[float, float]:
        nonlocal wrong, failed
        first = float("nan")
        last: Event | None = None
        if handle is None:
            failed += 1
            return first, first
        async for event in handle.events():
            if event.type == "text_delta" and math.isnan(first):
                first = time.monotonic()
            last = event
        if not isinstance(last, RunCompleted):
            failed += 1
        elif last.text != m.expected(args.words):
            wrong += 1
        return first - arrival, time.monotonic() - arrival

    try:
        await follow(await service.post(incoming(warm)), time.monotonic(), warm)
        await service.wait_idle()
        await model.command("reset")

        async def channel_posts(channel: Sequence[Q]) -> None:
            follows = []
            for k, m in enumerate(channel):
                arrival = base + k * args.gap
                await asyncio.sleep(max(0.0, arrival - time.monotonic()))
                follows.append(asyncio.create_task(follow(await service.post(incoming(m)), arrival, m)))
            previous_done = float("-inf")
            for k, times in enumerate(await asyncio.gather(*follows)):
                arrival = base + k * args.gap
                run.first_s.append(times[0])
                run.complete_s.append(times[1])
                run.service_s.append(arrival + times[1] - max(arrival, previous_done))
                previous_done = arrival + times[1]

        async with measuring(run, ticker, pids) as base:
            await asyncio.gather(*(channel_posts(channel) for channel in plan))
        run.model_served_s = (await model.command("served"))["served"]
        await service.wait_idle()
        bodies: list[dict[str, Any]] = (await model.command("bodies"))["bodies"]
        run.checks = {"posts": sum(len(c) for c in plan), "wrong": wrong, "failed": failed}
    finally:
        await service.close()
    return run, bodies
