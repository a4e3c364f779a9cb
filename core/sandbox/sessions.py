"""Code interpreter sessions: one per channel, started on first use with the channel's files, ended when idle.

A call may bring files of its own (:class:`~core.sandbox.inputs.InputFile`: an API thread's and
its assistant's): they are copied in before its code runs, each once per session and within the
session's bounds (core/sandbox/inputs.py).

Fail closed: :meth:`CodeSessions.open` runs a probe session first; if no sandbox works on this
machine it returns None with the reason, and the tool is not offered. Model code never runs
without the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.sandbox.cgroups import MemoryCgroups
from core.sandbox.inputs import InputFile, Ledger, safe_name
from core.sandbox.process import CopyRefused, ExecResult, Sandbox, SandboxLimits, SandboxLost

__all__ = ["CodeSessions", "SandboxSettings", "SessionReply"]

_log = logging.getLogger(__name__)

ChannelFiles = Callable[[str], Awaitable[list[tuple[str, bytes]]]]


@dataclass(frozen=True)
class SandboxSettings:
    python: Path
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    idle_seconds: float = 3600.0
    max_sessions: int = 8
    first_uid: int = 61000  # when the bot runs as root, session n runs as first_uid + n
    bwrap: str = "bwrap"
    cgroup: Path | None = None  # where to make sessions' memory cgroups; None: inside the bot's own


@dataclass(frozen=True)
class SessionReply:
    result: ExecResult | None
    new_session: bool  # the session (re)started for this call: earlier variables are gone
    lost: str | None = None  # why the session ended during this call
    left_out: tuple[str, ...] = ()  # the call's files that were not copied in, each "name (why)"


@dataclass
class _Session:
    sandbox: Sandbox
    slot: int
    last_used: float
    files: Ledger
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class CodeSessions:
    def __init__(
        self,
        settings: SandboxSettings,
        bwrap: str,
        channel_files: ChannelFiles,
        cgroups: MemoryCgroups | None = None,
    ) -> None:
        self._settings = settings
        self._bwrap = bwrap
        self._cgroups = cgroups
        self._channel_files = channel_files
        self._sessions: dict[str, _Session] = {}
        self._ended: set[str] = set()  # channels whose session expired or was lost: the next call says so
        self._starting = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: SandboxSettings, channel_files: ChannelFiles) -> tuple[CodeSessions | None, str]:
        """Check that the sandbox works here; returns (sessions, "") or (None, why not, for the log)."""
        bwrap = shutil.which(settings.bwrap)
        if bwrap is None:
            return None, f"bubblewrap ({settings.bwrap}) is not installed: run `make` or apt-get install bubblewrap"
        if not os.access(settings.python, os.X_OK):
            return None, f"the sandbox's Python {settings.python} is missing: run `make sandbox`"
        cgroups, why_not = await asyncio.to_thread(MemoryCgroups.find, settings.cgroup)
        sessions = cls(settings, bwrap, channel_files, cgroups)
        try:
            probe = await sessions._start(0)
        except (SandboxLost, OSError) as exc:
            if cgroups is None:
                return None, f"a sandbox could not be started ({exc}); model code is never run without one"
            why_not = f"a session could not join a memory cgroup in {cgroups.base} ({exc})"
            sessions = cls(settings, bwrap, channel_files)
            try:
                probe = await sessions._start(0)
            except (SandboxLost, OSError) as again:
                return None, f"a sandbox could not be started ({again}); model code is never run without one"
        if sessions._cgroups is None:
            _log.warning(
                "code sessions' memory is limited per process only (%d MB each, up to %d processes): %s",
                settings.limits.memory_mb,
                settings.limits.processes,
                why_not,
            )
        try:
            # Its only network interface must be its own loopback (nothing is sent anywhere to find out).
            result = await probe.execute("import socket\nprint([name for _, name in socket.if_nameindex()])")
        except SandboxLost as exc:
            return None, f"the sandbox probe failed ({exc})"
        finally:
            await probe.close()
        if result.stdout.strip() != "['lo']":
            return None, "the sandbox is not isolated from the network here; the code interpreter stays off"
        sessions._reaper = asyncio.create_task(sessions._reap(), name="sandbox reaper")
        return sessions, ""

    def _uid(self, slot: int) -> int | None:
        return self._settings.first_uid + slot if os.geteuid() == 0 else None

    async def _start(self, slot: int) -> Sandbox:
        return await Sandbox.start(
            bwrap=self._bwrap,
            python=self._settings.python,
            limits=self._settings.limits,
            uid=self._uid(slot),
            cgroups=self._cgroups,
        )

    @property
    def memory_per_session(self) -> bool:
        """True when each session's processes share one memory limit (a cgroup), not one each."""
        return self._cgroups is not None

    async def run(self, channel: str, code: str, inputs: Sequence[InputFile] = ()) -> SessionReply:
        """Run ``code`` in the channel's session, starting one (with the channel's files) if needed, after
        copying in those of ``inputs`` it does not have yet."""
        session, new = await self._session(channel)
        async with session.lock:
            session.last_used = time.monotonic()
            try:
                left_out = await self._copy_in(session, inputs)
                result = await session.sandbox.execute(code)
            except SandboxLost as exc:
                await self._drop(channel, session)
                self._ended.discard(channel)  # told now, through ``lost``
                return SessionReply(None, new, lost=str(exc))
            finally:
                session.last_used = time.monotonic()
        return SessionReply(result, new, left_out=tuple(left_out))

    async def _copy_in(self, session: _Session, inputs: Sequence[InputFile]) -> list[str]:
        """Copy the files the session lacks; returns those left out, each "name (why)"."""
        copy, left_out = session.files.wanted(list(inputs))
        for file in copy:
            data = await file.load()
            if data is None or len(data) != file.size:
                left_out.append(f"{file.name} (no longer available)")
                continue
            try:
                await session.sandbox.put(file.name, data)
            except CopyRefused as exc:
                _log.info("%s", exc)
                left_out.append(f"{file.name} (the code made something else of that name)")
                continue
            session.files.copied(file.name, file.digest, file.size)
        return left_out

    async def _session(self, channel: str) -> tuple[_Session, bool]:
        async with self._starting:
            session = self._sessions.get(channel)
            if session is not None and session.sandbox.alive:
                return session, False
            if session is not None:
                await self._drop(channel, session)
            if len(self._sessions) >= self._settings.max_sessions:
                oldest = min(self._sessions, key=lambda c: self._sessions[c].last_used)
                _log.info("ending the code session of %s to make room", oldest)
                await self._drop(oldest, self._sessions[oldest], ended=True)
            slot = min(set(range(self._settings.max_sessions)) - {s.slot for s in self._sessions.values()})
            sandbox = await self._start(slot)
            limits = self._settings.limits
            files = Ledger.for_workspace(limits.file_mb, limits.workspace_mb)
            try:
                for name, data in await self._channel_files(channel):
                    await sandbox.put(safe_name(name), data)
                    files.copied(safe_name(name), "", len(data))  # a call's own file of that name replaces it
            except (SandboxLost, CopyRefused) as exc:
                await sandbox.close()
                raise SandboxLost(str(exc)) from None
            session = _Session(sandbox, slot, time.monotonic(), files)
            self._sessions[channel] = session
            new = channel in self._ended
            self._ended.discard(channel)
            return session, new

    async def _drop(self, channel: str, session: _Session, *, ended: bool = False) -> None:
        if self._sessions.get(channel) is session:
            del self._sessions[channel]
        if ended:
            self._ended.add(channel)
        await session.sandbox.close()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self._settings.idle_seconds / 4))
            await self.expire_idle()

    async def expire_idle(self) -> int:
        """End sessions idle for longer than the setting; returns how many ended."""
        now = time.monotonic()
        idle = [
            (c, s)
            for c, s in list(self._sessions.items())
            if now - s.last_used > self._settings.idle_seconds and not s.lock.locked()
        ]
        for channel, session in idle:
            _log.info("code session of %s ended after %.0f s idle", channel, now - session.last_used)
            await self._drop(channel, session, ended=True)
        return len(idle)

    def pids(self) -> list[int]:
        return [s.sandbox.pid for s in self._sessions.values()]

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for channel, session in list(self._sessions.items()):
            await self._drop(channel, session)
