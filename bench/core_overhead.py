"""Core overhead: one console turn through Threadline vs one bare openai SDK call to the same server.

    .venv/bin/python -m bench.core_overhead [--turns 200] [--warmup 20] [--profile]

One scripted model server (:mod:`bench.fake_server`, in its own process, on 127.0.0.1) answers
every request with the same ~200-character text, streamed four characters a chunk (no delay
between chunks unless ``--chunk-delay``).

* A, bare SDK: ``openai.AsyncOpenAI(...).chat.completions.create(stream=True)`` with exactly the
  request body Threadline sends (captured from the server: system prompt, user message, the
  built-in tool's schema, stream options), consuming the stream fully and joining the text.
* B, console turn: a real :class:`ConsoleChannel` reads a scripted line, posts it, and renders
  every event until ``RunCompleted`` into an ``io.StringIO`` (live=False, as when piped). The
  same channel is used throughout with ``/reset`` before every turn (outside the timed part), so
  every turn sends the same two messages as A. After each turn the benchmark waits, untimed, for
  the lane to go idle, so none of its leftover work runs into the next sample.
* C, bare openai-agents (a reference, to split B's overhead): ``Runner.run_streamed`` on one Agent
  built once with the same instructions, tool and model settings, on A's client.

The server checks that every request of every side had the same body. The sides run in rounds,
in a random order within each round, after a warm-up. Reported: median and p99 wall time per
side, ratios of medians and of p99s (B/A is the project's goal, <= 1.10), the median per-round
difference, and process CPU time per turn. A second, instrumented pass splits B (and A) into
phases; ``--profile``, or a median ratio B/A above the goal, adds a cProfile summed by package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import getpass
import inspect
import io
import itertools
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, RunConfig, Runner
from agents.stream_events import RawResponsesStreamEvent

from bench.common import (
    RESULTS,
    bench_settings,
    forbid_non_loopback,
    machine,
    model_server,
    summary,
    write_result,
)
from bench.fake_server import reply_text
from bots.console.app import ConsoleChannel
from core.events import Event
from core.handles import RunHandle
from core.models import Incoming
from core.service import Threadline

GOAL_RATIO = 1.10
CHANNEL = "console:local:bench"
MESSAGE = "What does our deploy checklist say about running database migrations before a release?"
SIDES = {"A": "bare openai SDK", "C": "bare openai-agents", "B": "console turn"}


class GcMeter:
    """Adds up the time the cyclic garbage collector runs (gc.callbacks), by generation."""

    def __init__(self) -> None:
        self.total_ns = 0
        self.by_generation: dict[int, list[int]] = {0: [], 1: [], 2: []}
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            spent = time.perf_counter_ns() - self._started
            self.total_ns += spent
            self.by_generation[info["generation"]].append(spent)

    def install(self) -> None:
        gc.callbacks.append(self)

    def remove(self) -> None:
        gc.callbacks.remove(self)


GC = GcMeter()


@dataclass
class Mark:
    wall: int
    cpu: int
    gc: int


def mark() -> Mark:
    return Mark(time.perf_counter_ns(), time.process_time_ns(), GC.total_ns)


@dataclass
class Sample:
    wall_ms: float
    cpu_ms: float
    gc_ms: float


def sample(start: Mark, end: Mark) -> Sample:
    return Sample((end.wall - start.wall) / 1e6, (end.cpu - start.cpu) / 1e6, (end.gc - start.gc) / 1e6)


@dataclass
class ScriptedInput:
    """The console's ``read_line``: hands out queued lines and notes when each is asked for."""

    lines: deque[str] = field(default_factory=deque)
    marks: list[Mark] = field(default_factory=list)
    profiler: cProfile.Profile | None = None

    async def __call__(self) -> str | None:
        now = mark()
        self.marks.append(now)
        line = self.lines.popleft() if self.lines else None
        if self.profiler is not None and line == MESSAGE:
            self.profiler.enable()  # disabled when the console has shown the answer (side B)
        return line


class Stamps:
    """Instrumented pass only: first and last time each named point is reached, and the store calls."""

    def __init__(self) -> None:
        self.points: dict[str, list[int]] = {}
        self.db: list[tuple[int, int, int, str]] = []  # (start, end, ns in the store's thread, what) per call

    def note(self, name: str) -> None:
        now = time.perf_counter_ns()
        self.points.setdefault(name, [now, now])[1] = now

    def clear(self) -> None:
        self.points.clear()
        self.db.clear()


class Sides:
    def __init__(self, service: Threadline, client: openai.AsyncOpenAI, request: dict[str, Any], expected: str):
        self.service = service
        self.client = client
        self.expected = expected
        self.input = ScriptedInput()
        self.out = io.StringIO()
        self.console = ConsoleChannel(service, CHANNEL, read_line=self.input, out=self.out, live=False)
        known = set(inspect.signature(client.chat.completions.create).parameters)
        self.kwargs = {k: v for k, v in request.items() if k in known}
        extra = {k: v for k, v in request.items() if k not in known}
        if extra:
            self.kwargs["extra_body"] = extra
        self.agent: Agent[Any] | None = None
        self.agent_input: list[Any] = []
        if request:
            system, user = request["messages"][0], request["messages"][-1]
            assistant = service.assistants.get(None)
            self.agent = Agent(
                name=assistant.name,
                instructions=system["content"],
                model=OpenAIChatCompletionsModel(model=request["model"], openai_client=client),
                tools=list(service.tools.select(assistant.tools)),
                model_settings=ModelSettings(temperature=assistant.temperature, include_usage=True),
            )
            self.agent_input = [{"role": "user", "content": user["content"]}]
        self.run_config = RunConfig(tracing_disabled=True, workflow_name="bench")
        self.stamps: Stamps | None = None  # set by the instrumented pass
        self.phases: list[tuple[str, dict[str, float]]] = []
        self.store_calls: dict[str, list[float]] = {}  # what -> µs in the store's thread, each call
        self.skipped: list[str] = []

    def runner(self, side: str, profiler: cProfile.Profile | None = None) -> Callable[[], Awaitable[Sample]]:
        run = {"A": self.side_a, "B": self.side_b, "C": self.side_c}[side]
        return lambda: run(profiler)

    async def side_a(self, profiler: cProfile.Profile | None = None) -> Sample:
        stamps = self.stamps
        if stamps is not None:
            stamps.clear()
        if profiler is not None:
            profiler.enable()
        start = mark()
        stream = await self.client.chat.completions.create(**self.kwargs)
        if stamps is not None:
            stamps.note("response headers")
        parts: list[str] = []
        async for chunk in stream:
            if chunk.choices and (content := chunk.choices[0].delta.content):
                if stamps is not None:
                    stamps.note("text")
                parts.append(content)
        end = mark()
        if profiler is not None:
            profiler.disable()
        text = "".join(parts)
        if text != self.expected:
            raise AssertionError(f"side A got {text!r}")
        if stamps is not None:
            self.phases.append(("A", _phases(start.wall, end.wall, stamps, A_POINTS)))
            stamps.clear()
        return sample(start, end)

    async def side_c(self, profiler: cProfile.Profile | None = None) -> Sample:
        assert self.agent is not None
        if profiler is not None:
            profiler.enable()
        start = mark()
        result = Runner.run_streamed(self.agent, self.agent_input, run_config=self.run_config)
        parts: list[str] = []
        async for event in result.stream_events():
            if isinstance(event, RawResponsesStreamEvent) and event.data.type == "response.output_text.delta":
                parts.append(event.data.delta)
        end = mark()
        if profiler is not None:
            profiler.disable()
        if "".join(parts) != self.expected or result.final_output != self.expected:
            raise AssertionError(f"side C got {result.final_output!r}")
        return sample(start, end)

    async def side_b(self, profiler: cProfile.Profile | None = None) -> Sample:
        self.input.lines.extend(["/reset", MESSAGE])
        self.input.marks.clear()
        self.input.profiler = profiler
        self.out.seek(0)
        self.out.truncate()
        try:
            # The console reads on while it shows an answer: the turn ends when serve() returns, after the
            # answer is shown, not at its last read (the end of input, read while the answer streams).
            await self.console.serve()
            end = mark()
        finally:
            if profiler is not None:
                profiler.disable()
            self.input.profiler = None
        start = self.input.marks[1]
        await self.service.wait_idle()  # untimed: the lane's last look for queued work
        output = self.out.getvalue()
        if output.splitlines()[-1] != self.expected:
            raise AssertionError(f"side B printed {output!r}")
        if self.stamps is not None:
            phases = _phases(start.wall, end.wall, self.stamps, B_POINTS)
            calls = [c for c in self.stamps.db if start.wall <= c[0] and c[1] <= end.wall]
            phases["store calls in the turn (count)"] = len(calls)
            phases["store calls: awaited, sum"] = sum(e - s for s, e, _, _ in calls) / 1e6
            phases["store calls: in the store's thread, sum"] = sum(inner for _, _, inner, _ in calls) / 1e6
            self.phases.append(("B", phases))
            for _, _, inner, what in calls:
                self.store_calls.setdefault(what, []).append(inner / 1e3)
            self.stamps.clear()
        return sample(start, end)

    @contextlib.contextmanager
    def instrumented(self) -> Iterator[None]:
        """Wrap (on the instances only, never the classes) the points where B's phases begin and end.

        Private attributes are reached for; a point whose attribute is gone is skipped, not fatal.
        """
        stamps = self.stamps = Stamps()
        service = self.service
        undo: list[tuple[object, str]] = []

        def wrap(owner: object, name: str, make: Callable[[Any], Any]) -> None:
            try:
                real = getattr(owner, name)
            except AttributeError:
                self.skipped.append(name)
                return
            setattr(owner, name, make(real))
            undo.append((owner, name))

        def timed_post(real: Any) -> Any:
            async def post(incoming: Incoming) -> RunHandle | None:
                handle: RunHandle | None = await real(incoming)
                stamps.note("posted")
                if handle is not None:
                    wrap(handle, "put", timed_put)
                return handle

            return post

        def timed_put(real: Any) -> Any:
            def put(event: Event) -> None:
                stamps.note(event.type)
                real(event)

            return put

        def timed_build(real: Any) -> Any:
            async def build(**kwargs: Any) -> Any:
                stamps.note("context build starts")
                try:
                    return await real(**kwargs)
                finally:
                    stamps.note("context built")

            return build

        def timed_create(real: Any) -> Any:
            async def create(**kwargs: Any) -> Any:
                stamps.note("model request starts")
                try:
                    return await real(**kwargs)
                finally:
                    stamps.note("response headers")

            return create

        def timed_call(real: Any) -> Any:
            async def call(fn: Callable[..., Any], *args: Any) -> Any:
                inner = [0]

                def run(*a: Any) -> Any:
                    begin = time.perf_counter_ns()
                    try:
                        return fn(*a)
                    finally:
                        inner[0] = time.perf_counter_ns() - begin

                what = getattr(fn, "__qualname__", "?").replace(".<locals>", "").removeprefix("Store.")
                begin = time.perf_counter_ns()
                try:
                    return await real(run, *args)
                finally:
                    stamps.db.append((begin, time.perf_counter_ns(), inner[0], what))

            return call

        wrap(service, "post", timed_post)
        wrap(getattr(service, "_context", None), "build", timed_build)
        models = getattr(getattr(service, "_models", None), "_client", None)
        wrap(getattr(getattr(models, "chat", None), "completions", None), "create", timed_create)
        wrap(service.store, "_call", timed_call)
        try:
            yield
        finally:
            for owner, name in undo:
                with contextlib.suppress(AttributeError):
                    delattr(owner, name)  # back to the class's method
            self.stamps = None


# Points in the order they are reached; a phase runs from one point reached to the next.
A_POINTS = ("response headers", "text")
B_POINTS = (
    "posted",
    "run_started",
    "context build starts",
    "context built",
    "model request starts",
    "response headers",
    "text_delta",
    "run_completed",
)
_STREAMS = ("text", "text_delta")


def _phases(start: int, end: int, stamps: Stamps, points: tuple[str, ...]) -> dict[str, float]:
    """Milliseconds between consecutive points (first arrival; for the text stream also the last)."""
    marks: list[tuple[str, int]] = [("start", start)]
    for name in points:
        if name not in stamps.points:
            continue
        first, last = stamps.points[name]
        marks.append((f"first {name}" if name in _STREAMS else name, first))
        if name in _STREAMS:
            marks.append((f"last {name}", last))
    marks.append(("end", end))
    return {f"{a} -> {b}": (tb - ta) / 1e6 for (a, ta), (b, tb) in itertools.pairwise(marks)}


async def rounds(
    count: int, rng: random.Random, sides: dict[str, Callable[[], Awaitable[Sample]]]
) -> tuple[dict[str, list[Sample]], list[str]]:
    """``count`` rounds; each runs every side once, in a random order."""
    out: dict[str, list[Sample]] = {name: [] for name in sides}
    orders: list[str] = []
    names = list(sides)
    for _ in range(count):
        rng.shuffle(names)
        orders.append("".join(names))
        for name in names:
            out[name].append(await sides[name]())
    return out, orders


# -- profiling ---------------------------------------------------------------------------------


def _package(filename: str, function: str) -> str:
    """A short owner for a profiled function: the site-package, stdlib module, project module or builtin."""
    if filename == "~":
        if " of " in function:
            return "builtin " + function.split(" of ")[-1].strip(">").strip("'").removesuffix("' objects")
        return "builtin " + function.strip("<>").removeprefix("built-in method ")
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0].removesuffix(".py")
    for root in ("core", "bots", "bench"):
        if root in parts and "lib" not in parts:
            return "/".join(parts[parts.index(root) :]).removesuffix(".py")
    if filename.startswith("<frozen"):
        return "stdlib importlib"
    parent = Path(filename).parent.name
    return f"stdlib {parent if parent not in ('', 'python3.11') else Path(filename).stem}"


def by_package(profiler: cProfile.Profile, turns: int) -> dict[str, float]:
    """Own time (ms per turn) summed by package."""
    stats = pstats.Stats(profiler)
    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        totals[_package(filename, function)] += tottime * 1000 / turns
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def top_functions(profiler: cProfile.Profile, limit: int) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    return buffer.getvalue()


async def profile(sides: Sides, turns: int, rng: random.Random) -> dict[str, Any]:
    profilers = {name: cProfile.Profile() for name in SIDES}
    await rounds(turns, rng, {name: sides.runner(name, prof) for name, prof in profilers.items()})
    RESULTS.mkdir(parents=True, exist_ok=True)
    files = []
    for name, prof in profilers.items():
        prof.dump_stats(RESULTS / f"core_overhead-profile-{name}.pstats")
        (RESULTS / f"core_overhead-profile-{name}.txt").write_text(top_functions(prof, 40))
        files += [str(RESULTS / f"core_overhead-profile-{name}.{ext}") for ext in ("pstats", "txt")]
    return {
        "turns": turns,
        "note": "cProfile of the event-loop thread only (the store's SQLite thread is not profiled); "
        "own time in ms per turn, summed by package; profiling inflates call-heavy code",
        "own_ms_per_turn": {
            name: {k: round(v, 3) for k, v in by_package(prof, turns).items()} for name, prof in profilers.items()
        },
        "files": files,
    }


# -- main ----------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    rng = random.Random(args.seed)
    user = getpass.getuser() or "you"  # the console writes "<user>: <text>"
    expected = reply_text(f"{user}: {MESSAGE}", args.reply_chars)
    result: dict[str, Any] = {
        "benchmark": "core_overhead",
        "command": ".venv/bin/python -m bench.core_overhead " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "config": {
            "rounds": args.turns,
            "warmup_rounds": args.warmup,
            "seed": args.seed,
            "reply_chars": args.reply_chars,
            "server": "bench.fake_server in a child process on 127.0.0.1",
            "chunk_delay_s": args.chunk_delay,
            "sides": SIDES,
            "side_b": "ConsoleChannel.serve on one channel, /reset before each turn (untimed), live=False",
            "assistant": "built-in (its instructions and the get_weather tool schema are sent)",
        },
    }
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
        async with model_server(reply_chars=args.reply_chars, chunk_delay=args.chunk_delay) as server:
            settings = bench_settings(server.base_url, Path(tmp) / "bench.db", channel=CHANNEL)
            service = await Threadline.open(settings)
            client = openai.AsyncOpenAI(api_key="sk-bench-not-a-real-key", base_url=server.base_url, max_retries=0)
            try:
                # One turn through Threadline to capture the exact request it sends.
                await server.command("reset")
                await Sides(service, client, {}, expected).side_b()
                request = (await server.command("bodies"))["bodies"][0]
                await server.command("reset")
                sides = Sides(service, client, request, expected)
                result["request_sent"] = {
                    "messages": len(request["messages"]),
                    "tools": len(request.get("tools") or []),
                    "keys": sorted(request),
                }

                await rounds(args.warmup, rng, {name: sides.runner(name) for name in SIDES})
                result["gc"] = {"tracked_objects_after_warmup": len(gc.get_objects())}
                GC.install()
                samples, orders = await rounds(args.turns, rng, {name: sides.runner(name) for name in SIDES})
                GC.remove()
                result["server_check"] = stats = await server.command("stats")
                if stats["distinct_bodies"] != 1:
                    print(f"warning: the sides sent {stats['distinct_bodies']} different request bodies")

                with sides.instrumented():
                    await rounds(args.phase_turns, rng, {"A": sides.runner("A"), "B": sides.runner("B")})

                result["samples_ms"] = {
                    **{f"{n}_wall": [s.wall_ms for s in v] for n, v in samples.items()},
                    **{f"{n}_cpu": [s.cpu_ms for s in v] for n, v in samples.items()},
                    **{f"{n}_gc": [s.gc_ms for s in v] for n, v in samples.items()},
                    "order": orders,
                }
                result["sides"] = {
                    name: {
                        "what": SIDES[name],
                        "wall_ms": summary([s.wall_ms for s in samples[name]]),
                        "cpu_ms": summary([s.cpu_ms for s in samples[name]]),
                        "gc_ms_total": sum(s.gc_ms for s in samples[name]),
                        "turns_with_gc_over_1ms": sum(s.gc_ms > 1 for s in samples[name]),
                    }
                    for name in SIDES
                }
                result["ratios"] = {
                    f"{x}/{y}": {
                        "median": _ratio(result, x, y, "wall_ms", "median"),
                        "p99": _ratio(result, x, y, "wall_ms", "p99"),
                        "cpu_median": _ratio(result, x, y, "cpu_ms", "median"),
                        "median_of_differences_ms": statistics.median(
                            b.wall_ms - a.wall_ms for a, b in zip(samples[y], samples[x], strict=True)
                        ),
                    }
                    for x, y in (("B", "A"), ("C", "A"), ("B", "C"))
                }
                result["gc"]["pauses"] = {
                    f"gen{g}": {"count": len(v), "total_ms": sum(v) / 1e6, "max_ms": max(v, default=0) / 1e6}
                    for g, v in GC.by_generation.items()
                }
                result["goal_met"] = result["ratios"]["B/A"]["median"] <= GOAL_RATIO
                result["phases_median_ms"] = {
                    side: {
                        key: statistics.median(row[key] for name, row in sides.phases if name == side)
                        for key in next(row for name, row in sides.phases if name == side)
                    }
                    for side in ("A", "B")
                }
                turns = sum(1 for name, _ in sides.phases if name == "B")
                result["store_calls_in_B"] = {
                    what: {"per_turn": len(v) / turns, "median_us": statistics.median(v)}
                    for what, v in sorted(sides.store_calls.items(), key=lambda kv: -sum(kv[1]))
                }
                if sides.skipped:
                    result["phases_skipped"] = sides.skipped

                if args.profile or not result["goal_met"]:
                    result["profile"] = await profile(sides, args.profile_turns, rng)
            finally:
                await client.close()
                await service.close()

    path = write_result("core_overhead", result)
    report(result, path)
    return 0


def _ratio(result: dict[str, Any], x: str, y: str, metric: str, stat: str) -> float:
    value: float = result["sides"][x][metric][stat] / result["sides"][y][metric][stat]
    return value


def report(result: dict[str, Any], path: Path) -> None:
    cfg = result["config"]
    print(
        f"core overhead: {cfg['rounds']} rounds (sides in random order in each) after {cfg['warmup_rounds']} "
        f"warm-up rounds; reply {cfg['reply_chars']} chars, streamed, {cfg['chunk_delay_s'] * 1000:g} ms between chunks"
    )
    print(f"{'':26}{'median ms':>11}{'p99 ms':>9}{'CPU median ms':>15}{'GC ms, all turns':>18}")
    for name, side in result["sides"].items():
        wall, cpu = side["wall_ms"], side["cpu_ms"]
        print(
            f"{name} {side['what']:24}{wall['median']:11.2f}{wall['p99']:9.2f}{cpu['median']:15.2f}"
            f"{side['gc_ms_total']:18.1f}"
        )
    for key, ratio in result["ratios"].items():
        print(
            f"ratio {key:20}{ratio['median']:11.2f}{ratio['p99']:9.2f}{ratio['cpu_median']:15.2f}"
            f"   median difference {ratio['median_of_differences_ms']:.2f} ms"
        )
    verdict = "met" if result["goal_met"] else "NOT met"
    print(f"goal B/A median <= {GOAL_RATIO:.2f}: {verdict}; server check: {result['server_check']}")
    pauses = ", ".join(
        f"{g}: {p['count']} ({p['total_ms']:.1f} ms, max {p['max_ms']:.1f})" for g, p in result["gc"]["pauses"].items()
    )
    print(f"garbage collections during the measured rounds: {pauses}")
    print("phases, median ms (instrumented pass):")
    for side, phases in result["phases_median_ms"].items():
        for key, value in phases.items():
            print(f"  {side}  {key:58}{value:8.2f}")
    print("store calls in a B turn (instrumented pass): per turn, median µs in the store's thread:")
    for what, call in result["store_calls_in_B"].items():
        print(f"  {what:50}{call['per_turn']:6.1f}{call['median_us']:10.1f}")
    if "profile" in result:
        prof = result["profile"]["own_ms_per_turn"]
        print(f"profile, own ms per turn by package ({result['profile']['turns']} turns per side), top 20 of B:")
        print(f"  {'':40}{'A':>8}{'C':>8}{'B':>8}")
        for key, value in list(prof["B"].items())[:20]:
            print(f"  {key[:40]:40}{prof['A'].get(key, 0.0):8.3f}{prof['C'].get(key, 0.0):8.3f}{value:8.3f}")
        print(f"  {'total':40}" + "".join(f"{sum(prof[n].values()):8.3f}" for n in "ACB"))
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Core overhead of a console turn vs a bare openai SDK call.")
    parser.add_argument("--turns", type=int, default=200, help="measured rounds, one turn per side each (200)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured rounds first (20)")
    parser.add_argument("--phase-turns", type=int, default=50, help="rounds in the instrumented pass (50)")
    parser.add_argument("--reply-chars", type=int, default=200)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks (0)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="profile even when the goal is met")
    parser.add_argument("--profile-turns", type=int, default=50)
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
