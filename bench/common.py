"""What the benchmarks share: the model server, settings, a loopback-only guard, statistics, RSS, results."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import ipaddress
import json
import math
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import Settings

__all__ = [
    "REPO",
    "RESULTS",
    "ChildProcess",
    "GcTimer",
    "LagTicker",
    "ModelServer",
    "SideProcess",
    "bench_settings",
    "child_server",
    "forbid_non_loopback",
    "json_commands",
    "machine",
    "model_server",
    "peak_rss_kib",
    "percentile",
    "rss_kib",
    "summary",
    "write_result",
]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# -- never reach the internet ------------------------------------------------------------


def _loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def forbid_non_loopback() -> None:
    """Make any name lookup or connection to something other than loopback fail loudly, in this process."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            raise OSError(f"benchmark: refusing to resolve {host!r}, everything must stay on 127.0.0.1")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise OSError(f"benchmark: refusing to connect to {address!r}, everything must stay on 127.0.0.1")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    # Belt and braces: openai-agents would only export traces with tracing on (the settings turn it off).
    os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"


# -- the scripted model server -----------------------------------------------------------------


@dataclass
class ChildProcess:
    """A stand-in server in a child process, answering one command a line on its stdin with one JSON line."""

    _process: asyncio.subprocess.Process
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, kw_only=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def _ask(self, line: str, what: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        async with self._lock:
            self._process.stdin.write(f"{line}\n".encode())
            await self._process.stdin.drain()
            answer = await self._process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the {what} process ended")
        parsed: dict[str, Any] = json.loads(answer)
        return parsed


@dataclass
class SideProcess(ChildProcess):
    """A chat platform's stand-in (bench.slack_side, bench.discord_side): JSON commands ``{"op": ..., ...}``."""

    async def command(self, op: str, **fields: Any) -> dict[str, Any]:
        return await self._ask(json.dumps({"op": op, **fields}), "platform")


@dataclass
class ModelServer(ChildProcess):
    """The scripted OpenAI-compatible server (:mod:`bench.fake_server`) running in a child process."""

    base_url: str

    async def command(self, name: str) -> dict[str, Any]:
        return await self._ask(name, "model server")


async def json_commands(answer: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
    """A child's loop: each JSON command on stdin answered by ``answer(op, command)``, one JSON line on stdout."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        command: dict[str, Any] = json.loads(line)
        print(json.dumps(await answer(str(command.get("op")), command)), flush=True)


@contextlib.asynccontextmanager
async def child_server(
    args: Sequence[str], *, what: str, start_timeout: float = 30, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[dict[str, Any], asyncio.subprocess.Process]]:
    """A stand-in server in a child process that prints one JSON line (its addresses) when ready.

    Yields (that line, the process); at the end its standard input is closed (it exits) or it is killed.
    """
    process = await asyncio.create_subprocess_exec(
        *args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, limit=256 * 1024 * 1024
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), timeout=start_timeout)
        if not first:
            raise RuntimeError(f"the {what} did not start (see its error output above)")
        yield json.loads(first), process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def model_server(*, reply_chars: int, chunk_delay: float) -> AsyncIterator[ModelServer]:
    args = [sys.executable, "-m", "bench.fake_server", "--reply-chars", str(reply_chars)]
    async with child_server([*args, "--chunk-delay", str(chunk_delay)], what="model server") as (hello, process):
        yield ModelServer(process, base_url=hello["base_url"])


def bench_settings(base_url: str, db_path: Path, **overrides: Any) -> Settings:
    """Settings as the tests build them: scripted model on loopback, estimated tokens, a private database."""
    values: dict[str, Any] = {
        "openai_api_key": "sk-bench-not-a-real-key",
        "openai_base_url": base_url,
        "model": "fake-model",
        "db_path": db_path,
        "assistants_file": None,  # the built-in assistant, as a fresh install has it
        "open_meteo_url": "http://127.0.0.1:9/v1",
        "open_meteo_geocoding_url": "http://127.0.0.1:9/v1",
        "tokenizer": "estimate",
        "tracing": False,
        "code_interpreter": False,  # bench.sandbox measures the sandbox; the chat benchmarks measure chat
    }
    values.update(overrides)
    return Settings(**values)


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``p`` percent of values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else math.nan,
        "p99": percentile(values, 99),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
        "mean": statistics.fmean(values) if values else math.nan,
    }


# -- memory and event-loop lag -----------------------------------------------------------------


def rss_kib() -> int:
    """The process's resident set size now, in KiB (Linux /proc)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE_KIB


def peak_rss_kib() -> int:
    """The process's peak resident set size so far (ru_maxrss: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class LagTicker:
    """A task that sleeps ``interval`` again and again and records how late it wakes (and the RSS)."""

    def __init__(self, interval: float = 0.010) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self.rss_peak = 0
        self._task: asyncio.Task[None] | None = None
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)

    def start(self) -> None:
        self.lags = []
        self.rss_peak = rss_kib()
        self._task = asyncio.create_task(self._run(), name="lag ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.rss_peak = max(self.rss_peak, rss_kib())

    def close(self) -> None:
        os.close(self._fd)

    async def _run(self) -> None:
        perf = time.perf_counter
        while True:
            before = perf()
            await asyncio.sleep(self.interval)
            self.lags.append(perf() - before - self.interval)
            rss = int(os.pread(self._fd, 64, 0).split()[1]) * _PAGE_KIB
            if rss > self.rss_peak:
                self.rss_peak = rss


class GcTimer:
    """How long the garbage collector stops the process, per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._began = 0.0
        self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses[int(info["generation"])].append(time.perf_counter() - self._began)

    def start(self) -> None:
        self.pauses = {0: [], 1: [], 2: []}
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def stop(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def report(self) -> dict[str, dict[str, float]]:
        """Per generation: collections, total and longest pause in ms."""
        return {
            f"gen{gen}": {
                "collections": len(pauses),
                "total_ms": sum(pauses) * 1000,
                "max_ms": max(pauses, default=0.0) * 1000,
            }
            for gen, pauses in self.pauses.items()
        }


# -- results --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    load: tuple[float, ...] | None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=2, default=str)
    path.write_text(text + "\n")
    (RESULTS / f"{name}-latest.json").write_text(text + "\n")
    return path
