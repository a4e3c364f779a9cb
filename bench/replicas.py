"""Replicas on PostgreSQL: N processes ``python -m bots`` on one database, Slack events spread over them in turn.

    .venv/bin/python -m bench.replicas --channels 1000 5000 --replicas 1 2 4 [--per-channel 1] [--repeats 1]
        [--delay 0.05] [--chunk-delay 0.01] [--words 10] [--ramp 0] [--timeout 900]

For each channel count, one configuration after another, each on a fresh database: one process on SQLite,
then 1, 2, 4... replicas on one PostgreSQL server (:class:`tests.postgres_server.PostgresServer`, started
once). Each replica is ``python -m bots`` in Slack's HTTP mode on a ``PORT`` of its own, started as the
replica test starts them (tests/test_replicas.py), through :mod:`bench.replica`, which adds an event-loop
lag probe. The scripted model (:mod:`bench.chat_model`) and Slack (:mod:`bench.slack_side`: FakeSlack and
the event sender) run in child processes, one each for the whole invocation.

Each configuration: every replica answers one warm-up mention of its own (untimed); then every channel's
first mention is sent at the same moment (``--ramp S``: spread over S seconds), its next ones (with
``--per-channel`` > 1) ``--gap`` s apart, the events dealt round-robin over the replicas (the load
balancer): event i to replica i mod N. The clock stops at the last answer's ``chat.stopStream``.

Counted on Slack's side, per mention: answered (exactly one finished reply, the right one), lost (none),
duplicated (more than one), wrong; cross-checked in the database: the load's runs by status, and
trigger messages with more than one completed run. Per replica: the share of runs it completed (its
``/metrics``: ``threadline_runs_total``), the run-slot bound at the end (``threadline_run_slots``), the
event-loop lag during the load (:mod:`bench.replica`'s probe: the bot has no lag series), its RSS
(``VmRSS`` at the end, ``VmHWM`` the peak, from /proc/PID/status) and CPU. The CPU of the model, of Slack
and of the rest of the machine (PostgreSQL, mostly) is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.chat_common import children_cpu, code_version, process_cpu_s, tcp_counters
from bench.chat_model import chat_model_server
from bench.chat_slack import SlackLoad
from bench.common import REPO, ModelServer, forbid_non_loopback, machine, percentile, write_result
from bench.slack_side import SECRET, Mention, SlackProcess, see_mentions, slack_process
from tests.helpers import StoreDatabase
from tests.postgres_server import PostgresServer
from tests.test_entry_points import clean_env
from tests.test_one_process import free_port

READY_LINE = "serving Slack (HTTP mode)"
LOAD_CHANNELS = "%CLOAD%"  # the load's channels, in the store's channel keys (not the warm-ups')


# == one replica ===================================================================================


@dataclass
class Replica:
    """``python -m bench.replica`` (``python -m bots`` with a lag probe) in a child process, its log kept."""

    process: asyncio.subprocess.Process
    port: int
    lag_file: Path
    log: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, env: dict[str, str], lag_file: Path) -> Replica:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.replica", str(lag_file), env=env, cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        replica = cls(process, int(env["PORT"]), lag_file)
        replica._reading = asyncio.create_task(replica._read())
        return replica

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            text = line.decode(errors="replace")
            self.log.append(text)
            if READY_LINE in text:
                self.ready.set()
        self.ready.set()  # ended: whoever waits sees it below

    async def wait_ready(self) -> None:
        async with asyncio.timeout(60):
            await self.ready.wait()
        if self.process.returncode is not None or not any(READY_LINE in line for line in self.log):
            raise RuntimeError(f"a replica did not start:\n{''.join(self.log)}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (the peak) from /proc/PID/status, in KiB."""
        with open(f"/proc/{self.process.pid}/status") as f:
            values = dict(line.split(":", 1) for line in f)
        return {key: int(values[key].split()[0]) for key in ("VmRSS", "VmHWM")}

    def lags_s(self, start: float, end: float) -> list[tuple[float, float]]:
        """The probe's (seconds into the load, lag) of the callbacks asked for between ``start`` and ``end``."""
        out = []
        for line in self.lag_file.read_text().splitlines():
            asked, lag = line.split()
            if start <= float(asked) <= end:
                out.append((float(asked) - start, float(lag)))
        return out

    def gc_pauses_s(self, start: float, end: float) -> list[float]:
        """How long each cyclic garbage collection of 5 ms or more took during the load (bench.replica's record)."""
        path = self.lag_file.with_name(self.lag_file.name + ".gc")
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            at, _generation, took = line.split()[:3]
            if start <= float(at) <= end:
                out.append(float(took))
        return out

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """Runs it completed (``threadline_runs_total``) and its run-slot bound, from its ``/metrics``."""
        async with http.get(f"http://127.0.0.1:{self.port}/metrics") as response:
            text = await response.text()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "threadline_runs_total":
                    out[f"runs_{sample.labels['status']}"] = sample.value
                elif sample.name == "threadline_run_slots":
                    out["run_slots"] = sample.value
                elif sample.name == "threadline_runs_waiting_for_slot":
                    out["waiting_for_slot"] = sample.value
        return out

    async def stop(self) -> int | None:
        """SIGTERM, as a process manager stops it (killed after 30 s); its exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reading
        return self.process.returncode

    _reading: asyncio.Task[None] = field(init=False)


# == one configuration ==============================================================================


def lag_timeline(lags: Sequence[tuple[float, float]]) -> list[float]:
    """The worst lag of each second of the load, in ms: where in the load the loop fell behind."""
    worst: dict[int, float] = {}
    for at, lag in lags:
        worst[int(at)] = max(worst.get(int(at), 0.0), lag * 1000)
    return [round(worst.get(second, 0.0)) for second in range(max(worst, default=-1) + 1)]


@dataclass(frozen=True)
class Setup:
    store: str  # "sqlite" or "postgres"
    replicas: int
    channels: int

    @property
    def label(self) -> str:
        return f"{self.channels} channels, {self.store} x{self.replicas}"


@dataclass
class Sides:
    """What every configuration shares: the model, Slack, the PostgreSQL server, a folder."""

    model: ModelServer
    slack: SlackProcess
    postgres: PostgresServer
    folder: Path


async def start_replicas(setup: Setup, sides: Sides, folder: Path) -> tuple[list[Replica], StoreDatabase]:
    url = await asyncio.to_thread(sides.postgres.database) if setup.store == "postgres" else None
    database = StoreDatabase(folder / "data" / "threadline.db", url)
    replicas: list[Replica] = []

    async def one(index: int) -> Replica:
        env = clean_env(
            folder,
            OPENAI_BASE_URL=sides.model.base_url,
            OPENAI_API_KEY="sk-bench-not-a-real-key",
            SLACK_BOT_TOKEN=sides.slack.bot_token,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=sides.slack.api_url,
            PORT=str(free_port()),
            THREADLINE_HTTP_HOST="127.0.0.1",
            **database.env(),
        )
        replica = await Replica.start(env, folder / f"lag{index}.txt")
        replicas.append(replica)
        await replica.wait_ready()
        return replica

    try:
        first = await one(0)  # it migrates the fresh database; the others find it ready
        rest = await asyncio.gather(*(one(i) for i in range(1, setup.replicas)))
    except BaseException:
        await asyncio.gather(*(r.stop() for r in replicas))
        raise
    return [first, *rest], database


async def sample_slots(replicas: Sequence[Replica], stop: asyncio.Event) -> dict[int, list[tuple[float, float]]]:
    """Every second until ``stop``, each replica's run-slot bound and runs waiting for a slot (its /metrics)."""
    seen: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(replicas))}
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            for i, replica in enumerate(replicas):
                with contextlib.suppress(aiohttp.ClientError):
                    metric = await replica.metrics(http)
                    seen[i].append((metric.get("run_slots", 0.0), metric.get("waiting_for_slot", 0.0)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    return seen


async def send_and_wait(slack: SlackProcess, specs: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Send the events (each to its own ``url``) and wait at most ``seconds`` until every one is answered."""
    await slack.command("send", url=specs[0]["url"], events=specs)
    return await slack.command("wait", timeout=seconds)


def tree_cpu_s(root: int) -> float:
    """CPU so far of ``root`` and every process below it (PostgreSQL's server and its backends), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    total = 0.0
    for pid in tree:
        with contextlib.suppress(OSError):
            total += process_cpu_s(pid)
    return total


def store_counts(database: StoreDatabase) -> dict[str, Any]:
    """The load's runs by status, and its trigger messages with more than one completed run (synchronous)."""
    statuses = database.rows("SELECT status, COUNT(*) FROM runs WHERE channel LIKE ? GROUP BY status", (LOAD_CHANNELS,))
    twice = database.rows(
        "SELECT COUNT(*) FROM (SELECT trigger_message_id FROM runs WHERE channel LIKE ? AND status = 'completed'"
        " GROUP BY trigger_message_id HAVING COUNT(*) > 1) AS twice",
        (LOAD_CHANNELS,),
    )
    answers = database.rows(
        "SELECT COUNT(*) FROM messages WHERE channel LIKE ? AND role = 'assistant'", (LOAD_CHANNELS,)
    )
    return {
        "db_runs": {str(status): int(n) for status, n in statuses},
        "db_triggers_completed_twice": int(twice[0][0]),
        "db_answers": int(answers[0][0]),
    }


async def run_setup(setup: Setup, sides: Sides, args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    """One configuration on a fresh database: warm up, send the load, count, stop the replicas."""
    folder = sides.folder / f"{setup.store}{setup.replicas}-{setup.channels}-{repeat}"
    folder.mkdir()
    slack, model = sides.slack, sides.model
    replicas, database = await start_replicas(setup, sides, folder)
    urls = [r.url for r in replicas]
    try:
        warm = [Mention(f"CWARM{i}", "1700000000.000001", f"w{i:03d}m0") for i in range(len(replicas))]
        waited = await send_and_wait(slack, [m.spec() | {"url": url} for m, url in zip(warm, urls, strict=True)], 60)
        if not waited["ok"]:
            raise RuntimeError(f"the warm-up was not answered: {waited}")
        await slack.command("reset")
        await model.command("reset")

        plan = SlackLoad.plan(setup.channels, args.per_channel, 20)
        mentions = [channel[k] for k in range(args.per_channel) for channel in plan]  # each round, then the next
        specs = [
            m.spec(at=(i // setup.channels) * args.gap + args.ramp * (i % setup.channels) / setup.channels)
            | {"url": urls[i % len(urls)]}
            for i, m in enumerate(mentions)
        ]
        pids = {"model": model.pid, "slack": slack.pid} | {f"replica{i}": r.process.pid for i, r in enumerate(replicas)}
        memory_before = [r.memory_kib() for r in replicas]
        cpu_before, tcp_before = children_cpu(pids), tcp_counters()
        postgres_before, load_before = tree_cpu_s(sides.postgres.process.pid), os.getloadavg()
        start = time.monotonic()
        sampled = asyncio.Event()
        sampling = asyncio.create_task(sample_slots(replicas, sampled))
        try:
            waited = await send_and_wait(slack, specs, args.timeout)
        finally:
            sampled.set()
        slots_seen = await sampling
        end = time.monotonic()
        cpu = {k: v - cpu_before[k] for k, v in children_cpu(pids).items()}
        cpu["postgres"] = tree_cpu_s(sides.postgres.process.pid) - postgres_before
        cpu["others"] -= cpu["postgres"]  # the rest of the machine: other people's work on it
        tcp = {k: v - tcp_before[k] for k, v in tcp_counters().items()}

        report = await slack.command("report")
        seen = see_mentions(report)
        replies = Counter({m.where: len(seen[m.where].replies) if m.where in seen else 0 for m in mentions})
        wrong = sum(r != m.expected(args.words) for m in mentions for r in seen[m.where].replies)
        done = [seen[m.where] for m in mentions if replies[m.where] >= 1]
        completes = [s.complete for s in done]
        wall = max(completes) - min(s["posted"] for s in report["sends"]) if completes else float("nan")
        async with aiohttp.ClientSession() as http:
            scraped = [await r.metrics(http) for r in replicas]
        memory = [r.memory_kib() for r in replicas]
        timed_lags = [r.lags_s(start, end) for r in replicas]
        gc_pauses = [r.gc_pauses_s(start, end) for r in replicas]
        lags = [[lag for _, lag in timed] for timed in timed_lags]
        counts = await asyncio.to_thread(store_counts, database)
        answered = sum(n == 1 for n in replies.values())
        result: dict[str, Any] = {
            "store": setup.store,
            "replicas": setup.replicas,
            "channels": setup.channels,
            "repeat": repeat,
            "mentions": len(mentions),
            "all_answered_in_time": bool(waited["ok"]),
            "answered": answered,
            "lost": sum(n == 0 for n in replies.values()),
            "duplicated": sum(n > 1 for n in replies.values()),
            "wrong": wrong,
            "unfinished_streams": sum(s.unfinished for s in seen.values()),
            "events_not_200": sum(s.get("status") != 200 for s in report["sends"]),
            "wall_s": wall,
            "answers_per_s": answered / wall,
            "acks_p99_ms": percentile([(s["acked"] - s["posted"]) * 1000 for s in report["sends"]], 99),
            "complete_p50_s": statistics.median(s.complete_s for s in done) if done else float("nan"),
            "model_requests": (await model.command("stats"))["chat_requests"],
            "cpu_s": cpu,
            "loadavg_before": load_before,
            "tcp": tcp,
            "per_replica": [
                {
                    "lag_p99_ms": percentile(lag, 99) * 1000,
                    "lag_max_ms": max(lag, default=float("nan")) * 1000,
                    "lag_samples": len(lag),
                    "lag_worst_per_s_ms": lag_timeline(timed),
                    "gc_pauses_5ms": len(pauses),
                    "gc_pause_max_ms": max(pauses, default=0.0) * 1000,
                    "gc_pause_total_ms": sum(pauses) * 1000,
                    "run_slots_per_s": slots_seen.get(i, []),
                    "rss_before_mib": before["VmRSS"] / 1024,
                    "rss_end_mib": after["VmRSS"] / 1024,
                    "rss_peak_mib": after["VmHWM"] / 1024,
                    "cpu_s": cpu[f"replica{i}"],
                    "metrics": metric,
                }
                for i, (lag, timed, pauses, before, after, metric) in enumerate(
                    zip(lags, timed_lags, gc_pauses, memory_before, memory, scraped, strict=True)
                )
            ],
            **counts,
        }
    finally:
        codes = await asyncio.gather(*(r.stop() for r in replicas))
    result["exit_codes"] = codes
    result["ok"] = bool(
        result["all_answered_in_time"]
        and result["answered"] == result["mentions"]
        and result["lost"] == result["duplicated"] == result["wrong"] == result["unfinished_streams"] == 0
        and result["db_runs"] == {"completed": result["mentions"]}
        and result["db_triggers_completed_twice"] == 0
        and result["db_answers"] == result["mentions"]
    )
    if setup.store == "postgres":
        assert database.url is not None
        await asyncio.to_thread(sides.postgres.drop, database.url)
    return result


# == the whole run ===================================================================================


def setups(args: argparse.Namespace) -> list[Setup]:
    out = []
    for channels in args.channels:
        if not args.no_sqlite:
            out.append(Setup("sqlite", 1, channels))
        out += [Setup("postgres", n, channels) for n in args.replicas]
    return out


def summarise(runs: Sequence[dict[str, Any]], setup: Setup) -> dict[str, Any]:
    """The medians over the repeats of one configuration; per replica, the median of its p99s, the peak RSS."""
    mine = [r for r in runs if Setup(r["store"], r["replicas"], r["channels"]) == setup]

    def med(key: str) -> float:
        return statistics.median(float(r[key]) for r in mine)

    per = [[r["per_replica"][i] for r in mine] for i in range(setup.replicas)]
    cpu = {k: statistics.median(r["cpu_s"][k] for r in mine) for k in mine[0]["cpu_s"]}
    return {
        "label": setup.label,
        "repeats": len(mine),
        "ok": all(r["ok"] for r in mine),
        "answered": med("answered"),
        "mentions": med("mentions"),
        "lost": max(r["lost"] for r in mine),
        "duplicated": max(r["duplicated"] for r in mine),
        "wall_s": med("wall_s"),
        "answers_per_s": med("answers_per_s"),
        "lag_p99_ms": [statistics.median(p["lag_p99_ms"] for p in each) for each in per],
        "rss_peak_mib": [max(p["rss_peak_mib"] for p in each) for each in per],
        "cpu_s": cpu,
    }


def table(summaries: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| configuration | answered | lost | duplicated | lag p99 ms, per replica | peak RSS MiB, per process "
        "| wall s | answers/s | CPU s: replicas / PostgreSQL / model / Slack / rest of the machine |",
        "|---|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for s in summaries:
        cpu = s["cpu_s"]
        bots = sum(v for k, v in cpu.items() if k.startswith("replica"))
        lines.append(
            f"| {s['label']} | {s['answered']:.0f} / {s['mentions']:.0f} | {s['lost']} | {s['duplicated']} "
            f"| {', '.join(f'{x:.0f}' for x in s['lag_p99_ms'])} | {', '.join(f'{x:.0f}' for x in s['rss_peak_mib'])} "
            f"| {s['wall_s']:.1f} | {s['answers_per_s']:.0f} "
            f"| {bots:.1f} / {cpu['postgres']:.1f} / {cpu['model']:.1f} / {cpu['slack']:.1f} / {cpu['others']:.1f} |"
        )
    return lines


async def main_async(args: argparse.Namespace, postgres: PostgresServer) -> int:
    forbid_non_loopback()
    result: dict[str, Any] = {
        "benchmark": "replicas",
        "command": ".venv/bin/python -m bench.replicas " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "code": code_version("bots", "core"),
        "config": vars(args),
    }
    runs: list[dict[str, Any]] = []
    plan = setups(args)
    async with (
        chat_model_server(delay=args.delay, chunk_delay=args.chunk_delay, words=args.words) as model,
        slack_process() as slack,
    ):
        with tempfile.TemporaryDirectory(prefix="threadline-replicas-") as tmp:
            sides = Sides(model, slack, postgres, Path(tmp))
            for repeat in range(args.repeats):
                for setup in plan if repeat % 2 == 0 else plan[::-1]:
                    one = await run_setup(setup, sides, args, repeat)
                    runs.append(one)
                    write_result("replicas-partial", result | {"runs": runs})  # what is measured, if stopped
                    lags = ", ".join(f"{p['lag_p99_ms']:.0f}" for p in one["per_replica"])
                    print(
                        f"repeat {repeat + 1} {setup.label}: {one['answered']}/{one['mentions']} answered, lost "
                        f"{one['lost']}, duplicated {one['duplicated']}, wall {one['wall_s']:.1f} s, "
                        f"{one['answers_per_s']:.0f}/s, lag p99 ms {lags}, db {one['db_runs']}, ok {one['ok']}",
                        flush=True,
                    )
    result["runs"] = runs
    result["summary"] = [summarise(runs, s) for s in plan]
    result["all_ok"] = all(r["ok"] for r in runs)
    path = write_result("replicas", result)
    print("\n".join(table(result["summary"])))
    print(f"all ok: {result['all_ok']}; written to {path}")
    return 0 if result["all_ok"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[1000])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4], help="replica counts on PostgreSQL")
    parser.add_argument("--per-channel", type=int, default=1, help="mentions per channel")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between a channel's mentions")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread each round's first mentions over S seconds")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-sqlite", action="store_true", help="leave out the one process on SQLite")
    parser.add_argument("--delay", type=float, default=0.05, help="model: seconds to the first token")
    parser.add_argument("--chunk-delay", type=float, default=0.01, help="model: seconds between 4-character chunks")
    parser.add_argument("--words", type=int, default=10, help="model: words in every answer")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every answer of a load")
    args = parser.parse_args()
    with PostgresServer.running() as postgres:
        code = asyncio.run(main_async(args, postgres))
    sys.exit(code)


if __name__ == "__main__":
    main()
