"""Soak: 10,000 mixed events over 500 channels, through processes that start, die and restart on one database.

    .venv/bin/python -m bench.soak [--events 10000] [--channels 500] [--rate 50] [--seed 1]

The model is :mod:`bench.soak_server` (its own process, 127.0.0.1): plain questions, questions that
call a tool (``soak_lookup`` from :mod:`bench.soak_tools`, 0.3 s, named in an assistants file in a
temporary directory), questions whose first request gets a 429 or a 500 (the openai SDK retries),
and a few that get a 500 every time (the run fails). Each question is one platform message with
its own ``platform_msg_id``; 10 % of the events are the same message delivered again (a third of
them within 50 ms, possibly through the other process; the rest 0.5–20 s later).

The processes are :mod:`bench.worker` children, each its own :class:`Threadline` on one database
file, as bot processes behind one Slack app would be; every event goes to one of the live
processes at random, as Slack spreads events over connections. The timeline, in shares of the
load's duration T = events / rate:

* 0: process A starts alone; the channels appear one after another over the first half (a
  channel's first message creates it);
* 0.2 T: process B starts;
* 0.5 T: A is killed with SIGKILL (``--kill-in-tool-window``: at the first moment after 0.5 T
  when one of A's tools is running while its run's tool step is not yet in the database). Events A
  had been sent but had not acknowledged (stored) are delivered again, to B, as a platform
  redelivers what was not acknowledged;
* 0.65 T: A' (A restarted: a new process) starts; from then on events go to A' or B.

Afterwards, with every process idle and no run left queued or in progress, the database and the
processes' reports are checked question by question:

* **lost**: a question with no stored message, no run, a run that did not end, or an outcome its
  channel was never told (the answer on the run's live handle or through ``notify``; a failure
  likewise; for a run cut off after its tool started, the restart notice);
* **duplicated**: a question stored, run, answered or told more than once; a duplicate delivery
  that was not ignored;
* **wrongly failed**: a failed run that is neither a scripted ``fail`` question nor one of A's
  runs that had started its tool when A was killed;
* **tool ran twice**: one question's tool started more than once (the core must not re-run a tool:
  a run cut off after its tool started is failed, not answered again from the start).

Also reported: per-process event-loop lag, RSS and gc pauses, how often questions were asked again
from the start, how long a tool had been running before its step was recorded, latencies, and the
workers' log lines by level. ``--precreate`` creates the channels before the load, around the
core bug that makes a channel's first message fail in one process while another writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ModelServer, child_server, forbid_non_loopback, machine, percentile, write_result
from bench.soak_server import answer_text
from bench.worker import WorkerProcess, lag_report
from core.model_client import describe_model_error
from core.service import RESTART_REASON
from core.store import Store

RESTART_NOTICE = re.compile(r"^I was restarted while answering (a message|(\d+) messages) here")
ANSWER = re.compile(r"^re: (q\d{5})")
START_TIMEOUT = 120.0


@dataclass
class Question:
    index: int
    qid: str
    channel: str
    kind: str
    at: float  # seconds after the start of the load: its first delivery

    @property
    def msg_id(self) -> str:
        return f"1700000000.{self.index:06d}"

    @property
    def text(self) -> str:
        return f"{self.qid} {self.kind}: question {self.index} in this channel, what is the status of its ticket?"


@dataclass
class Delivery:
    tag: str
    question: Question
    at: float
    duplicate: bool = False
    redelivery_of: str | None = None
    sent_to: str | None = None
    sent_at: float | None = None
    ack: str | None = None  # "stored", "ignored" (a duplicate), "error"
    ack_at: float | None = None
    run_id: str | None = None
    error: str | None = None


@dataclass
class Told:
    worker: str
    how: str  # "live" (the run's handle in the process that posted it) or "notify"
    status: str
    text: str
    t: float


@dataclass
class Soak:
    args: argparse.Namespace
    tmp: Path
    questions: list[Question]
    deliveries: list[Delivery]
    by_tag: dict[str, Delivery] = field(default_factory=dict)
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    live: list[WorkerProcess] = field(default_factory=list)
    unacked: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    results: dict[str, list[Told]] = field(default_factory=lambda: defaultdict(list))  # by question id
    notices: list[tuple[str, str, str, float]] = field(default_factory=list)  # worker, channel, text, t
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # the last measures of each worker
    timeline: dict[str, float] = field(default_factory=dict)  # what happened when (seconds after t0)
    counts: dict[str, int] = field(default_factory=dict)
    process_ids: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    killed_wall: float = 0.0  # time.time() of the SIGKILL
    t0: float = 0.0
    base_url: str = ""
    db: Path = field(default_factory=Path)
    events_seen: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.by_tag = {d.tag: d for d in self.deliveries}

    # -- the workers' reports ----------------------------------------------------------------

    def on_event(self, worker: WorkerProcess, event: dict[str, Any]) -> None:
        self.events_seen += 1
        kind = event.get("ev")
        if kind in ("posted", "post_error"):
            delivery = self.by_tag[event["tag"]]
            self.unacked[worker.name].discard(delivery.tag)
            delivery.ack_at = time.monotonic()
            if kind == "post_error":
                delivery.ack, delivery.error = "error", str(event.get("error"))
            else:
                delivery.run_id = event.get("run_id")
                delivery.ack = "stored" if delivery.run_id else "ignored"
        elif kind == "result":
            delivery = self.by_tag[event["tag"]]
            told = Told(worker.name, "live", str(event["status"]), str(event["text"]), float(event.get("t") or 0))
            self.results[delivery.question.qid].append(told)
        elif kind == "notify":
            self.notices.append((worker.name, str(event["channel"]), str(event["text"]), float(event["t"])))

    # -- the processes ---------------------------------------------------------------------

    async def start_worker(self, name: str) -> WorkerProcess:
        settings: dict[str, Any] = {
            "assistants_file": str(self.tmp / "assistants.toml"),
            "lease_seconds": self.args.lease_seconds,
            "model_max_retries": self.args.model_max_retries,
        }
        config = {"base_url": self.base_url, "db": str(self.db), "settings": settings, "log_level": "WARNING"}
        worker = await WorkerProcess.start(
            name, config, stderr=self.tmp / f"{name}.log", on_event=self.on_event, start_timeout=START_TIMEOUT
        )
        await worker.call("measure", on=True)
        self.workers[name] = worker
        self.process_ids[name] = str(worker.hello["process_id"])
        self.pids[name] = worker.pid
        return worker

    async def join(self, name: str) -> None:
        self.timeline[f"{name} starting"] = self.now()
        worker = await self.start_worker(name)
        self.live.append(worker)
        self.timeline[f"{name} ready"] = self.now()

    async def kill(self, name: str) -> None:
        worker = self.workers[name]
        with_stats = await worker.call("stats", wait_s=30)
        self.stats[name] = with_stats
        if self.args.kill_in_tool_window:
            self.counts["SIGKILL while a tool ran without its step in the database"] = await self.tool_window(worker)
        self.live.remove(worker)
        self.killed_wall = time.time()
        worker.kill()
        self.timeline[f"{name} killed"] = self.now()
        await worker.wait()  # reaped, and every line it wrote before it died read
        again = sorted(self.unacked.pop(name, set()), key=lambda tag: self.by_tag[tag].at)
        self.counts[f"deliveries {name} had not acknowledged, delivered again"] = len(again)
        for tag in again:
            first = self.by_tag[tag]
            delivery = Delivery(f"{tag}r", first.question, self.now(), first.duplicate, redelivery_of=tag)
            self.deliveries.append(delivery)
            self.by_tag[delivery.tag] = delivery
            await self.send(delivery)

    async def tool_window(self, worker: WorkerProcess, wait_s: float = 20.0) -> int:
        """Wait (at most ``wait_s``) until one of ``worker``'s tools has started and its run's tool step is not
        in the database yet; returns how many such tools there are now (0: none came, killed anyway)."""
        log = self.tmp / "tools.jsonl"
        offset = log.stat().st_size if log.exists() else 0
        recent: dict[str, float] = {}
        deadline = time.monotonic() + wait_s
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)) as conn:
            while time.monotonic() < deadline:
                if log.exists():
                    with log.open("rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                    complete = chunk[: chunk.rfind(b"\n") + 1]
                    offset += len(complete)
                    for line in complete.splitlines():
                        record = json.loads(line)
                        if record["pid"] == worker.pid:
                            if record["phase"] == "start":
                                recent[record["q"]] = time.monotonic()
                            else:
                                recent.pop(record["q"], None)
                unrecorded = [
                    q
                    for q in recent
                    if conn.execute(
                        "SELECT 1 FROM run_steps WHERE type = 'tool_calls' AND arguments LIKE ?", [f'%"{q}"%']
                    ).fetchone()
                    is None
                ]
                if unrecorded:
                    self.counts["questions whose tool ran without its step when A was killed"] = len(unrecorded)
                    return len(unrecorded)
                await asyncio.sleep(0.002)
        return 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def send(self, delivery: Delivery) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.live:  # between a kill and the next start (bounded)
            if time.monotonic() > deadline:
                raise RuntimeError("no live process to deliver to")
            await asyncio.sleep(0.05)
        worker = self.rng.choice(self.live)
        q = delivery.question
        delivery.sent_to, delivery.sent_at = worker.name, time.monotonic()
        self.unacked[worker.name].add(delivery.tag)
        worker.send("post", tag=delivery.tag, channel=q.channel, text=q.text, msg_id=q.msg_id)
        await worker.drain()

    async def poll_stats(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            for worker in list(self.live):
                try:
                    self.stats[worker.name] = await worker.call("stats", wait_s=30)
                except Exception:  # killed meanwhile
                    continue

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        T = self.args.events / self.args.rate
        if self.args.precreate:
            store = await Store.open(self.db)
            try:
                for channel in sorted({q.channel for q in self.questions}):
                    await store.current_thread(channel)
            finally:
                await store.close()
        first = await self.start_worker("A")
        self.live.append(first)
        self.t0 = time.monotonic()
        poller = asyncio.create_task(self.poll_stats())

        async def controller() -> None:
            await asyncio.sleep(0.2 * T)
            await self.join("B")
            await asyncio.sleep(max(0.0, 0.5 * T - self.now()))
            await self.kill("A")
            await asyncio.sleep(max(0.0, 0.65 * T - self.now()))
            await self.join("A2")

        control = asyncio.create_task(controller())
        for delivery in sorted(self.deliveries, key=lambda d: d.at):
            wait = delivery.at - self.now()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.send(delivery)
        self.timeline["all delivered"] = self.now()
        await asyncio.wait_for(control, timeout=3 * START_TIMEOUT)
        await self.drain()
        self.timeline["drained"] = self.now()
        poller.cancel()
        for name, worker in list(self.workers.items()):
            if worker in self.live:
                self.stats[name] = await worker.close()
        self.timeline["closed"] = self.now()

    async def drain(self) -> None:
        """Until every process is idle, no run is left queued or in progress, and nothing new is reported."""
        deadline = time.monotonic() + self.args.drain_timeout
        while time.monotonic() < deadline:
            await asyncio.gather(*(w.call("idle", wait_s=self.args.drain_timeout) for w in self.live))
            seen = self.events_seen
            await asyncio.sleep(self.args.lease_seconds / 3 + 1.0)  # a recovery tick of every process
            if self.events_seen == seen and open_runs(self.db) == 0 and not any(self.unacked.values()):
                return
        self.timeline["drain timed out"] = self.now()


def open_runs(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        row = conn.execute("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'in_progress', 'cancelling')")
        return int(row.fetchone()[0])


# -- the plan ----------------------------------------------------------------------------------------


def plan(args: argparse.Namespace, rng: random.Random) -> tuple[list[Question], list[Delivery]]:
    T = args.events / args.rate
    duplicates = round(args.events * args.duplicates)
    distinct = args.events - duplicates
    channels: int = args.channels

    first = max(1, channels // 5)  # channels there from the start; the others appear over 0.1 T .. 0.6 T

    def join_time(c: int) -> float:
        return 2.0 * c / first if c < first else (0.1 + 0.5 * (c - first) / max(1, channels - first)) * T

    def joined(t: float) -> int:
        return max(1, sum(1 for c in range(channels) if join_time(c) <= t))

    slots: list[tuple[float, int]] = [(join_time(c), c) for c in range(channels)]
    while len(slots) < distinct:
        t = rng.uniform(0, T)
        c = rng.randrange(joined(t))
        slots.append((t, c))
        if rng.random() < args.burst and len(slots) < distinct:  # a follow-up in the same channel
            slots.append((t + rng.uniform(0.02, 0.2), c))
    slots.sort()
    faults = round(distinct * args.faults)
    fails = max(1, round(faults * args.fail_share))
    kinds = (
        ["fail"] * fails
        + ["r429"] * ((faults - fails) // 2)
        + ["r500"] * (faults - fails - (faults - fails) // 2)
        + ["tool"] * round(distinct * args.tools)
    )
    kinds += ["plain"] * (distinct - len(kinds))
    rng.shuffle(kinds)
    questions = [
        Question(i, f"q{i:05d}", f"slack:TSOAK:C{c:04d}", kinds[i], t) for i, (t, c) in enumerate(slots[:distinct])
    ]
    deliveries = [Delivery(f"d{q.index}", q, q.at) for q in questions]
    for n in range(duplicates):
        q = rng.choice(questions)
        delay = rng.uniform(0.0, 0.05) if rng.random() < args.prompt_duplicates else rng.uniform(0.5, 20.0)
        deliveries.append(Delivery(f"u{n}", q, q.at + delay, duplicate=True))
    return questions, deliveries


ASSISTANTS = """\
default = "soak"
tool_modules = ["bench.soak_tools"]

[[assistants]]
name = "soak"
instructions = "You answer the team's questions; look tickets up with soak_lookup when asked about one."
tools = ["soak_lookup"]
"""


# -- the checks ----------------------------------------------------------------------------------------


def check(soak: Soak, attempts: dict[str, int], chars: int) -> dict[str, Any]:
    """Every question from the database and the processes' reports (see the module's docstring)."""
    conn = sqlite3.connect(f"file:{soak.db}?mode=ro", uri=True, timeout=30)
    users: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for mid, channel, msg_id in conn.execute(
        "SELECT id, channel, platform_msg_id FROM messages WHERE role = 'user' AND platform_msg_id IS NOT NULL"
    ):
        users[str(msg_id)].append((int(mid), str(channel)))
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(
        "SELECT id, status, trigger_message_id, last_error, origin, completed_at, started_at, created_at FROM runs"
    ):
        run = dict(zip(("id", "status", "trigger", "last_error", "origin", "completed_at", "started_at", "created_at"),
                       row, strict=True))  # fmt: skip
        runs[int(run["trigger"] or 0)].append(run)
    answers: dict[int, list[str]] = defaultdict(list)
    for turn, text in conn.execute("SELECT turn_id, text FROM messages WHERE role = 'assistant'"):
        answers[int(turn)].append(str(text))
    steps: dict[str, list[float]] = defaultdict(list)
    for run_id, created in conn.execute("SELECT run_id, created_at FROM run_steps WHERE type = 'tool_calls'"):
        steps[str(run_id)].append(float(created))
    conn.close()

    tool_starts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tool_ends: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tool_log = soak.tmp / "tools.jsonl"
    if tool_log.exists():
        for line in tool_log.read_text().splitlines():
            record = json.loads(line)
            if record["phase"] == "start":
                tool_starts[record["q"]].append(record)
            else:
                tool_ends[record["q"]].append(record)
    pid_names = {pid: name for name, pid in soak.pids.items()}

    # Notices by channel: answers (they carry their question id), restart notices, failure messages.
    failure_message = describe_model_error(_server_error())
    notified_answers: dict[str, list[Told]] = defaultdict(list)
    restart_counts: Counter[str] = Counter()
    failure_notices: Counter[str] = Counter()
    other_notices: list[tuple[str, str]] = []
    for worker, channel, text, t in soak.notices:
        if (found := ANSWER.match(text)) is not None:
            notified_answers[found.group(1)].append(Told(worker, "notify", "completed", text, t))
        elif (restart := RESTART_NOTICE.match(text)) is not None:
            restart_counts[channel] += 1 if restart.group(2) is None else int(restart.group(2))
        elif text == failure_message:
            failure_notices[channel] += 1
        else:
            other_notices.append((channel, text[:200]))

    deliveries_of: dict[str, list[Delivery]] = defaultdict(list)
    for d in soak.deliveries:
        deliveries_of[d.question.qid].append(d)

    problems: dict[str, list[dict[str, Any]]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    cut_off_by_channel: Counter[str] = Counter()
    failed_untold_by_channel: Counter[str] = Counter()
    latencies: dict[str, list[float]] = defaultdict(list)
    windows_ms: list[float] = []
    step_committed: Counter[str] = Counter()
    step_late_ms: list[float] = []
    first_looks_ms: list[float] = []
    asked_again: Counter[str] = Counter()
    expected_first = {"plain": 1, "tool": 1, "r429": 2, "r500": 2, "fail": 1 + soak.args.model_max_retries}

    def problem(kind: str, q: Question, **detail: Any) -> None:
        problems[kind].append({"qid": q.qid, "kind": q.kind, "channel": q.channel, **detail})

    for q in soak.questions:
        mine = deliveries_of[q.qid]
        stored = [d for d in mine if d.ack == "stored"]
        errors = [d.error for d in mine if d.ack == "error"]
        if errors:
            problem("post_error", q, errors=errors, stored_later=bool(stored))
        if len(stored) > 1:
            problem("stored_twice", q, deliveries=[d.tag for d in stored])
        messages = users.get(q.msg_id, [])
        if not messages:
            problem("lost: never stored", q, acks=[d.ack for d in mine], errors=errors)
            continue
        if len(messages) > 1:
            problem("duplicated: stored twice", q, messages=len(messages))
        message_id = messages[0][0]
        mine_runs = runs.get(message_id, [])
        if len(mine_runs) != 1:
            problem("lost: no run" if not mine_runs else "duplicated: more than one run", q, runs=len(mine_runs))
            continue
        run = mine_runs[0]
        extra = attempts.get(f"{q.qid}/first", 0) - expected_first[q.kind]
        if extra > 0:
            asked_again[q.kind] += 1
        starts = tool_starts.get(q.qid, [])
        if len(starts) > 1:
            problem(
                "tool ran twice",
                q,
                starts=[
                    {"process": pid_names.get(s["pid"], s["pid"]), "t_after_kill_s": s["t"] - soak.killed_wall}
                    for s in starts
                ],
                status=run["status"],
            )
        elif len(starts) == 1 and len(steps.get(run["id"], [])) == 1:
            windows_ms.append((steps[run["id"]][0] - starts[0]["t"]) * 1000)
        for end in tool_ends.get(q.qid, []):
            first_look, seen = end.get("step_first_look_s"), end.get("step_seen_s")
            if seen is None:
                step_committed["not while the tool ran"] += 1
            elif seen == first_look:
                step_committed["at the first look"] += 1
                first_looks_ms.append(float(first_look) * 1000)
            else:
                step_committed["later"] += 1
                step_late_ms.append(float(seen) * 1000)
        live = [t for t in soak.results.get(q.qid, []) if t.how == "live"]
        first_sent = min((d.sent_at for d in mine if d.sent_at is not None), default=None)
        status = run["status"]
        if status == "completed":
            texts = answers.get(message_id, [])
            expected = answer_text(q.qid, q.kind, chars)
            if len(texts) != 1:
                problem(
                    "duplicated: answered twice" if len(texts) > 1 else "lost: no answer stored", q, answers=len(texts)
                )
            elif texts[0] != expected:
                problem("wrong answer", q, stored=texts[0][:80])
            if q.kind == "fail":
                problem("scripted failure completed", q)
            told = [t for t in live if t.status == "completed"] + notified_answers.pop(q.qid, [])
            if not told:
                if run["origin"] == soak.process_ids.get("A") and (run["completed_at"] or 0) <= soak.killed_wall + 1:
                    outcomes["answered by A just before its SIGKILL, not reported"] += 1
                else:
                    problem(
                        "lost: answered, never told",
                        q,
                        ran_in=_name(soak, run["origin"]),
                        delivered_to=[d.sent_to for d in mine],
                        queued_s_after_kill=round(float(run["created_at"]) - soak.killed_wall, 2),
                        started_s_after_kill=round(float(run["started_at"] or 0) - soak.killed_wall, 2),
                    )
            else:
                if len(told) > 1:
                    problem("duplicated: told twice", q, told=[(t.worker, t.how) for t in told])
                if any(t.text != expected for t in told):
                    problem("wrong answer told", q)
                outcomes["answered, live" if told[0].how == "live" else "answered, through notify (taken over)"] += 1
                if first_sent is not None:
                    latencies[told[0].how].append(told[0].t - first_sent)
            if extra > 0:
                outcomes["answered again from the start after the SIGKILL"] += 1
        elif status == "failed":
            error = str(run["last_error"] or "")
            if error == RESTART_REASON and steps.get(run["id"]):
                outcomes["cut off after its tool started: failed, channel told"] += 1
                cut_off_by_channel[q.channel] += 1
                if q.kind != "tool":
                    problem("wrongly failed", q, last_error=error)
            elif q.kind == "fail" and error.startswith("InternalServerError"):
                outcomes["scripted failure"] += 1
                if not [t for t in live if t.status == "failed"]:
                    failed_untold_by_channel[q.channel] += 1
            else:
                problem("wrongly failed", q, last_error=error[:200], origin=_name(soak, run["origin"]))
        else:
            problem("lost: run did not end" if status in ("queued", "in_progress") else "wrongly failed", q,
                    status=status)  # fmt: skip

    for channel in sorted(set(cut_off_by_channel) | set(restart_counts)):
        if restart_counts[channel] < cut_off_by_channel[channel]:
            problems["lost: cut off after its tool started, channel not told"].append(
                {"channel": channel, "runs": cut_off_by_channel[channel], "told": restart_counts[channel]}
            )
        elif restart_counts[channel] > cut_off_by_channel[channel]:
            problems["duplicated: restart notice told twice"].append(
                {"channel": channel, "runs": cut_off_by_channel[channel], "told": restart_counts[channel]}
            )
    for channel in sorted(set(failed_untold_by_channel) | set(failure_notices)):
        if failure_notices[channel] < failed_untold_by_channel[channel]:
            problems["lost: failure never told"].append(
                {"channel": channel, "failed": failed_untold_by_channel[channel], "told": failure_notices[channel]}
            )
        elif failure_notices[channel] > failed_untold_by_channel[channel]:
            problems["duplicated: failure told twice"].append(
                {"channel": channel, "failed": failed_untold_by_channel[channel], "told": failure_notices[channel]}
            )
    for qid, told in notified_answers.items():  # answers notified for questions that did not complete
        problems["duplicated: answer notified for a question not completed once"].append(
            {"qid": qid, "told": len(told)}
        )
    if other_notices:
        problems["notices not understood"] = [{"channel": c, "text": t} for c, t in other_notices]

    dup_deliveries = [d for d in soak.deliveries if d.duplicate and d.redelivery_of is None]
    totals = {
        "lost": sum(len(v) for k, v in problems.items() if k.startswith("lost")),
        "duplicated": sum(len(v) for k, v in problems.items() if k.startswith("duplicated") or k == "stored_twice"),
        "wrongly_failed": len(problems.get("wrongly failed", [])) + len(problems.get("scripted failure completed", [])),
        "wrong_answer": len(problems.get("wrong answer", [])) + len(problems.get("wrong answer told", [])),
        "tool_ran_twice": len(problems.get("tool ran twice", [])),
        "post_errors": sum(len(p["errors"]) for p in problems.get("post_error", [])),
    }
    return {
        "totals": totals,
        "outcomes": dict(outcomes),
        "problems": {k: v[:50] for k, v in problems.items()},
        "problem_counts": {k: len(v) for k, v in problems.items()},
        "duplicate_deliveries": {
            "sent": len(dup_deliveries),
            "ignored": sum(d.ack == "ignored" for d in dup_deliveries),
            "stored (the question's first stored delivery)": sum(d.ack == "stored" for d in dup_deliveries),
            "errors": sum(d.ack == "error" for d in dup_deliveries),
            "not acknowledged": sum(d.ack is None for d in dup_deliveries),
        },
        "asked_again_from_the_start": dict(asked_again),
        "tool_step_created_at_minus_tool_start_ms": _summary(windows_ms),
        "tool_calls_by_when_their_step_was_in_the_database": dict(step_committed),
        "tool_step_in_the_database_after_the_tool_started_ms": _summary(step_late_ms),
        "tool_step_first_look_after_the_tool_started_ms": _summary(first_looks_ms),
        "latency_s": {how: _summary(v) for how, v in latencies.items()},
        "notices": {
            "answers": sum(1 for _, _, text, _ in soak.notices if ANSWER.match(text)),
            "restart notices": sum(1 for _, _, text, _ in soak.notices if RESTART_NOTICE.match(text)),
            "failure messages": sum(failure_notices.values()),
            "other": len(other_notices),
        },
    }


def _server_error() -> Exception:
    """An ``openai.InternalServerError`` for ``describe_model_error`` (which looks only at its class)."""
    import openai

    return openai.InternalServerError.__new__(openai.InternalServerError)


def _name(soak: Soak, process_id: Any) -> str:
    names = {v: k for k, v in soak.process_ids.items()}
    return names.get(str(process_id), str(process_id))


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def log_lines(tmp: Path) -> dict[str, Any]:
    """The workers' log lines by level, and the distinct ERROR / WARNING messages (ids and numbers masked)."""
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    line_re = re.compile(r" pid=\d+ (\w+) ([\w.]+): (.*)$")
    for path in sorted(tmp.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            found = line_re.search(line)
            if found is None:
                continue
            level, logger, text = found.groups()
            levels[level] += 1
            if level in ("ERROR", "CRITICAL", "WARNING"):
                masked = re.sub(r"\b(run|thread|proc|step)_[0-9a-f]+", r"\1_…", text)
                masked = re.sub(r"\d+(\.\d+)?", "N", masked)
                messages[f"{level} {logger}: {masked[:160]}"] += 1
    return {"by_level": dict(levels), "messages": dict(messages.most_common(25))}


# -- main ----------------------------------------------------------------------------------------------


@asynccontextmanager
async def soak_server(reply_chars: int, chunk_delay: float) -> AsyncIterator[ModelServer]:
    args = [sys.executable, "-m", "bench.soak_server", "--reply-chars", str(reply_chars)]
    async with child_server([*args, "--chunk-delay", str(chunk_delay)], what="soak model server") as (hello, process):
        yield ModelServer(process, base_url=hello["base_url"])


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    rng = random.Random(args.seed)
    questions, deliveries = plan(args, rng)
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "soak",
        "command": ".venv/bin/python -m bench.soak " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "plan": {
            "deliveries": len(deliveries),
            "distinct_questions": len(questions),
            "duplicate_deliveries": sum(d.duplicate for d in deliveries),
            "kinds": dict(Counter(q.kind for q in questions)),
            "channels": len({q.channel for q in questions}),
            "load_seconds": args.events / args.rate,
        },
    }
    tmp = Path(tempfile.mkdtemp(prefix="threadline-soak-"))
    try:
        (tmp / "assistants.toml").write_text(ASSISTANTS)
        os.environ["BENCH_SOAK_TOOL_LOG"] = str(tmp / "tools.jsonl")
        os.environ["BENCH_SOAK_TOOL_SECONDS"] = str(args.tool_seconds)
        os.environ["BENCH_SOAK_DB"] = str(tmp / "soak.db")
        soak = Soak(args, tmp, questions, deliveries, rng=rng)
        soak.db = tmp / "soak.db"
        async with soak_server(args.reply_chars, args.chunk_delay) as server:
            soak.base_url = server.base_url
            try:
                await asyncio.wait_for(soak.run(), timeout=args.timeout)
            finally:
                for worker in soak.workers.values():
                    if worker.process.returncode is None:
                        worker.kill()
                        await worker.wait()
            counted = await server.command("attempts")
        result["timeline_s"] = soak.timeline
        result["counts"] = soak.counts
        result["model"] = {"requests": counted["requests"]}
        result["checks"] = check(soak, counted["attempts"], args.reply_chars)
        result["processes"] = {
            name: {
                "pid": soak.pids[name],
                "process_id": soak.process_ids[name],
                "lag": stats.get("lag"),
                "rss_peak_sampled_kib": stats.get("rss_peak_sampled_kib"),
                "ru_maxrss_kib": stats.get("ru_maxrss_kib"),
                "cpu_s": stats.get("cpu_s"),
                "gc": stats.get("gc"),
                "measured": "until its SIGKILL" if name == "A" else "until it closed",
            }
            for name, stats in soak.stats.items()
        }
        result["logs"] = log_lines(tmp)
        result["wall_s"] = time.monotonic() - started
        totals = result["checks"]["totals"]
        result["all_ok"] = all(v == 0 for v in totals.values())
        if args.keep:
            kept = RESULTS / f"soak-{time.strftime('%Y%m%dT%H%M%S')}"
            shutil.copytree(tmp, kept)
            result["kept"] = str(kept)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = write_result("soak", result)
    report(result, path)
    return 0 if result["all_ok"] else 1


def report(result: dict[str, Any], path: Path) -> None:
    p, c = result["plan"], result["checks"]
    print(
        f"soak: {p['deliveries']} deliveries ({p['distinct_questions']} questions, {p['duplicate_deliveries']} "
        f"duplicates) over {p['channels']} channels in {p['load_seconds']:.0f} s; kinds {p['kinds']}"
    )
    print("timeline (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timeline_s"].items()))
    print(f"counts: {result['counts']}")
    print(f"model requests: {result['model']['requests']}")
    for name, proc in result["processes"].items():
        lag = proc["lag"] or lag_report([])
        gc2 = (proc["gc"] or {}).get("gen2", {})
        print(
            f"process {name} ({proc['measured']}): lag p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.0f} ms, "
            f"max {lag['max_ms']:.0f} ms; RSS peak {(proc['rss_peak_sampled_kib'] or 0) / 1024:.0f} MiB, ru_maxrss "
            f"{(proc['ru_maxrss_kib'] or 0) / 1024:.0f} MiB; CPU {proc['cpu_s'] or 0:.1f} s; gc gen2 "
            f"{gc2.get('collections', 0)}x, longest {gc2.get('max_ms', 0):.0f} ms"
        )
    print(f"outcomes: {c['outcomes']}")
    print(f"duplicate deliveries: {c['duplicate_deliveries']}")
    print(f"asked again from the start (after the SIGKILL): {c['asked_again_from_the_start']}")
    window = c["tool_step_created_at_minus_tool_start_ms"]
    if window.get("n"):
        print(
            f"a tool step's created_at minus its tool's start: median {window['median']:.1f} ms, p99 "
            f"{window['p99']:.1f} ms, max {window['max']:.1f} ms (n={window['n']}, min {window['min']:.1f} ms)"
        )
    late = c["tool_step_in_the_database_after_the_tool_started_ms"]
    later = f"; when later: median {late['median']:.0f} ms, max {late['max']:.0f} ms after" if late.get("n") else ""
    print(
        "tool calls, by when the run's tool step was in the database: "
        f"{c['tool_calls_by_when_their_step_was_in_the_database']}{later}"
    )
    for how, lat in c["latency_s"].items():
        if lat.get("n"):
            print(
                f"latency, delivery → told ({how}): median {lat['median']:.2f} s, p99 {lat['p99']:.2f} s, n={lat['n']}"
            )
    print(f"notices: {c['notices']}")
    print(f"worker log lines: {result['logs']['by_level']}")
    for message, count in list(result["logs"]["messages"].items())[:12]:
        print(f"    {count:5d}  {message}")
    print(f"problems: {c['problem_counts']}")
    for kind, found in c["problems"].items():
        print(f"    {kind}: {found[:3]}")
    print(f"TOTALS: {c['totals']}  (wall {result['wall_s']:.0f} s)")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="deliveries in all, duplicates included")
    parser.add_argument("--channels", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries per second")
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of deliveries that are duplicates")
    parser.add_argument("--prompt-duplicates", type=float, default=0.33, help="share of those within 50 ms")
    parser.add_argument("--faults", type=float, default=0.05, help="share of questions with a model fault")
    parser.add_argument("--fail-share", type=float, default=0.1, help="share of the faults that fail the run")
    parser.add_argument("--tools", type=float, default=0.15, help="share of questions that call the tool")
    parser.add_argument("--burst", type=float, default=0.15, help="chance a question has a quick follow-up")
    parser.add_argument("--reply-chars", type=int, default=120)
    parser.add_argument("--chunk-delay", type=float, default=0.005)
    parser.add_argument("--tool-seconds", type=float, default=0.3)
    parser.add_argument("--lease-seconds", type=float, default=15.0, help="THREADLINE_LEASE_SECONDS (default 15)")
    parser.add_argument("--model-max-retries", type=int, default=3, help="the SDK's retries (the default, 3)")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--precreate", action="store_true", help="create the channels before the load")
    parser.add_argument(
        "--kill-in-tool-window",
        action="store_true",
        help="at 0.5 T, kill A the moment one of its tools runs before its run's tool step is in the database",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs under bench/results/")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
