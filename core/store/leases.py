"""Who is alive, and what happens to a run whose process is gone: the SQL both the lanes and recovery use.

Every process that opens the database has a row in ``processes`` with a lease it renews
(core/processes.py). A run records the process that queued it (``origin``: its lane starts the
run while that process lives) and the one running it (``owner``). A process is alive while its
lease is; on the same machine a process that has exited is dead at once (its pid is gone, or
belongs to a newer process), so a restart does not wait for the old lease to run out.

These functions run on the store's thread, inside the caller's transaction.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Literal

from core.store.dialect import greatest
from core.store.sql import SqlDatabase

__all__ = ["ACTIVE", "host_key", "live_processes", "process_started", "recover_run", "running", "served"]

ACTIVE = ("in_progress", "cancelling")  # statuses of a run some process is executing
Recovery = Literal["requeued", "failed", "cancelled"]


def host_key() -> str:
    """This machine, and the pid namespace pids are counted in: a pid means something only there."""
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = os.readlink("/proc/self/ns/pid")
    return f"{socket.gethostname()}|{boot}|{namespace}"


def process_started(pid: int) -> str:
    """When ``pid`` started, in the kernel's clock ticks since boot ('' where /proc cannot tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name before ")" may hold spaces


def running(pid: int, started: str) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not started or process_started(pid) in ("", started)


def live_processes(db: SqlDatabase, here: str, now: float | None = None) -> set[str]:
    """Ids of the processes that are alive: on this machine (and pid namespace) those whose pid still
    runs, whatever their lease says (a process only slow to renew it, its event loop busy, is not
    gone); elsewhere those whose lease runs."""
    now = time.time() if now is None else now
    live: set[str] = set()
    for process_id, pid, host, started, lease_until in db.execute(
        "SELECT id, pid, host, started, lease_until FROM processes"
    ).fetchall():
        mine = host == here and pid  # this machine: the pid tells; elsewhere the lease
        if running(int(pid), str(started or "")) if mine else float(lease_until) >= now:
            live.add(str(process_id))
    return live


def served(channel: str, platforms: frozenset[str] | None) -> bool:
    """Whether a process serving ``platforms`` (None: every platform) serves ``channel``."""
    return platforms is None or channel.split(":", 1)[0] in platforms


def recover_run(db: SqlDatabase, run_id: str, status: str, me: str, reason: str, now: float) -> Recovery:
    """Take over a run that was executing in a process that is gone.

    Cancelling: it is cancelled. Not yet past a tool call: it is queued again with this process as
    its origin, to be answered from the start (what a tool did cannot be undone or repeated safely,
    so a run that had started one is failed instead, and its channel told). The usage it had
    reserved counts as spent; a requeued run carries it into its next attempt.
    """
    tool_started = db.execute(
        "SELECT 1 FROM run_steps WHERE run_id = ? AND type = 'tool_calls' LIMIT 1", [run_id]
    ).fetchone()
    if status == "cancelling" or tool_started:
        ended = "cancelled" if status == "cancelling" else "failed"
        db.execute(
            "UPDATE runs SET status = ?, last_error = ?, completed_at = ?, owner = NULL WHERE id = ?",
            [ended, "cancelled by request" if ended == "cancelled" else reason, now, run_id],
        )
        db.execute(
            "UPDATE run_steps SET status = ?, completed_at = ? WHERE run_id = ? AND status = 'in_progress'",
            [ended, now, run_id],
        )
        keep_reserved_usage(db, run_id)
        return ended  # type: ignore[return-value]
    held = db.execute("SELECT input_tokens, output_tokens FROM budget_holds WHERE run_id = ?", [run_id]).fetchone()
    if held is not None:  # spent by the attempt that was cut off: counted now, and added to the next attempt's
        db.execute(
            "UPDATE runs SET summary_input_tokens = summary_input_tokens + ?,"
            " summary_output_tokens = summary_output_tokens + ? WHERE id = ?",
            [int(held[0] or 0), int(held[1] or 0), run_id],
        )
        keep_reserved_usage(db, run_id)
    db.execute("DELETE FROM run_steps WHERE run_id = ?", [run_id])
    db.execute(
        "UPDATE runs SET status = 'queued', owner = NULL, origin = ?, started_at = NULL WHERE id = ?", [me, run_id]
    )
    return "requeued"


def keep_reserved_usage(db: SqlDatabase, run_id: str) -> None:
    """A run stopped by a crash spent at most what it had reserved (budgets): record that, as its usage."""
    used_in = greatest(db, "runs.input_tokens", "h.input_tokens")
    used_out = greatest(db, "runs.output_tokens", "h.output_tokens")
    db.execute(
        f"UPDATE runs SET input_tokens = {used_in}, output_tokens = {used_out}, total_tokens = {used_in} + {used_out}"
        " FROM budget_holds h WHERE h.run_id = runs.id AND runs.id = ?",
        [run_id],
    )
    db.execute("DELETE FROM budget_holds WHERE run_id = ?", [run_id])
