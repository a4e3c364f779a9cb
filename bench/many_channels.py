"""Many channels at once: every channel posts a message at the same moment; all must be answered once.

    .venv/bin/python -m bench.many_channels [--channels 200] [--rounds 2] [--repeats 3]
    .venv/bin/python -m bench.many_channels --channels 1000 --processes 1,2 [--concurrent-runs 0,256] [--py-spy DIR]

The scripted model server (:mod:`bench.fake_server`, its own process, 127.0.0.1) streams a
~200-character answer four characters a chunk with ``--chunk-delay`` (5 ms) between chunks, so
the runs overlap as they would against a real endpoint.

* B, Threadline: a fresh service and database per repetition. In each round every channel calls
  :meth:`Threadline.post` at the same moment (one ``asyncio.gather``), then every handle is read
  to its end. The second round posts again on the same threads, after the first is answered.
  Afterwards each channel's thread is read back from the store: exactly one user message and one
  assistant answer per post, in order, each answer the one for its own message; every run
  completed; the server saw exactly one request per post (no retries).
* A, bare openai SDK (the side-by-side reference): the same number of concurrent streaming
  calls, with exactly the request bodies Threadline sends (built from bodies captured in a small
  warm-up, checked against them, and checked again against every request B makes).

With ``--processes N[,M...]`` the reference A is not run; instead the channels are split over N
worker processes (:mod:`bench.worker`: each its own Python process with its own ``Threadline`` on
one shared database file, as Slack and Discord spread events over connections), for each count in
turn, alternating between repetitions. A coordinator starts them, warms each up on a few channels
of its own, tells them all to post at one moment (a ``time.monotonic()`` deadline), and collects
from each: answers (live, on the handles), event-loop lag (10 ms ticker), RSS, gc pauses
(``gc.callbacks``), CPU, and how long a store call that does nothing waits; it watches the
``processes`` table for lease renewals. Afterwards the database is read back as for B: exactly one
user message and one answer per post per thread. The channels are created before the load
(``--no-precreate``: by the workers' first posts, which runs into a core bug, BENCHMARKS.md
section 13). The workers call ``gc.freeze()`` once the service is open, as the entry points do
(``--gc-freeze both``: every count with and without it, side by side); ``--concurrent-runs 0,256``
runs every count with the workers' runs unbounded and bounded (adaptively, at most 256 at once)
(THREADLINE_CONCURRENT_RUNS), side by side; ``--py-spy DIR`` samples the workers during the load.

A and B alternate (B first in the first and third repetitions). During each run a ticker task sleeps 10 ms again
and again and records how late it wakes (event-loop lag) and the RSS. Reported: wall time per
round and in total (median over repetitions, and the ratio B/A), per-post latency, lag p99, RSS
before the load and at its peak (sampled VmRSS, and ru_maxrss), and the correctness counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bench.common import (
    LagTicker,
    ModelServer,
    bench_settings,
    forbid_non_loopback,
    machine,
    model_server,
    peak_rss_kib,
    percentile,
    rss_kib,
    summary,
    write_result,
)
from bench.fake_server import reply_text, request_digest
from bench.worker import LeaseWatcher, WorkerProcess
from core.events import RunCompleted
from core.handles import RunHandle
from core.models import Author, Incoming
from core.service import Threadline
from core.store import Store

AUTHOR = Author(id="U_BENCH", name="alice")
WARMUP_CHANNELS = 4
HANDLE_TIMEOUT = 180.0


def channel_key(index: int) -> str:
    return f"bench:load:c{index:04d}"


def message_text(index: int, round_no: int) -> str:
    return f"round {round_no} question from channel #{index:04d}: what is the status of the release?"


def expected_answer(index: int, round_no: int, chars: int) -> str:
    return reply_text(f"{AUTHOR.name}: {message_text(index, round_no)}", chars)


@dataclass
class Run:
    """One side's run of the whole load (all rounds) in one repetition."""

    side: str
    repeat: int
    round_wall_s: list[float] = field(default_factory=list)
    post_all_s: list[float] = field(default_factory=list)  # B: until every post() returned
    latencies_s: list[float] = field(default_factory=list)  # each post/call: round start to its answer
    lags_s: list[float] = field(default_factory=list)
    rss_before_kib: int = 0
    rss_peak_kib: int = 0
    maxrss_after_kib: int = 0
    cpu_s: float = 0.0  # process CPU time (all threads) over the rounds
    checks: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "repeat": self.repeat,
            "round_wall_s": self.round_wall_s,
            "total_wall_s": sum(self.round_wall_s),
            "cpu_s": self.cpu_s,
            "post_all_s": self.post_all_s,
            "latency_s": summary(self.latencies_s),
            "lag_ms": {k: v * 1000 if k != "n" else v for k, v in summary(self.lags_s).items()},
            "rss_before_kib": self.rss_before_kib,
            "rss_peak_sampled_kib": self.rss_peak_kib,
            "ru_maxrss_after_kib": self.maxrss_after_kib,
            "checks": self.checks,
        }


# -- B: Threadline --------------------------------------------------------------------------------


async def run_threadline(
    server: ModelServer, db: Path, channels: int, rounds: int, chars: int, repeat: int, ticker: LagTicker
) -> Run:
    run = Run("B", repeat)
    service = await Threadline.open(bench_settings(server.base_url, db))
    answered = failed = timed_out = wrong_live = 0
    try:
        await server.command("reset")
        gc.collect()
        run.rss_before_kib = rss_kib()
        ticker.start()
        cpu = time.process_time()
        for round_no in range(1, rounds + 1):
            incoming = [
                Incoming(channel_key(i), AUTHOR, message_text(i, round_no), platform_msg_id=f"m{i}-{round_no}")
                for i in range(channels)
            ]
            start = time.perf_counter()
            handles = await asyncio.gather(*(service.post(m) for m in incoming))
            run.post_all_s.append(time.perf_counter() - start)

            async def answer(
                index: int, handle: RunHandle | None, round_no: int = round_no, start: float = start
            ) -> str:
                if handle is None:
                    return "no handle"
                try:
                    event = await asyncio.wait_for(handle.result(), timeout=HANDLE_TIMEOUT)
                except TimeoutError:
                    return "timeout"
                run.latencies_s.append(time.perf_counter() - start)
                if not isinstance(event, RunCompleted):
                    return "failed"
                return "ok" if event.text == expected_answer(index, round_no, chars) else "wrong"

            outcomes = await asyncio.gather(*(answer(i, h) for i, h in enumerate(handles)))
            run.round_wall_s.append(time.perf_counter() - start)
            counts = Counter(outcomes)
            answered += counts["ok"] + counts["wrong"]
            wrong_live += counts["wrong"]
            failed += counts["failed"]
            timed_out += counts["timeout"] + counts["no handle"]
            await service.wait_idle()
        run.cpu_s = time.process_time() - cpu
        await ticker.stop()
        run.lags_s, run.rss_peak_kib = ticker.lags, ticker.rss_peak
        run.maxrss_after_kib = peak_rss_kib()

        stats = await server.command("stats")
        bodies = (await server.command("bodies"))["bodies"]
        run.checks = {
            "posts": channels * rounds,
            "answered_live": answered,
            "failed_live": failed,
            "not_answered_in_time": timed_out,
            "wrong_answer_live": wrong_live,
            **await check_store(service.store, channels, rounds, chars),
            "model_requests": stats["chat_requests"],
            "bodies": [request_digest(b) for b in bodies],
        }
    finally:
        await service.close()
    return run


async def check_store(store: Store, channels: int, rounds: int, chars: int) -> dict[str, int]:
    """Read every channel's thread back: one user message and one answer per post, in order, and right."""
    lost = duplicated = wrong = misordered = runs_not_completed = 0
    for i in range(channels):
        thread = await store.current_thread(channel_key(i))
        messages = await store.thread_messages(thread)
        runs = await store.thread_runs(thread)
        runs_not_completed += sum(r.status != "completed" for r in runs) + max(0, rounds - len(runs))
        expected_roles: list[str] = []
        for round_no in range(1, rounds + 1):
            text = message_text(i, round_no)
            users = [m for m in messages if m.role == "user" and m.text == text]
            if not users:
                lost += 1
                continue
            duplicated += len(users) - 1
            turn = users[0].turn_id
            answers = [m for m in messages if m.role == "assistant" and m.turn_id == turn]
            if not answers:
                lost += 1
            duplicated += max(0, len(answers) - 1)
            wrong += sum(a.text != expected_answer(i, round_no, chars) for a in answers)
            expected_roles += ["user", "assistant"]
        strays = [m for m in messages if m.role not in ("user", "assistant")]
        duplicated += len(strays)
        if [m.role for m in messages] != expected_roles:
            misordered += 1
    return {
        "lost": lost,
        "duplicated": duplicated,
        "wrong_answer_stored": wrong,
        "threads_out_of_order": misordered,
        "runs_not_completed": runs_not_completed,
    }


# -- A: the bare SDK --------------------------------------------------------------------------


async def run_bare(
    server: ModelServer,
    kwargs: dict[tuple[int, int], dict[str, Any]],
    channels: int,
    rounds: int,
    chars: int,
    repeat: int,
    ticker: LagTicker,
) -> Run:
    run = Run("A", repeat)
    client = openai.AsyncOpenAI(api_key="sk-bench-not-a-real-key", base_url=server.base_url, max_retries=3)
    ok = wrong = failed = 0
    try:
        await server.command("reset")
        gc.collect()
        run.rss_before_kib = rss_kib()
        ticker.start()
        cpu = time.process_time()
        for round_no in range(1, rounds + 1):
            start = time.perf_counter()

            async def call(index: int, round_no: int = round_no, start: float = start) -> str:
                try:
                    stream = await client.chat.completions.create(**kwargs[(index, round_no)])
                    parts = [
                        content
                        async for chunk in stream
                        if chunk.choices and (content := chunk.choices[0].delta.content)
                    ]
                except openai.OpenAIError:
                    return "failed"
                run.latencies_s.append(time.perf_counter() - start)
                return "ok" if "".join(parts) == expected_answer(index, round_no, chars) else "wrong"

            outcomes = Counter(await asyncio.gather(*(call(i) for i in range(channels))))
            run.round_wall_s.append(time.perf_counter() - start)
            ok, wrong, failed = ok + outcomes["ok"], wrong + outcomes["wrong"], failed + outcomes["failed"]
        run.cpu_s = time.process_time() - cpu
        await ticker.stop()
        run.lags_s, run.rss_peak_kib = ticker.lags, ticker.rss_peak
        run.maxrss_after_kib = peak_rss_kib()
        stats = await server.command("stats")
        bodies = (await server.command("bodies"))["bodies"]
        run.checks = {
            "calls": channels * rounds,
            "ok": ok,
            "wrong": wrong,
            "failed": failed,
            "model_requests": stats["chat_requests"],
            "bodies": [request_digest(b) for b in bodies],
        }
    finally:
        await client.close()
    return run


# -- the bodies A sends ----------------------------------------------------------------------------


async def capture_bodies(server: ModelServer, db: Path, rounds: int, chars: int) -> list[dict[str, Any]]:
    """Run a few channels through Threadline (warming it up) and return the bodies it sent, in order."""
    service = await Threadline.open(bench_settings(server.base_url, db))
    try:
        await server.command("reset")
        for round_no in range(1, rounds + 1):
            handles = await asyncio.gather(
                *(
                    service.post(Incoming(channel_key(i), AUTHOR, message_text(i, round_no)))
                    for i in range(WARMUP_CHANNELS)
                )
            )
            for handle in handles:
                assert handle is not None
                event = await handle.result()
                assert isinstance(event, RunCompleted), event
            await service.wait_idle()
        bodies: list[dict[str, Any]] = (await server.command("bodies"))["bodies"]
    finally:
        await service.close()
    return bodies


def build_bodies(captured: list[dict[str, Any]], channels: int, rounds: int) -> dict[tuple[int, int], dict[str, Any]]:
    """Bodies for every (channel, round), from channel 0's captured ones; checked against the others."""

    def key(body: dict[str, Any]) -> tuple[int, int]:
        text = str(body["messages"][-1]["content"])
        round_no = int(text.split("round ")[1].split(" ")[0])
        index = int(text.split("#")[1].split(":")[0])
        return index, round_no

    by_key = {key(b): b for b in captured}
    templates = {r: json.dumps(by_key[(0, r)]) for r in range(1, rounds + 1)}

    def body(index: int, round_no: int) -> dict[str, Any]:
        built: dict[str, Any] = json.loads(templates[round_no].replace("#0000", f"#{index:04d}"))
        return built

    for (index, round_no), seen in by_key.items():
        if body(index, round_no) != seen:
            raise AssertionError(f"cannot rebuild the request body of channel {index}, round {round_no}")
    return {(i, r): body(i, r) for i in range(channels) for r in range(1, rounds + 1)}


def sdk_kwargs(body: dict[str, Any], known: set[str]) -> dict[str, Any]:
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


# -- P: the channels split over N worker processes on one database ---------------------------------


@dataclass(frozen=True)
class Setup:
    """What one load varies: worker processes, gc.freeze() in them, THREADLINE_CONCURRENT_RUNS (0: no bound)."""

    processes: int
    gc_freeze: bool
    concurrent_runs: int

    @property
    def label(self) -> str:
        return f"{self.processes}{'+freeze' if self.gc_freeze else ''}+runs{self.concurrent_runs or 'unbounded'}"

    @property
    def name(self) -> str:
        runs = f"{self.concurrent_runs} at once" if self.concurrent_runs else "runs unbounded"
        return f"{self.processes} process(es){', gc.freeze' if self.gc_freeze else ''}, {runs}"


def warm_key(worker: int, index: int) -> str:
    return f"bench:warm:w{worker}c{index}"


def proc_stat_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), 0.0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ProcRun:
    """One load (all rounds) with the channels over ``processes`` worker processes."""

    setup: Setup
    repeat: int
    round_wall_s: list[float] = field(default_factory=list)  # go → the last answer of any worker
    post_all_s: list[float] = field(default_factory=list)  # go → every worker's post() calls returned
    start_skew_ms: list[float] = field(default_factory=list)  # how late the last worker started after go
    idle_after_round: list[bool] = field(default_factory=list)  # every worker idle within the timeout
    latencies_s: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    loadavg: list[float] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def processes(self) -> int:
        return self.setup.processes

    @property
    def label(self) -> str:
        return self.setup.label

    def as_dict(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "gc_freeze": self.setup.gc_freeze,
            "concurrent_runs": self.setup.concurrent_runs,
            "label": self.label,
            "repeat": self.repeat,
            "round_wall_s": self.round_wall_s,
            "total_wall_s": sum(self.round_wall_s),
            "post_all_s": self.post_all_s,
            "start_skew_ms": self.start_skew_ms,
            "idle_after_round": self.idle_after_round,
            "latency_s": summary(self.latencies_s),
            "server_cpu_s": self.server_cpu_s,
            "loadavg_at_start": self.loadavg,
            "workers": self.workers,
            "checks": self.checks,
        }


class Spy:
    """py-spy attached to worker processes while the load runs (``--py-spy DIR``)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.children: list[tuple[asyncio.subprocess.Process, Path]] = []

    async def start(self, label: str, pids: list[int]) -> None:
        if self.directory is None:
            return
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
        self.directory.mkdir(parents=True, exist_ok=True)
        for k, pid in enumerate(pids):
            out = self.directory / f"{label}-w{k}.txt"
            child = await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--nonblocking",
                "--output", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self.children.append((child, out))
        await asyncio.sleep(1.0)  # attached before the load starts

    async def stop(self) -> list[dict[str, Any]]:
        found = []
        for child, out in self.children:
            if child.returncode is None:
                child.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(child.wait(), timeout=60)
            except TimeoutError:
                child.kill()
                await child.wait()
            if out.exists():
                found.append({"file": str(out), **profile_summary(out)})
        self.children = []
        return found


# Where a sampled stack's time goes: the innermost frame of one of these, libraries below it folded in.
# py-spy names files relative to their sys.path entry: "(openai/_streaming.py:231)".
OWNERS = (
    ("Threadline core", ("(core/",)),
    ("openai-agents", ("(agents/",)),
    ("openai SDK", ("(openai/",)),
    ("benchmark worker", ("(bench/",)),
)
LEAF_KINDS = (
    ("pydantic", ("(pydantic",)),
    ("openai SDK", ("(openai/",)),
    ("openai-agents", ("(agents/",)),
    ("Threadline core", ("(core/",)),
    ("httpx / httpcore / h11 / anyio", ("(httpx", "(httpcore", "(h11", "(anyio", "(sniffio")),
    ("aiohttp", ("(aiohttp",)),
    ("sqlite3 / sqlite_utils", ("(sqlite",)),
    ("json", ("(json/",)),
    ("asyncio / selectors", ("(asyncio/", "(selectors.py")),
    ("threads (store thread, executors)", ("(threading.py", "(concurrent/")),
    ("logging", ("(logging/",)),
)
MARKERS = {  # share of samples with such a frame anywhere in the stack
    "openai SDK: AsyncStream (openai/_streaming.py)": "(openai/_streaming.py",
    "openai SDK: model construction per chunk (openai/_models.py)": "(openai/_models.py",
    "openai-agents: chat stream handler (chatcmpl_stream_handler.py)": "chatcmpl_stream_handler.py",
    "openai-agents: run loop (agents/run_internal/)": "(agents/run_internal/",
    # Its check that no concurrent run changed Agent.tools walks every run that shares the Agent:
    "openai-agents: tool-configuration guard (agent_tool_configuration.py)": "agent_tool_configuration.py",
    # BaseModel.construct's isinstance(config, _ConfigProtocol), a runtime Protocol check, per model:
    "openai SDK: runtime Protocol isinstance (typing_extensions _ProtocolMeta)": "_ProtocolMeta.__instancecheck__",
    "Threadline core (core/)": "(core/",
    "Threadline store (core/store/)": "(core/store/",
    "sqlite_utils": "(sqlite_utils/",
    "httpx2 / httpcore2 (the SDK's HTTP)": "(httpcore",
    "pydantic": "(pydantic",
}


def _kind(frame: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    where = frame[frame.rfind("(") :] if "(" in frame else frame
    for name, needles in table:
        if any(n in where for n in needles):
            return name
    return None


def profile_summary(path: Path) -> dict[str, Any]:
    """Shares of py-spy's samples (raw format: ``frame;frame;... count`` lines), three ways."""
    owners: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        owner = next((k for f in reversed(frames) if (k := _kind(f, OWNERS)) is not None), "event loop, stdlib, other")
        owners[owner] += count
        leaves[_kind(frames[-1], LEAF_KINDS) or "other"] += count
        for name, needle in MARKERS.items():
            if any(needle in f for f in frames):
                markers[name] += count
    share = {k: round(v / total, 4) for k, v in owners.most_common()} if total else {}
    return {
        "samples": total,
        "by_innermost_package": share,
        "by_leaf_frame": {k: round(v / total, 4) for k, v in leaves.most_common()} if total else {},
        "stacks_containing": {k: round(v / total, 4) for k, v in markers.most_common()} if total else {},
    }


async def run_processes(
    server: ModelServer, tmp: Path, args: argparse.Namespace, setup: Setup, repeat: int, spy: Spy
) -> ProcRun:
    run = ProcRun(setup, repeat)
    processes, freeze = setup.processes, setup.gc_freeze
    label = f"p{setup.label}-repeat{repeat}"
    db, log = tmp / f"{label}.db", tmp / f"{label}.log"
    settings = {"lease_seconds": args.lease_seconds, "concurrent_runs": setup.concurrent_runs}
    config = {
        "base_url": server.base_url,
        "db": str(db),
        "settings": settings,
        "log_level": "WARNING",
        "gc_freeze": freeze,
    }
    channels, rounds, chars = args.channels, args.rounds, args.reply_chars
    mine = [[i for i in range(channels) if i % processes == k] for k in range(processes)]
    if args.precreate:  # around the core bug in Store._ensure_channel (BENCHMARKS.md, section 13)
        store = await Store.open(db)
        try:
            for i in range(channels):
                await store.current_thread(channel_key(i))
            for k in range(processes):
                for j in range(WARMUP_CHANNELS):
                    await store.current_thread(warm_key(k, j))
        finally:
            await store.close()
    try:
        workers = list(
            await asyncio.gather(*(WorkerProcess.start(f"w{k}", config, stderr=log) for k in range(processes)))
        )
    except BaseException:
        print(
            f"a worker did not start; the end of its log:\n{log.read_text(errors='replace')[-4000:]}", file=sys.stderr
        )
        raise
    try:
        for round_no in range(1, rounds + 1):  # warm-up: a few channels of each worker's own
            warm = await asyncio.gather(
                *(
                    w.call(
                        "round",
                        at=0,
                        posts=[[warm_key(k, j), message_text(j, round_no), None] for j in range(WARMUP_CHANNELS)],
                    )
                    for k, w in enumerate(workers)
                )
            )
            bad = [o for reply in warm for o in reply["outcomes"] if o[0] != "completed"]
            if bad:
                raise RuntimeError(f"warm-up runs did not complete: {bad[:3]}")
        await server.command("reset")
        gc.collect()
        run.loadavg = list(os.getloadavg())
        await asyncio.gather(*(w.call("measure", on=True) for w in workers))
        leases = LeaseWatcher(db, lease_seconds=args.lease_seconds)
        leases.start()
        await spy.start(label, [w.pid for w in workers])
        server_cpu = proc_stat_cpu_s(server.pid)
        outcome_counts: Counter[str] = Counter()
        wrong_live = 0
        for round_no in range(1, rounds + 1):
            at = time.monotonic() + 0.3  # every worker posts at this moment
            replies = await asyncio.gather(
                *(
                    w.call(
                        "round",
                        at=at,
                        wait_s=HANDLE_TIMEOUT + 60,
                        handle_timeout=HANDLE_TIMEOUT,
                        posts=[[channel_key(i), message_text(i, round_no), f"m{i}-{round_no}"] for i in mine[k]],
                    )
                    for k, w in enumerate(workers)
                )
            )
            run.round_wall_s.append(max(r["end"] for r in replies) - at)
            run.post_all_s.append(max(r["start"] + r["post_all_s"] for r in replies) - at)
            run.start_skew_ms.append(max(r["late_s"] for r in replies) * 1000)
            run.idle_after_round.append(all(r["idle"] for r in replies))
            for k, reply in enumerate(replies):
                for i, (outcome, latency, text) in zip(mine[k], reply["outcomes"], strict=True):
                    outcome_counts[outcome] += 1
                    if latency is not None:
                        run.latencies_s.append(latency + reply["late_s"])
                    if outcome == "completed" and text != expected_answer(i, round_no, chars):
                        wrong_live += 1
        run.server_cpu_s = proc_stat_cpu_s(server.pid) - server_cpu
        profiles = await spy.stop()
        lease_seen = await leases.stop()
        measures = await asyncio.gather(*(w.call("measure", on=False) for w in workers))
        stats = await server.command("stats")
        for k, (w, m) in enumerate(zip(workers, measures, strict=True)):
            m.pop("id", None)
            lease = lease_seen.get(str(w.hello["process_id"]), {})
            run.workers.append({"worker": k, "pid": w.pid, "channels": len(mine[k]), "lease": lease, **m})
        if profiles:
            for k, found in enumerate(profiles):
                run.workers[k]["profile"] = found
    finally:
        finals = await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
    for k, final in enumerate(finals):
        if isinstance(final, BaseException):
            raise RuntimeError(f"worker {k} did not close cleanly: {final!r} (see {log})")
        run.workers[k]["ru_maxrss_at_close_kib"] = final["ru_maxrss_kib"]
    store = await Store.open(db)
    try:
        stored = await check_store(store, channels, rounds, chars)
    finally:
        await store.close()
    run.checks = {
        "posts": channels * rounds,
        "answered_live": outcome_counts["completed"],
        "not_completed_live": sum(v for k, v in outcome_counts.items() if k != "completed"),
        "outcomes_live": dict(outcome_counts),
        "wrong_answer_live": wrong_live,
        **stored,
        "model_requests": stats["chat_requests"],
        **log_counts(log),
    }
    return run


def log_counts(log: Path) -> dict[str, int]:
    """ERROR lines in the workers' log, and those that say a live process's run was taken over."""
    lines = log.read_text(errors="replace").splitlines()
    return {
        "error_log_lines": sum(" ERROR " in line for line in lines),
        "runs_taken_from_a_live_process": sum(
            "was taken over by another process while this one ran it" in line for line in lines
        ),
        "takeover_log_lines": sum("took over" in line and "left by processes that are gone" in line for line in lines),
    }


async def main_processes(args: argparse.Namespace, counts: list[int]) -> int:
    forbid_non_loopback()
    freezes = {"off": [False], "on": [True], "both": [False, True]}[args.gc_freeze]
    setups = [Setup(n, f, b) for b in args.concurrent_runs for f in freezes for n in counts]
    result: dict[str, Any] = {
        "benchmark": "many_channels_processes",
        "command": ".venv/bin/python -m bench.many_channels " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": {
            "channels": args.channels,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "processes": counts,
            "gc_freeze": args.gc_freeze,
            "concurrent_runs": args.concurrent_runs,
            "setups": [x.label for x in setups],
            "setup_names": [x.name for x in setups],
            "reply_chars": args.reply_chars,
            "chunk_delay_s": args.chunk_delay,
            "server": "bench.fake_server in a child process on 127.0.0.1",
            "workers": "bench.worker child processes, one Threadline each, on one database file",
            "assistant": "built-in",
            "lag_ticker_interval_ms": 10,
            "py_spy": str(args.py_spy) if args.py_spy else None,
            "channels_created_before_the_load": args.precreate,
            "lease_seconds": args.lease_seconds,
        },
    }
    runs: list[ProcRun] = []
    spy = Spy(args.py_spy)
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
        async with model_server(reply_chars=args.reply_chars, chunk_delay=args.chunk_delay) as server:
            for repeat in range(args.repeats):
                order = setups if repeat % 2 == 0 else list(reversed(setups))
                for setup in order:
                    run = await run_processes(server, Path(tmp), args, setup, repeat, spy)
                    runs.append(run)
                    rss = ", ".join(f"{w['ru_maxrss_at_close_kib'] / 1024:.0f}" for w in run.workers)
                    lag = ", ".join(f"{w['lag']['p99_ms']:.0f}" for w in run.workers)
                    print(
                        f"repeat {repeat + 1}, {run.label}: {sum(run.round_wall_s):.2f} s, lag p99 {lag} ms, "
                        f"ru_maxrss {rss} MiB, checks {run.checks}",
                        flush=True,
                    )
    result["runs"] = [r.as_dict() for r in runs]
    result["summary"] = summarise_processes(runs, setups, args.rounds)
    result["all_ok"] = all(
        c["answered_live"] == c["posts"]
        and c["lost"] == 0
        and c["duplicated"] == 0
        and c["wrong_answer_stored"] == 0
        and c["wrong_answer_live"] == 0
        and c["threads_out_of_order"] == 0
        and c["runs_not_completed"] == 0
        and c["model_requests"] == c["posts"]
        and c["runs_taken_from_a_live_process"] == 0
        for c in (r.checks for r in runs)
    )
    path = write_result("many_channels_processes", result)
    report_processes(result, path)
    return 0 if result["all_ok"] else 1


def summarise_processes(runs: list[ProcRun], setups: list[Setup], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    med = statistics.median
    for setup in setups:
        n = setup.processes
        mine = [r for r in runs if r.setup == setup]
        per_worker = []
        for k in range(n):
            ws = [r.workers[k] for r in mine]
            per_worker.append(
                {
                    "worker": k,
                    "channels": ws[0]["channels"],
                    "lag_ms_p50_median": med(w["lag"]["p50_ms"] for w in ws),
                    "lag_ms_p99_median": med(w["lag"]["p99_ms"] for w in ws),
                    "lag_ms_max": max(w["lag"]["max_ms"] for w in ws),
                    "lag_samples_median": med(w["lag"]["n"] for w in ws),
                    "cpu_s_median": med(w["cpu_s"] for w in ws),
                    "rss_before_kib_median": med(w["rss_before_kib"] for w in ws),
                    "rss_peak_sampled_kib_max": max(w["rss_peak_sampled_kib"] for w in ws),
                    "ru_maxrss_kib_max": max(w["ru_maxrss_at_close_kib"] for w in ws),
                    "gc_gen2_collections_median": med(w["gc"]["gen2"]["collections"] for w in ws),
                    "gc_gen2_total_ms_median": med(w["gc"]["gen2"]["total_ms"] for w in ws),
                    "gc_gen2_max_ms_max": max(w["gc"]["gen2"]["max_ms"] for w in ws),
                    "gc_all_total_ms_median": med(sum(g["total_ms"] for g in w["gc"].values()) for w in ws),
                    "store_wait_ms_p99_median": med(w["store_wait"]["p99_ms"] for w in ws),
                    "store_wait_ms_max": max(w["store_wait"]["max_ms"] for w in ws),
                    "lease_gap_s_max": max(w["lease"].get("longest_gap_s", 0.0) for w in ws),
                    "run_slots_median": med(
                        [m for w in ws if (m := w.get("run_slots_while_runs_waited", {}).get("median")) is not None]
                        or [0]
                    ),
                }
            )
        out[setup.label] = {
            "repeats": len(mine),
            "total_wall_s_median": med(sum(r.round_wall_s) for r in mine),
            "round_wall_s_median": [med(r.round_wall_s[i] for r in mine) for i in range(rounds)],
            "post_all_s_median": [med(r.post_all_s[i] for r in mine) for i in range(rounds)],
            "latency_s_median": med(med(r.latencies_s) for r in mine),
            "latency_s_p99_median": med(percentile(r.latencies_s, 99) for r in mine),
            "cpu_s_all_workers_median": med(sum(w["cpu_s"] for w in r.workers) for r in mine),
            "server_cpu_s_median": med(r.server_cpu_s for r in mine),
            "lag_ms_p99_worst_worker_median": med(max(w["lag"]["p99_ms"] for w in r.workers) for r in mine),
            "ru_maxrss_kib_worst_worker_max": max(w["ru_maxrss_at_close_kib"] for r in mine for w in r.workers),
            "per_worker": per_worker,
            "checks_total": {
                key: sum(int(r.checks[key]) for r in mine)
                for key in (
                    "posts",
                    "answered_live",
                    "not_completed_live",
                    "wrong_answer_live",
                    "lost",
                    "duplicated",
                    "wrong_answer_stored",
                    "threads_out_of_order",
                    "runs_not_completed",
                    "model_requests",
                    "error_log_lines",
                    "runs_taken_from_a_live_process",
                )
            },
        }
    # Side-by-side ratios: each setup against every earlier one that differs from it in one thing only.
    pairs = [
        (base.label, x.label)
        for i, x in enumerate(setups)
        for base in setups[:i]
        if sum(getattr(base, f) != getattr(x, f) for f in ("processes", "gc_freeze", "concurrent_runs")) == 1
    ]
    for first, second in pairs:
        base, other = out[first], out[second]
        out[f"ratio_{second}_over_{first}"] = {
            "total_wall_median": other["total_wall_s_median"] / base["total_wall_s_median"],
            "round_wall_median": [
                y / x for x, y in zip(base["round_wall_s_median"], other["round_wall_s_median"], strict=True)
            ],
            "latency_p99": other["latency_s_p99_median"] / base["latency_s_p99_median"],
            "cpu_all_workers": other["cpu_s_all_workers_median"] / base["cpu_s_all_workers_median"],
            "lag_p99_worst_worker": other["lag_ms_p99_worst_worker_median"] / base["lag_ms_p99_worst_worker_median"],
        }
    return out


def report_processes(result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    print(
        f"many channels over processes: {cfg['channels']} channels, {cfg['rounds']} round(s), "
        f"{cfg['repeats']} repeats of each of {cfg['processes']} processes; reply {cfg['reply_chars']} chars, "
        f"chunk delay {cfg['chunk_delay_s'] * 1000:g} ms"
    )
    mib = 1024
    print(f"{'':44}{'wall s':>8}{'round 1, 2.. s':>16}{'lat p99 s':>10}{'CPU s':>8}{'server CPU s':>13}")
    for label, name in zip(cfg["setups"], cfg["setup_names"], strict=True):
        x = s[label]
        per_round = " ".join(f"{v:.2f}" for v in x["round_wall_s_median"])
        print(
            f"{name:44}{x['total_wall_s_median']:8.2f}{per_round:>16}{x['latency_s_p99_median']:10.2f}"
            f"{x['cpu_s_all_workers_median']:8.2f}{x['server_cpu_s_median']:13.2f}"
        )
        for w in x["per_worker"]:
            print(
                f"    worker {w['worker']} ({w['channels']} channels): lag p50 {w['lag_ms_p50_median']:.1f} ms, "
                f"p99 {w['lag_ms_p99_median']:.0f} ms (max {w['lag_ms_max']:.0f}, "
                f"{w['lag_samples_median']:.0f} ticks); RSS before {w['rss_before_kib_median'] / mib:.0f} MiB, "
                f"peak {w['rss_peak_sampled_kib_max'] / mib:.0f}, "
                f"ru_maxrss {w['ru_maxrss_kib_max'] / mib:.0f} MiB; CPU {w['cpu_s_median']:.1f} s; "
                f"gc gen2 {w['gc_gen2_collections_median']:.0f}x, {w['gc_gen2_total_ms_median']:.0f} ms "
                f"(longest {w['gc_gen2_max_ms_max']:.0f} ms), all gens {w['gc_all_total_ms_median']:.0f} ms; "
                f"store call wait p99 {w['store_wait_ms_p99_median']:.0f} ms (max {w['store_wait_ms_max']:.0f}); "
                f"longest gap between lease renewals {w['lease_gap_s_max']:.1f} s; "
                f"run slots while runs waited, median {w['run_slots_median']:.0f}"
            )
        c = x["checks_total"]
        print(
            f"    all repeats: {c['posts']} posts, {c['answered_live']} answered, {c['lost']} lost, "
            f"{c['duplicated']} duplicated, {c['wrong_answer_stored']} wrong, {c['runs_not_completed']} runs not "
            f"completed, {c['model_requests']} model requests, {c['error_log_lines']} ERROR log lines, "
            f"{c['runs_taken_from_a_live_process']} runs taken over from a live process"
        )
    for key, ratio in s.items():
        if key.startswith("ratio_"):
            per_round = " ".join(f"{v:.2f}" for v in ratio["round_wall_median"])
            print(
                f"{key}: wall {ratio['total_wall_median']:.2f} (rounds {per_round}), latency p99 "
                f"{ratio['latency_p99']:.2f}, CPU {ratio['cpu_all_workers']:.2f}, worst lag p99 "
                f"{ratio['lag_p99_worst_worker']:.2f}"
            )
    for run in result["runs"]:
        for w in run["workers"]:
            if "profile" in w:
                print(f"profile of {run['label']}, worker {w['worker']} ({w['profile']['samples']} samples):")
                for how in ("by_innermost_package", "by_leaf_frame", "stacks_containing"):
                    shares = ", ".join(f"{k} {v:.0%}" for k, v in w["profile"][how].items())
                    print(f"    {how.replace('_', ' ')}: {shares}")
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


# -- main ------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    result: dict[str, Any] = {
        "benchmark": "many_channels",
        "command": ".venv/bin/python -m bench.many_channels " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": {
            "channels": args.channels,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "reply_chars": args.reply_chars,
            "chunk_delay_s": args.chunk_delay,
            "server": "bench.fake_server in a child process on 127.0.0.1",
            "assistant": "built-in",
            "lag_ticker_interval_ms": 10,
        },
        "rss_at_start_kib": rss_kib(),
        "ru_maxrss_at_start_kib": peak_rss_kib(),
    }
    runs: list[Run] = []
    ticker = LagTicker(0.010)
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
        async with model_server(reply_chars=args.reply_chars, chunk_delay=args.chunk_delay) as server:
            captured = await capture_bodies(server, Path(tmp) / "warmup.db", args.rounds, args.reply_chars)
            probe = openai.AsyncOpenAI(api_key="x", base_url=server.base_url)
            known = set(inspect.signature(probe.chat.completions.create).parameters)
            await probe.close()
            bodies = build_bodies(captured, args.channels, args.rounds)
            expected_digests = sorted(request_digest(b) for b in bodies.values())
            kwargs = {k: sdk_kwargs(b, known) for k, b in bodies.items()}
            # Idle lag, for scale: the same ticker with nothing else running.
            ticker.start()
            await asyncio.sleep(1.0)
            await ticker.stop()
            result["idle_lag_ms"] = {k: v * 1000 if k != "n" else v for k, v in summary(ticker.lags).items()}
            result["rss_before_first_load_kib"] = rss_kib()
            result["ru_maxrss_before_first_load_kib"] = peak_rss_kib()
            for repeat in range(args.repeats):
                # B first in the first repetition, so ru_maxrss shows what Threadline's load adds.
                order = ("B", "A") if repeat % 2 == 0 else ("A", "B")
                for side in order:
                    if side == "A":
                        run = await run_bare(
                            server, kwargs, args.channels, args.rounds, args.reply_chars, repeat, ticker
                        )
                    else:
                        db = Path(tmp) / f"repeat{repeat}.db"
                        run = await run_threadline(
                            server, db, args.channels, args.rounds, args.reply_chars, repeat, ticker
                        )
                    run.checks["bodies_as_built"] = sorted(run.checks.pop("bodies")) == expected_digests
                    runs.append(run)
                    print(f"repeat {repeat + 1} {side}: {sum(run.round_wall_s):.2f} s, checks {run.checks}")
                    if side == "B" and "ru_maxrss_after_first_B_kib" not in result:
                        result["ru_maxrss_after_first_B_kib"] = run.maxrss_after_kib
    ticker.close()

    result["runs"] = [r.as_dict() for r in runs]
    result["summary"] = summarise(runs, args.rounds)
    result["ru_maxrss_at_end_kib"] = peak_rss_kib()
    b_checks = [r.checks for r in runs if r.side == "B"]
    a_checks = [r.checks for r in runs if r.side == "A"]
    result["all_ok"] = all(
        c["answered_live"] == c["posts"]
        and c["lost"] == 0
        and c["duplicated"] == 0
        and c["wrong_answer_stored"] == 0
        and c["wrong_answer_live"] == 0
        and c["threads_out_of_order"] == 0
        and c["runs_not_completed"] == 0
        and c["model_requests"] == c["posts"]
        and c["bodies_as_built"]
        for c in b_checks
    ) and all(c["ok"] == c["calls"] and c["model_requests"] == c["calls"] and c["bodies_as_built"] for c in a_checks)
    path = write_result("many_channels", result)
    report(result, path)
    return 0 if result["all_ok"] else 1


def summarise(runs: list[Run], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in ("A", "B"):
        mine = [r for r in runs if r.side == side]
        out[side] = {
            "total_wall_s_median": statistics.median(sum(r.round_wall_s) for r in mine),
            "round_wall_s_median": [statistics.median(r.round_wall_s[i] for r in mine) for i in range(rounds)],
            "latency_s_median": statistics.median(statistics.median(r.latencies_s) for r in mine),
            "latency_s_p99_median": statistics.median(percentile(r.latencies_s, 99) for r in mine),
            "cpu_s_median": statistics.median(r.cpu_s for r in mine),
            "lag_ms_p50_median": statistics.median(statistics.median(r.lags_s) * 1000 for r in mine),
            "lag_ms_p99_median": statistics.median(percentile(r.lags_s, 99) * 1000 for r in mine),
            "lag_samples_median": statistics.median(len(r.lags_s) for r in mine),
            "lag_ms_max": max(max(r.lags_s, default=0.0) for r in mine) * 1000,
            "rss_before_kib_median": statistics.median(r.rss_before_kib for r in mine),
            "rss_peak_sampled_kib_max": max(r.rss_peak_kib for r in mine),
        }
    a, b = out["A"], out["B"]
    out["ratio_B_over_A"] = {
        "total_wall_median": b["total_wall_s_median"] / a["total_wall_s_median"],
        "round_wall_median": [y / x for x, y in zip(a["round_wall_s_median"], b["round_wall_s_median"], strict=True)],
        "cpu_median": b["cpu_s_median"] / a["cpu_s_median"],
        "lag_p99": b["lag_ms_p99_median"] / a["lag_ms_p99_median"],
    }
    b_checks = [r.checks for r in runs if r.side == "B"]
    out["B_checks_total"] = {
        key: sum(int(c[key]) for c in b_checks)
        for key in (
            "posts",
            "answered_live",
            "failed_live",
            "not_answered_in_time",
            "wrong_answer_live",
            "lost",
            "duplicated",
            "wrong_answer_stored",
            "threads_out_of_order",
            "runs_not_completed",
            "model_requests",
        )
    }
    return out


def report(result: dict[str, Any], path: Path) -> None:
    cfg, s = result["config"], result["summary"]
    a, b, ratio = s["A"], s["B"], s["ratio_B_over_A"]
    print(
        f"many channels: {cfg['channels']} channels post at once, {cfg['rounds']} round(s), {cfg['repeats']} repeats; "
        f"reply {cfg['reply_chars']} chars, chunk delay {cfg['chunk_delay_s'] * 1000:g} ms"
    )
    print(
        f"{'':20}{'wall s':>8}{'round 1, 2.. s':>16}{'CPU s':>8}{'lag p50 ms':>12}{'lag p99 ms':>12}{'(ticks)':>8}"
        f"{'latency p99 s':>15}"
    )
    for name, side in (("A bare openai SDK", a), ("B Threadline.post", b)):
        per_round = " ".join(f"{x:.2f}" for x in side["round_wall_s_median"])
        print(
            f"{name:20}{side['total_wall_s_median']:8.2f}{per_round:>16}{side['cpu_s_median']:8.2f}"
            f"{side['lag_ms_p50_median']:12.1f}{side['lag_ms_p99_median']:12.1f}{side['lag_samples_median']:8.0f}"
            f"{side['latency_s_p99_median']:15.2f}"
        )
    per_round = " ".join(f"{x:.2f}" for x in ratio["round_wall_median"])
    print(
        f"{'ratio B/A':20}{ratio['total_wall_median']:8.2f}{per_round:>16}{ratio['cpu_median']:8.2f}"
        f"{'':12}{ratio['lag_p99']:12.2f}"
    )
    print("(medians over the repeats; lag p99 is the median of each run's p99; a stalled loop ticks rarely)")
    print(f"idle event-loop lag p99: {result['idle_lag_ms']['p99']:.2f} ms")
    checks = s["B_checks_total"]
    print(
        f"B, all repeats: {checks['posts']} posts, {checks['answered_live']} answered, {checks['lost']} lost, "
        f"{checks['duplicated']} duplicated, {checks['wrong_answer_stored']} wrong, "
        f"{checks['runs_not_completed']} runs not completed, {checks['model_requests']} model requests"
    )
    mib = 1024
    before, after_b = result["rss_before_first_load_kib"], result["ru_maxrss_after_first_B_kib"]
    print(
        f"RSS before the first load {before / mib:.1f} MiB "
        f"(ru_maxrss {result['ru_maxrss_before_first_load_kib'] / mib:.1f}); "
        f"ru_maxrss after the first B load {after_b / mib:.1f} MiB (+{(after_b - before) / mib:.1f}); "
        f"at the end {result['ru_maxrss_at_end_kib'] / mib:.1f} MiB; "
        f"sampled peak A {a['rss_peak_sampled_kib_max'] / mib:.1f}, B {b['rss_peak_sampled_kib_max'] / mib:.1f} MiB"
    )
    print(f"all checks passed: {result['all_ok']}")
    print(f"results: {path}")


def run_bounds(text: str) -> list[int]:
    bounds = [int(x) for x in text.split(",") if x.strip()]
    if not bounds or min(bounds) < 0:
        raise argparse.ArgumentTypeError("a comma-separated list of run bounds, 0 or more, such as 0,64")
    return bounds


def process_counts(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",") if x.strip()]
    if not counts or min(counts) < 1 or max(counts) > 8:
        raise argparse.ArgumentTypeError("a comma-separated list of process counts from 1 to 8, such as 1,2")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description="Many channels posting at once through Threadline.")
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of one post per channel (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reply-chars", type=int, default=200)
    parser.add_argument("--chunk-delay", type=float, default=0.005, help="seconds between streamed chunks")
    parser.add_argument(
        "--processes",
        type=process_counts,
        default=None,
        help="split the channels over worker processes on one database, e.g. 1,2 (each count in turn, alternating)",
    )
    parser.add_argument("--py-spy", type=Path, default=None, help="with --processes: profile the workers into DIR")
    parser.add_argument(
        "--lease-seconds", type=float, default=15.0, help="with --processes: THREADLINE_LEASE_SECONDS (default 15)"
    )
    parser.add_argument(
        "--gc-freeze",
        choices=("off", "on", "both"),
        default="on",
        help="with --processes: workers call gc.freeze() once the service is open (both: side by side)",
    )
    parser.add_argument(
        "--concurrent-runs",
        type=run_bounds,
        default=[256],
        help="with --processes: THREADLINE_CONCURRENT_RUNS in the workers, e.g. 0,256 side by side (0: no bound)",
    )
    parser.add_argument(
        "--no-precreate",
        dest="precreate",
        action="store_false",
        help="with --processes: let the workers create the channels as they post (hits the core's "
        "'database is locked' race on a channel's first message, BENCHMARKS.md section 13)",
    )
    args = parser.parse_args()
    if args.processes:
        sys.exit(asyncio.run(main_processes(args, args.processes)))
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
