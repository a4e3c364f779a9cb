"""One Threadline process of the multi-process benchmarks, driven by its parent over stdin and stdout.

    python -m bench.worker CONFIG_JSON        (started by :class:`WorkerProcess`, not by hand)

``CONFIG_JSON``: ``{"base_url", "db", "settings": {...overrides of bench_settings}, "log_level",
"gc_freeze"}`` (``gc_freeze``: call ``gc.freeze()`` once the service is open, an experiment).
The worker opens its own :class:`Threadline` on the shared database file (its own process id and
lease, as a second bot process would) and takes one JSON command a line on stdin. A command with
an ``id`` is answered by one line with the same ``id``; other lines it writes are events (``ev``):

* once the service is open: ``{"ev": "ready", "pid", "process_id", "rss_kib"}``;
* ``{"op": "round", "id", "at", "posts": [[channel, text, msg_id], ...], "handle_timeout"}``: at ``at``
  (``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every process on Linux) post them all
  in one ``asyncio.gather``, read every handle to its end, then wait (at most ``handle_timeout``)
  until no lane has work. Answers ``start``, ``end`` (monotonic, the last answer), ``post_all_s``,
  ``idle`` and per post ``[outcome, latency_s, text]`` (outcome ``completed``, a failed status,
  ``timeout``, ``duplicate``);
* ``{"op": "measure", "id", "on": true | false}``: start / stop the event-loop lag ticker (10 ms),
  the gc pause timer, the CPU clock and a probe that times a store call doing nothing every 0.25 s
  (how long the store's one thread keeps a call waiting); stopping answers lag, RSS, ru_maxrss,
  CPU, gc pauses and the store waits;
* ``{"op": "post", "tag", "channel", "text", "msg_id"}`` (no ``id``): post it, then write
  ``{"ev": "posted", "tag", "run_id"}`` (``run_id`` null: a duplicate delivery, ignored) or
  ``{"ev": "post_error", "tag", "error"}``; and when the run ends
  ``{"ev": "result", "tag", "run_id", "status", "text", "t"}`` (``status`` ``completed`` or the
  failed status, ``text`` the answer or the message for people, ``t`` monotonic);
* every ``notify(channel, text)`` of the service: ``{"ev": "notify", "channel", "text", "t"}``;
* ``{"op": "stats", "id"}``: lag, RSS, gc and CPU since the start (without stopping anything);
* ``{"op": "idle", "id"}``: answers once no lane has work;
* ``{"op": "close", "id"}``: closes the service, answers, exits (so does the end of stdin).

A command that raises is answered ``{"id", "error", "trace"}`` (:class:`WorkerError` in the parent).
``kill -USR1 <pid>`` prints every asyncio task's stack on the worker's error output (a run that hangs).

The parent's side is :class:`WorkerProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    GcTimer,
    LagTicker,
    bench_settings,
    forbid_non_loopback,
    peak_rss_kib,
    percentile,
    rss_kib,
)
from core.events import RunCompleted, RunFailed
from core.handles import RunHandle
from core.models import Author, Incoming
from core.service import Threadline

__all__ = ["AUTHOR", "LeaseWatcher", "WorkerError", "WorkerProcess", "lag_report"]

AUTHOR = Author(id="U_BENCH", name="alice")
RESULT_TIMEOUT = 600.0  # a soak post's run must end within this


def lag_report(lags: Sequence[float]) -> dict[str, float]:
    """Event-loop lag in ms: samples, median, p99, max."""
    if not lags:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "n": len(lags),
        "p50_ms": statistics.median(lags) * 1000,
        "p99_ms": percentile(lags, 99) * 1000,
        "max_ms": max(lags) * 1000,
    }


# -- the child ------------------------------------------------------------------------------------


class Worker:
    def __init__(self, service: Threadline) -> None:
        self.service = service
        self.ticker = LagTicker(0.010)
        self.gc = GcTimer()
        self.cpu_started = time.process_time()
        self.rss_before = rss_kib()
        self.tasks: set[asyncio.Task[None]] = set()
        self.store_waits: list[float] = []
        self.slot_limits: list[float] = []
        self._probe: asyncio.Task[None] | None = None

    async def _probe_store(self) -> None:
        """How long a call that does nothing waits for the store's thread (its queue, and SQLite's locks)."""
        while True:
            began = time.perf_counter()
            await self.service.store.call(lambda db: None)
            self.store_waits.append(time.perf_counter() - began)
            slots = self.service.metrics.registry.get_sample_value("threadline_run_slots")
            waiting = self.service.metrics.registry.get_sample_value("threadline_runs_waiting_for_slot")
            if waiting:  # the adaptive bound while runs wait for it (core/run_slots.py)
                self.slot_limits.append(slots or 0.0)
            await asyncio.sleep(0.25)

    def start_measuring(self) -> None:
        self.gc.start()
        self.rss_before = rss_kib()
        self.cpu_started = time.process_time()
        self.ticker.start()
        self.store_waits = []
        self.slot_limits = []
        if self._probe is None:
            self._probe = asyncio.create_task(self._probe_store(), name="store probe")

    async def stop_measuring(self) -> None:
        await self.ticker.stop()
        self.gc.stop()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None

    @staticmethod
    def send(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def measures(self) -> dict[str, Any]:
        return {
            "lag": lag_report(self.ticker.lags),
            "rss_before_kib": self.rss_before,
            "rss_peak_sampled_kib": max(self.ticker.rss_peak, rss_kib()),
            "rss_now_kib": rss_kib(),
            "ru_maxrss_kib": peak_rss_kib(),
            "cpu_s": time.process_time() - self.cpu_started,
            "gc": self.gc.report(),
            "store_wait": lag_report(self.store_waits),
            "run_slots_while_runs_waited": {
                "samples": len(self.slot_limits),
                "median": statistics.median(self.slot_limits) if self.slot_limits else None,
                "min": min(self.slot_limits, default=None),
                "max": max(self.slot_limits, default=None),
            },
        }

    async def handle(self, command: dict[str, Any]) -> bool:
        """Carry out one command (an error is answered, with its traceback); False once the worker should exit."""
        try:
            return await self._handle(command)
        except Exception as exc:
            logging.getLogger("bench.worker").exception("command %s failed", command.get("op"))
            self.send(
                {"id": command.get("id"), "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
            )
            return True

    async def _handle(self, command: dict[str, Any]) -> bool:
        op = command.get("op")
        reply: dict[str, Any] = {"id": command.get("id")}
        if op == "post":
            self.spawn(self.post(command))
            return True
        if op == "round":
            reply |= await self.round(command)
        elif op == "measure":
            if command["on"]:
                self.start_measuring()
            else:
                await self.stop_measuring()
                reply |= self.measures()
        elif op == "stats":
            reply |= self.measures()
        elif op == "idle":
            await self.service.wait_idle()
        elif op == "close":
            await self.stop_measuring()
            reply |= self.measures()
            await self.close()
            self.send(reply)
            return False
        else:
            reply["error"] = f"unknown op {op!r}"
        self.send(reply)
        return True

    async def round(self, command: dict[str, Any]) -> dict[str, Any]:
        incoming = [Incoming(c, AUTHOR, text, platform_msg_id=m) for c, text, m in command["posts"]]
        timeout = float(command.get("handle_timeout", 300.0))
        delay = float(command["at"]) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        start = time.monotonic()
        handles = await asyncio.gather(*(self.service.post(m) for m in incoming))
        post_all = time.monotonic() - start

        async def answer(handle: RunHandle | None) -> list[Any]:
            if handle is None:
                return ["duplicate", None, ""]
            try:
                event = await asyncio.wait_for(handle.result(), timeout=timeout)
            except TimeoutError:
                return ["timeout", None, ""]
            latency = time.monotonic() - start
            if isinstance(event, RunCompleted):
                return ["completed", latency, event.text]
            if isinstance(event, RunFailed):
                return [event.status, latency, event.message]
            return [type(event).__name__, latency, ""]

        outcomes = await asyncio.gather(*(answer(h) for h in handles))
        end = time.monotonic()
        idle = True
        try:
            await asyncio.wait_for(self.service.wait_idle(), timeout=timeout)
        except TimeoutError:
            idle = False
        return {"start": start, "end": end, "late_s": start - float(command["at"]), "post_all_s": post_all,
                "outcomes": outcomes, "idle": idle}  # fmt: skip

    async def post(self, command: dict[str, Any]) -> None:
        tag = command["tag"]
        incoming = Incoming(command["channel"], AUTHOR, command["text"], platform_msg_id=command["msg_id"])
        try:
            handle = await self.service.post(incoming)
        except Exception as exc:
            self.send({"ev": "post_error", "tag": tag, "error": f"{type(exc).__name__}: {exc}"})
            return
        self.send({"ev": "posted", "tag": tag, "run_id": handle.run_id if handle else None, "t": time.monotonic()})
        if handle is None:
            return
        try:
            event = await asyncio.wait_for(handle.result(), timeout=RESULT_TIMEOUT)
        except TimeoutError:
            self.send({"ev": "result", "tag": tag, "run_id": handle.run_id, "status": "timeout", "text": ""})
            return
        if isinstance(event, RunCompleted):
            status, text = "completed", event.text
        elif isinstance(event, RunFailed):
            status, text = event.status, event.message
        else:
            status, text = type(event).__name__, ""
        self.send({"ev": "result", "tag": tag, "run_id": handle.run_id, "status": status, "text": text,
                   "t": time.monotonic()})  # fmt: skip

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.service.close()
        self.ticker.close()


async def serve(config: dict[str, Any]) -> None:
    forbid_non_loopback()
    overrides = dict(config.get("settings") or {})
    if overrides.get("assistants_file"):
        overrides["assistants_file"] = Path(overrides["assistants_file"])
    settings = bench_settings(config["base_url"], Path(config["db"]), **overrides)

    async def notify(channel: str, text: str) -> None:
        Worker.send({"ev": "notify", "channel": channel, "text": text, "t": time.monotonic()})

    loop = asyncio.get_running_loop()

    def dump_tasks() -> None:  # kill -USR1 <pid>: every task's stack on stderr (a benchmark that hangs)
        for task in asyncio.all_tasks(loop):
            task.print_stack(limit=30, file=sys.stderr)
        sys.stderr.flush()

    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    service = await Threadline.open(settings, notify=notify)
    if config.get("gc_freeze"):  # an experiment (bench.many_channels --gc-freeze): what is loaded by now stays
        gc.collect()
        gc.freeze()
    worker = Worker(service)
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    Worker.send({"ev": "ready", "pid": os.getpid(), "process_id": service.store.process_id, "rss_kib": rss_kib()})
    running = True
    commands: set[asyncio.Task[bool]] = set()
    while running:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        if command.get("op") in ("close", "measure", "stats"):
            await asyncio.gather(*commands)  # after what came before it
            running = await worker.handle(command)
            continue
        task = asyncio.create_task(worker.handle(command))
        commands.add(task)
        task.add_done_callback(commands.discard)
    if running:  # the parent went away: close anyway
        await worker.close()


def main() -> None:
    config = json.loads(sys.argv[1])
    logging.basicConfig(
        level=config.get("log_level", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s pid=%(process)d %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(config))


# -- the parent's side ----------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A command failed in the worker; ``trace`` is its traceback there."""

    def __init__(self, worker: str, error: str, trace: str) -> None:
        super().__init__(f"worker {worker}: {error}\n{trace}")
        self.error = error
        self.trace = trace


@dataclass
class WorkerProcess:
    """A :mod:`bench.worker` child: ``call`` a command and await its answer, ``send`` one without."""

    name: str
    process: asyncio.subprocess.Process
    on_event: Callable[[WorkerProcess, dict[str, Any]], None] | None = None
    hello: dict[str, Any] = field(default_factory=dict)
    ended: bool = False
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ready: asyncio.Future[dict[str, Any]] | None = None
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        name: str,
        config: dict[str, Any],
        *,
        stderr: Path,
        on_event: Callable[[WorkerProcess, dict[str, Any]], None] | None = None,
        start_timeout: float = 120.0,
    ) -> WorkerProcess:
        """Start the child, its error output appended to ``stderr``; returns once its service is open."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_AGENTS_DISABLE_TRACING": "1"}
        with stderr.open("ab") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.worker", json.dumps(config),
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env,
                limit=256 * 1024 * 1024,
            )  # fmt: skip
        worker = cls(name, process, on_event)
        worker._ready = asyncio.get_running_loop().create_future()
        worker._reader = asyncio.create_task(worker._read(), name=f"worker {name} output")
        try:
            worker.hello = await asyncio.wait_for(asyncio.shield(worker._ready), timeout=start_timeout)
        except BaseException:
            worker.kill()
            await worker.wait()
            raise
        return worker

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while line := await self.process.stdout.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                if message.get("id") is not None:
                    future = self._pending.pop(int(message["id"]), None)
                    if future is not None and not future.done():
                        if "error" in message:
                            future.set_exception(WorkerError(self.name, message["error"], message.get("trace", "")))
                        else:
                            future.set_result(message)
                    continue
                if message.get("ev") == "ready" and self._ready is not None and not self._ready.done():
                    self._ready.set_result(message)
                if self.on_event is not None:
                    self.on_event(self, message)
        finally:
            self.ended = True
            gone = RuntimeError(f"worker {self.name} (pid {self.pid}) ended")
            for future in [*self._pending.values(), self._ready]:
                if future is not None and not future.done():
                    future.set_exception(gone)
            self._pending.clear()

    def send(self, op: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        if self.ended or self.process.returncode is not None:
            raise RuntimeError(f"worker {self.name} has ended")
        self.process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())

    async def drain(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.drain()

    async def call(self, op: str, *, wait_s: float = 600.0, **fields: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        self.send(op, id=number, **fields)
        await self.drain()
        return await asyncio.wait_for(future, timeout=wait_s)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash or an OOM kill."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        code = await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, timeout=10)
        return code

    async def close(self, wait_s: float = 120.0) -> dict[str, Any]:
        """Close the service and wait for the process to exit; returns its final measures."""
        try:
            final = await self.call("close", wait_s=wait_s)
        finally:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=30)
            except TimeoutError:
                self.kill()
            await self.wait()
        return final


if __name__ == "__main__":
    main()


class LeaseWatcher:
    """Reads the ``processes`` table every ``interval`` s (read-only) while the load runs: how often
    each process renewed its lease, the longest gap between two renewals, and whether a lease ran
    out while its process was alive (the others then take its runs over, as if it were gone)."""

    def __init__(self, db: Path, lease_seconds: float, interval: float = 0.5) -> None:
        self.db = db
        self.lease = lease_seconds
        self.interval = interval
        self.renewed: dict[str, list[float]] = {}
        self.expired_seen: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def _read(self) -> list[tuple[str, float]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)) as conn:
            return [(str(a), float(b)) for a, b in conn.execute("SELECT id, lease_until FROM processes")]

    async def _run(self) -> None:
        while True:
            now = time.time()
            with contextlib.suppress(sqlite3.Error):
                for process_id, until in await asyncio.to_thread(self._read):
                    times = self.renewed.setdefault(process_id, [])
                    renewed_at = until - self.lease
                    if not times or renewed_at > times[-1] + 1e-6:
                        times.append(renewed_at)
                    if until < now:
                        self.expired_seen[process_id] = self.expired_seen.get(process_id, 0) + 1
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lease watcher")

    async def stop(self) -> dict[str, dict[str, Any]]:
        """Per process id: renewals seen, the longest gap between two in s, polls that found its lease out."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        out: dict[str, dict[str, Any]] = {}
        for process_id, times in self.renewed.items():
            gaps = [b - a for a, b in itertools.pairwise(times)]
            out[process_id] = {
                "renewals": len(times),
                "longest_gap_s": max(gaps, default=0.0),
                "polls_with_lease_run_out": self.expired_seen.get(process_id, 0),
            }
        return out
