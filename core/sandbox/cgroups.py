"""Memory per session: one cgroup for each code session, so all of its processes share one limit.

A per-process limit (RLIMIT_AS) alone lets code spread memory over many processes (32 processes of
2 GiB each), and kernel memory such as the inodes of many empty files counts against no rlimit at
all. A memory cgroup counts both, for the whole session. Each session's group is made inside the
bot's own memory cgroup, so it also stays within whatever limit the operator gave the bot.

- cgroup v1 (a ``memory`` hierarchy): the bot's group must be writable (it is when the bot runs as
  root); ``memory.limit_in_bytes`` and, where swap is accounted, ``memory.memsw.limit_in_bytes``.
- cgroup v2: the bot's group must be delegated to it with the memory controller enabled for its
  children (systemd ``Delegate=yes``, or a container's own cgroup namespace with the bot in a leaf);
  ``memory.max``, ``memory.swap.max`` 0 and ``memory.oom.group`` (an out-of-memory kill ends the
  whole session). Set ``THREADLINE_SANDBOX_CGROUP`` to the directory to use when it is not the
  bot's own group.

The session joins its group before bubblewrap starts (see :meth:`SessionCgroup.wrap`): nothing of
the session ever runs outside it. Where no memory cgroup can be used, :meth:`MemoryCgroups.find`
says why and the limit stays per process; start-up logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemoryCgroups", "SessionCgroup"]

_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "threadline-sandbox-"


@dataclass(frozen=True)
class MemoryCgroups:
    base: Path  # session groups are made here
    version: int  # 1 or 2

    @classmethod
    def find(
        cls, configured: Path | None = None, *, proc_cgroup: Path = Path("/proc/self/cgroup")
    ) -> tuple[MemoryCgroups | None, str]:
        """The place for session groups, or (None, why there is none)."""
        try:
            lines = proc_cgroup.read_text().splitlines()
        except OSError as exc:
            return None, f"cannot read {proc_cgroup}: {exc.strerror}"
        if configured is not None:
            version = 2 if (configured / "cgroup.controllers").exists() else 1
            return cls._checked(configured, version)
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return cls._checked(_ROOT / "memory" / path.lstrip("/"), 1)
        for line in lines:
            if line.startswith("0::"):
                return cls._checked(_ROOT / line[3:].lstrip("/"), 2)
        return None, "this machine has no memory cgroup"

    @classmethod
    def _checked(cls, base: Path, version: int) -> tuple[MemoryCgroups | None, str]:
        if not os.access(base, os.W_OK):
            return None, f"the bot's memory cgroup {base} is not writable (run as root, or delegate it to the bot)"
        if version == 2:
            try:
                enabled = (base / "cgroup.subtree_control").read_text().split()
            except OSError:
                enabled = []
            if "memory" not in enabled:
                return None, (
                    f"the memory controller is not enabled for the children of {base} "
                    "(delegate it, or set THREADLINE_SANDBOX_CGROUP to a delegated cgroup)"
                )
        groups = cls(base, version)
        groups._remove_stale()
        return groups, ""

    def _remove_stale(self) -> None:
        """Empty groups left by a bot that died (its pid is in the name)."""
        with contextlib.suppress(OSError):
            for entry in self.base.iterdir():
                if not entry.name.startswith(_PREFIX):
                    continue
                pid = entry.name.removeprefix(_PREFIX).split("-", 1)[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    with contextlib.suppress(OSError):
                        entry.rmdir()

    async def session(self, memory_bytes: int, uid: int | None) -> SessionCgroup:
        """A new group for one session; ``uid``: the user the session runs as, who must be able to join it."""
        return await asyncio.to_thread(self._make, memory_bytes, uid)

    def _make(self, memory_bytes: int, uid: int | None) -> SessionCgroup:
        path = self.base / f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()
        try:
            if self.version == 1:
                (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
                swap = path / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(memory_bytes))
            else:
                (path / "memory.max").write_text(str(memory_bytes))
                for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    with contextlib.suppress(FileNotFoundError):
                        (path / name).write_text(value)
            if uid is not None:
                os.chown(path / "cgroup.procs", uid, uid)  # it may move itself in; nothing else
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        return SessionCgroup(path, self.version)


class SessionCgroup:
    """One session's group: joined by the session's first process, emptied and removed at the end."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self._version = version

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` started so that it joins this group before it runs (or does not run at all)."""
        return ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *command]

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]
        return []

    @property
    def peak_bytes(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self._version == 1 else "memory.peak"
        with contextlib.suppress(OSError, ValueError):
            return int((self.path / name).read_text())
        return None

    async def remove(self) -> None:
        """Kill whatever is left in the group, then remove it."""
        await asyncio.to_thread(self._remove)

    def _remove(self) -> None:
        deadline = time.monotonic() + 5.0
        while True:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
