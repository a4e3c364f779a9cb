"""Code interpreter sessions: start time, per-call overhead, memory per idle session, sessions per 2 GB.

    .venv/bin/python -m bench.sandbox [--starts 20] [--calls 300] [--sessions 8]

Each figure is measured side by side with the same worker run without the sandbox (a plain
child process with the same pipe protocol and limits), alternating A (bare) and B (sandboxed),
so the ratio B/A is the sandbox's own cost on this machine:

* start: from spawning the session to its first reply (``ping``);
* call: one ``print(1)`` round trip on a warm session;
* memory: the proportional set size (PSS, shared pages split between sharers) of every process
  of a session, summed, for N sessions idle at once, bare and after ``import pandas``;
  sessions per 2 GB = 2048 MiB / PSS per session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from bench.common import REPO, machine, summary, write_result
from core.sandbox.cgroups import MemoryCgroups
from core.sandbox.process import WORKER, Sandbox, SandboxLimits

__all__ = ["BareWorker", "main"]

PYTHON = REPO / ".sandbox" / "bin" / "python"


class BareWorker:
    """The same worker without the sandbox: the reference each figure is divided by."""

    def __init__(self, process: asyncio.subprocess.Process, workdir: tempfile.TemporaryDirectory[str]) -> None:
        self.process = process
        self._workdir = workdir

    @classmethod
    async def start(cls, limits: SandboxLimits) -> BareWorker:
        workdir = tempfile.TemporaryDirectory(prefix="bench-worker-")
        config = json.loads(limits.for_worker()) | {"workdir": workdir.name, "end_strays": False}
        process = await asyncio.create_subprocess_exec(
            str(PYTHON), "-I", str(WORKER), json.dumps(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        worker = cls(process, workdir)
        await worker.request({"op": "ping"})
        return worker

    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        reply: dict[str, Any] = json.loads(await self.process.stdout.readline())
        return reply

    @property
    def pid(self) -> int:
        return self.process.pid

    async def close(self) -> None:
        self.process.kill()
        await self.process.wait()
        self._workdir.cleanup()


async def start_sandbox(limits: SandboxLimits, slot: int, cgroups: MemoryCgroups | None) -> Sandbox:
    """As the bot starts one: as an unprivileged uid when root, in a memory cgroup where there is one."""
    uid = 61000 + slot if os.geteuid() == 0 else None
    return await Sandbox.start(bwrap="bwrap", python=PYTHON, limits=limits, uid=uid, cgroups=cgroups)


def _compare(bare: list[float], boxed: list[float]) -> dict[str, Any]:
    return {
        "bare_s": summary(bare),
        "sandboxed_s": summary(boxed),
        "ratio": statistics.median(boxed) / statistics.median(bare),
    }


def tree_pss_kib(root: int) -> int:
    """PSS of ``root`` and all its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


async def starts(limits: SandboxLimits, cgroups: MemoryCgroups | None, rounds: int) -> dict[str, Any]:
    bare: list[float] = []
    boxed: list[float] = []
    for i in range(rounds):
        for kind in "AB" if i % 2 == 0 else "BA":
            t0 = time.perf_counter()
            if kind == "A":
                worker = await BareWorker.start(limits)
                bare.append(time.perf_counter() - t0)
                await worker.close()
            else:
                sandbox = await start_sandbox(limits, 0, cgroups)
                boxed.append(time.perf_counter() - t0)
                await sandbox.close()
    return {
        "bare_s": summary(bare),
        "sandboxed_s": summary(boxed),
        "ratio": statistics.median(boxed) / statistics.median(bare),
    }


async def calls(limits: SandboxLimits, cgroups: MemoryCgroups | None, count: int) -> dict[str, Any]:
    worker = await BareWorker.start(limits)
    sandbox = await start_sandbox(limits, 0, cgroups)
    bare: list[float] = []
    boxed: list[float] = []
    try:
        for i in range(count):
            for kind in "AB" if i % 2 == 0 else "BA":
                t0 = time.perf_counter()
                if kind == "A":
                    reply = await worker.request({"op": "exec", "code": "print(1)"})
                    bare.append(time.perf_counter() - t0)
                    assert reply["stdout"] == "1\n", reply
                else:
                    result = await sandbox.execute("print(1)")
                    boxed.append(time.perf_counter() - t0)
                    assert result.stdout == "1\n", result
    finally:
        await worker.close()
        await sandbox.close()
    return {
        "bare_s": summary(bare),
        "sandboxed_s": summary(boxed),
        "ratio": statistics.median(boxed) / statistics.median(bare),
    }


async def memory(limits: SandboxLimits, cgroups: MemoryCgroups | None, sessions: int, code: str) -> dict[str, Any]:
    workers = [await BareWorker.start(limits) for _ in range(sessions)]
    boxes = [await start_sandbox(limits, slot, cgroups) for slot in range(sessions)]
    try:
        for worker in workers:
            await worker.request({"op": "exec", "code": code})
        for box in boxes:
            await box.execute(code)
        await asyncio.sleep(0.5)
        bare = sum(tree_pss_kib(w.pid) for w in workers) / sessions / 1024
        boxed = sum(tree_pss_kib(b.pid) for b in boxes) / sessions / 1024
    finally:
        for worker in workers:
            await worker.close()
        for box in boxes:
            await box.close()
    return {
        "code": code,
        "sessions": sessions,
        "bare_pss_mib_per_session": round(bare, 1),
        "sandboxed_pss_mib_per_session": round(boxed, 1),
        "ratio": boxed / bare,
        "sessions_per_2gib": int(2048 // boxed),
    }


async def main_async(args: argparse.Namespace) -> int:
    if not PYTHON.exists():
        print("no .sandbox: run `make sandbox` first", file=sys.stderr)
        return 2
    limits = SandboxLimits()
    cgroups, why_not = MemoryCgroups.find()
    result: dict[str, Any] = {"machine": machine(), "args": vars(args), "memory_cgroup": why_not or "per session"}
    result["start"] = await starts(limits, cgroups, args.starts)
    result["call_print_1"] = await calls(limits, cgroups, args.calls)
    result["memory_idle"] = await memory(limits, cgroups, args.sessions, "x = 1")
    result["memory_pandas"] = await memory(limits, cgroups, args.sessions, "import pandas, numpy")
    path = write_result("sandbox", result)
    for key in ("start", "call_print_1"):
        r = result[key]
        print(
            f"{key}: bare median {r['bare_s']['median'] * 1000:.2f} ms,"
            f" sandboxed {r['sandboxed_s']['median'] * 1000:.2f} ms,"
            f" p99 {r['sandboxed_s']['p99'] * 1000:.2f} ms, ratio {r['ratio']:.2f}"
        )
    for key in ("memory_idle", "memory_pandas"):
        r = result[key]
        print(
            f"{key}: PSS per session bare {r['bare_pss_mib_per_session']} MiB, sandboxed "
            f"{r['sandboxed_pss_mib_per_session']} MiB (ratio {r['ratio']:.2f}); {r['sessions_per_2gib']} per 2 GiB"
        )
    print(f"results: {path}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=8)
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
