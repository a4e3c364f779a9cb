"""The soak benchmark's tool, named in the assistants file bench/soak.py writes: it records every call.

Each call appends ``{"phase": "start" | "end", "q": question, "pid", "t": time.time()}`` to the
file named by ``BENCH_SOAK_TOOL_LOG`` (one ``O_APPEND`` write a line, so lines of several
processes do not mix), sleeping ``BENCH_SOAK_TOOL_SECONDS`` (0.3) in between. The end line also
says when the run's tool step was in the database ``BENCH_SOAK_DB`` (polled on another read-only
connection: ``step_first_look_s`` after the tool started it looked first, ``step_seen_s`` it found
the step, null if not while the tool ran): only a run with that step is failed rather than answered
again from the start when its process dies. The soak reads the
file to see whether a tool ran more than once for one question (it must not: a run cut off after
its tool started is failed and its channel told, never answered again from the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time

from core.tools import tool

__all__ = ["soak_lookup"]


def _step_visible(question: str, began: float, within: float) -> dict[str, float | None]:
    """When the run's tool step was in the database, in s after the tool started (``began``, monotonic):
    ``first_look`` (when this first looked), ``seen`` (when it was found; None: not within ``within`` s).
    Polled every 5 ms on another, read-only connection to ``BENCH_SOAK_DB``."""
    path = os.environ.get("BENCH_SOAK_DB")
    if not path:
        return {"first_look": None, "seen": None}
    first_look: float | None = None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
        while True:
            looked = time.monotonic() - began
            row = conn.execute(
                "SELECT 1 FROM run_steps WHERE type = 'tool_calls' AND tool_name = 'soak_lookup' AND arguments LIKE ?",
                [f'%"{question}"%'],
            ).fetchone()
            first_look = looked if first_look is None else first_look
            if row is not None:
                return {"first_look": first_look, "seen": looked}
            if looked > within:
                return {"first_look": first_look, "seen": None}
            time.sleep(0.005)


def _record(phase: str, question: str, **extra: object) -> None:
    path = os.environ.get("BENCH_SOAK_TOOL_LOG")
    if not path:
        return
    line = json.dumps({"phase": phase, "q": question, "pid": os.getpid(), "t": time.time(), **extra}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@tool
async def soak_lookup(question: str) -> str:
    """Look up the ticket a question is about.

    Args:
        question: The question's id, such as q00042.
    """
    seconds = float(os.environ.get("BENCH_SOAK_TOOL_SECONDS", "0.3"))
    began = time.monotonic()
    _record("start", question)
    step, _ = await asyncio.gather(asyncio.to_thread(_step_visible, question, began, seconds), asyncio.sleep(seconds))
    _record("end", question, step_first_look_s=step["first_look"], step_seen_s=step["seen"])
    return f"ticket for {question}: open"
