"""One code interpreter session: the worker in a bubblewrap sandbox, and the bounded pipe to it.

The sandbox (built by :func:`bwrap_command`):

- namespaces: its own user, mount, PID, network (no interfaces but its own loopback), IPC,
  UTS and cgroup namespaces; no new user namespaces inside; a new terminal session;
- started as an unprivileged uid when the bot runs as root (root-started bubblewrap would keep
  capabilities, and a root-owned process escapes the per-user process limit), all capabilities
  dropped, no new privileges (bubblewrap always sets it);
- files: ``/usr`` and the sandbox's Python read-only; a private, size-limited tmpfs at
  ``/mnt/data`` (the working directory), ``/tmp`` and ``/dev/shm``; its own ``/proc`` and a minimal
  ``/dev``; everything else read-only, including the new root (an unsized tmpfs that could fill half
  the host's memory); nothing of the host: not the bot's files, database, ``.env``, home directory
  or other sessions;
- an environment built from an allowlist (``--clearenv``), never the bot's;
- limits (set by the worker before any model code runs, enforced by the kernel): address
  space, CPU seconds, processes, file size, open files; and the session's memory as a whole, its
  processes, files and tmpfs pages together, in a memory cgroup where the machine offers one
  (:mod:`core.sandbox.cgroups`);
- nothing outlives a call: the worker kills every other process of the session after each call.

The bot trusts nothing the worker says: replies are read with a size limit (so whatever the
code prints, the bot's memory stays bounded) and checked field by field, a call that outlives its
wall time plus a grace period (writing the request included) kills the whole sandbox, and returned
files are checked again here. A reply the bot cannot use ends the session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ThreadlineError
from core.sandbox.cgroups import MemoryCgroups, SessionCgroup

__all__ = ["CopyRefused", "ExecResult", "OutputFile", "Sandbox", "SandboxLimits", "SandboxLost", "bwrap_command"]

_log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("worker.py")
WORKDIR = "/mnt/data"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,120}")
_ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "HOME": WORKDIR,
    "LANG": "C.UTF-8",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp",
    "XDG_CACHE_HOME": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


class SandboxLost(ThreadlineError):
    """The session's process ended (killed, out of limits, broken pipe): its variables are gone."""


class CopyRefused(ThreadlineError):
    """A file could not be written into the working directory (the session goes on); the message says why."""


@dataclass(frozen=True)
class SandboxLimits:
    call_seconds: float = 60.0  # wall time per call, then an interrupt
    grace_seconds: float = 5.0  # after the interrupt, then the sandbox is killed
    cpu_seconds: int = 600  # per session process
    memory_mb: int = 2048  # address space per process
    processes: int = 32
    file_mb: int = 50  # largest file the code can write
    workspace_mb: int = 256  # the working directory (RAM-backed)
    tmp_mb: int = 64
    open_files: int = 256
    output_chars: int = 20_000  # stdout and stderr each, per call
    returned_files: int = 10
    returned_mb: int = 10  # all returned files of one call together

    def for_worker(self) -> str:
        return json.dumps(
            {
                "memory_bytes": self.memory_mb << 20,
                "cpu_seconds": self.cpu_seconds,
                "processes": self.processes,
                "file_bytes": self.file_mb << 20,
                "open_files": self.open_files,
                "output_chars": self.output_chars,
                "returned_files": self.returned_files,
                "returned_bytes": self.returned_mb << 20,
                "wall_seconds": self.call_seconds,
                "end_strays": True,  # kill the code's leftover processes after each call
            }
        )

    @property
    def reply_bytes(self) -> int:
        """The largest reply line the bot reads: files in base64, both outputs JSON-escaped (up to 12 bytes a
        character: a surrogate pair), and room for the names of skipped files and the traceback."""
        return (self.returned_mb << 20) * 4 // 3 + 2 * 12 * self.output_chars + 256 * 1024


@dataclass(frozen=True)
class OutputFile:
    name: str
    data: bytes


@dataclass(frozen=True)
class ExecResult:
    ok: bool
    stdout: str
    stderr: str
    error: str | None = None
    traceback: str | None = None
    files: tuple[OutputFile, ...] = ()
    skipped: tuple[str, ...] = ()  # outputs not returned (not regular files, too many, too large)


def _put_line(name: str, data: bytes) -> bytes:
    """The request line that writes ``data`` to ``name`` in the working directory."""
    return json.dumps({"op": "put", "name": name, "data": base64.b64encode(data).decode()}).encode() + b"\n"


def _root_layout() -> list[str]:
    """/usr read-only, and /bin, /lib... as on the host (symlinks into /usr on merged-/usr systems)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def bwrap_command(bwrap: str, python: Path, limits: SandboxLimits, worker_fd: int) -> list[str]:
    """The bubblewrap command line for one session; the worker's source is read from ``worker_fd``."""
    args = [bwrap, *_root_layout()]
    args += [
        "--ro-bind-data", str(worker_fd), "/opt/threadline/worker.py",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.tmp_mb << 20), "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        "--size", str(limits.tmp_mb << 20), "--tmpfs", "/tmp",
        "--size", str(limits.workspace_mb << 20), "--tmpfs", WORKDIR,
    ]  # fmt: skip
    for directory in _python_directories(python):  # after /tmp's tmpfs, which would hide one under /tmp
        args += ["--ro-bind", str(directory), str(directory)]
    args += [
        "--remount-ro", "/",
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--die-with-parent", "--new-session",
        "--cap-drop", "ALL",
        "--hostname", "sandbox",
        "--chdir", WORKDIR,
        "--clearenv",
    ]  # fmt: skip
    for name, value in _ENVIRONMENT.items():
        args += ["--setenv", name, value]
    args += [str(python), "-I", "-X", "utf8", "/opt/threadline/worker.py", limits.for_worker()]
    return args


def _python_directories(python: Path) -> list[Path]:
    """The sandbox interpreter's directories outside /usr: its virtualenv, and its installation."""
    found: list[Path] = []
    for candidate in (python.parent.parent, python.resolve().parent.parent):
        if candidate == Path("/usr") or Path("/usr") in candidate.parents:
            continue
        if candidate not in found:
            found.append(candidate)
    return found


class Sandbox:
    """A running session. Start with :meth:`start`; every call is :meth:`execute`; end with :meth:`close`."""

    def __init__(
        self, process: asyncio.subprocess.Process, limits: SandboxLimits, cgroup: SessionCgroup | None = None
    ) -> None:
        self._process = process
        self._limits = limits
        self._cgroup = cgroup
        self._stderr_tail = b""
        self._broken = False  # killed without waiting (a cancelled call): never used again
        self._drain = asyncio.create_task(self._keep_stderr(), name="sandbox stderr")

    @classmethod
    async def start(
        cls,
        *,
        bwrap: str,
        python: Path,
        limits: SandboxLimits,
        uid: int | None,
        cgroups: MemoryCgroups | None = None,
    ) -> Sandbox:
        """Start a session; ``uid``: the unprivileged user to run it as (needed when the bot is root);
        ``cgroups``: where to make the session's memory cgroup (None: memory is limited per process)."""
        source = await asyncio.to_thread(WORKER.read_bytes)
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, source)  # far below a pipe's buffer: never blocks
        finally:
            os.close(write_end)
        extra: dict[str, Any] = {}
        if uid is not None:
            extra = {"user": uid, "group": uid, "extra_groups": []}
        command = bwrap_command(bwrap, python, limits, read_end)
        cgroup = None
        try:
            if cgroups is not None:
                cgroup = await cgroups.session(limits.memory_mb << 20, uid)
                command = cgroup.wrap(command)
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={},
                pass_fds=(read_end,),
                limit=limits.reply_bytes,
                start_new_session=True,
                **extra,
            )
        except BaseException:
            if cgroup is not None:
                await cgroup.remove()
            raise
        finally:
            os.close(read_end)
        sandbox = cls(process, limits, cgroup)
        try:
            await sandbox._request({"op": "ping"}, seconds=30.0)
        except SandboxLost:
            await sandbox.close()
            raise
        return sandbox

    @property
    def alive(self) -> bool:
        return self._process.returncode is None and not self._broken

    @property
    def pid(self) -> int:
        return self._process.pid

    async def put(self, name: str, data: bytes) -> None:
        """Write a file into the working directory (the conversation's files); CopyRefused when the session
        could not write it. The request is encoded off the event loop: a file may be tens of megabytes."""
        line = await asyncio.to_thread(_put_line, name, data)
        reply = await self._request(line, seconds=self._limits.call_seconds)
        if not reply.get("ok"):
            raise CopyRefused(f"could not copy {name} into the session: {str(reply.get('error'))[:200]}")

    async def execute(self, code: str) -> ExecResult:
        reply = await self._request({"op": "exec", "code": code}, seconds=self._limits.call_seconds)
        listed = reply.get("files") or [], reply.get("skipped") or []
        if not all(isinstance(field, list) for field in listed):
            await self.close()
            raise SandboxLost("the session's reply was malformed, so it was ended")
        files: list[OutputFile] = []
        skipped = [str(s)[:200] for s in listed[1][:100]]
        budget = self._limits.returned_mb << 20
        for entry in listed[0]:
            name = str(entry.get("name", "")) if isinstance(entry, dict) else ""
            try:
                data = base64.b64decode(str(entry.get("data", "")), validate=True)
            except (binascii.Error, ValueError, AttributeError):
                data = None
            if (
                data is None
                or not _SAFE_NAME.fullmatch(name)
                or len(files) >= self._limits.returned_files
                or len(data) > budget
            ):
                skipped.append(name[:100])
                continue
            budget -= len(data)
            files.append(OutputFile(name, data))
        return ExecResult(
            ok=bool(reply.get("ok")),
            stdout=str(reply.get("stdout") or "")[: self._limits.output_chars + 100],
            stderr=str(reply.get("stderr") or "")[: self._limits.output_chars + 100],
            error=str(reply["error"])[:2000] if reply.get("error") else None,
            traceback=str(reply["traceback"])[-8000:] if reply.get("traceback") else None,
            files=tuple(files),
            skipped=tuple(skipped),
        )

    async def _request(self, request: dict[str, Any] | bytes, *, seconds: float) -> dict[str, Any]:
        """Send a request (or its encoded line) and read the reply."""
        sent = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        if not self.alive:
            raise SandboxLost(self._ended("the session had already ended"))
        try:
            async with asyncio.timeout(seconds + self._limits.grace_seconds):
                stdin.write(sent)
                await stdin.drain()  # a session that reads no more requests does not hold the bot up
                line = await stdout.readline()
        except TimeoutError:
            await self.close()
            raise SandboxLost(
                f"the code was still running {seconds + self._limits.grace_seconds:.0f} s after it started and "
                "did not stop when interrupted, so the session was ended"
            ) from None
        except ValueError:  # the reply line is longer than the limit
            await self.close()
            raise SandboxLost("the code's output was larger than the limit, so the session was ended") from None
        except asyncio.CancelledError:  # the reply may still come: this session cannot be trusted to be in step
            self._broken = True
            self._kill()
            raise
        except (BrokenPipeError, ConnectionResetError):
            await self._wait_briefly()
            raise SandboxLost(self._ended("the session ended")) from None
        if not line:
            await self._wait_briefly()
            raise SandboxLost(self._ended("the session ended"))
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to decode
            await self.close()
            raise SandboxLost("the session wrote something that was not a reply, so it was ended") from None
        if not isinstance(reply, dict):
            await self.close()
            raise SandboxLost("the session wrote something that was not a reply, so it was ended")
        return reply

    def _ended(self, what: str) -> str:
        code = self._process.returncode or 0
        # The worker's own death by a signal comes back as bubblewrap's exit status 128 + signal.
        killed_by = -code if code < 0 else code - 128 if code > 128 else 0
        reasons: dict[int, str] = {
            signal.SIGKILL: " (killed: most likely out of memory)",
            signal.SIGXCPU: " (it used up its CPU time)",
            signal.SIGXFSZ: " (it wrote a file past the size limit)",
        }
        reason = reasons.get(killed_by, "")
        _log.info("sandbox %s ended with %s; stderr: %s", self._process.pid, code, self._stderr_tail[-500:])
        return what + reason

    async def _wait_briefly(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._process.wait()

    async def _keep_stderr(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while chunk := await stream.read(4096):
            self._stderr_tail = (self._stderr_tail + chunk)[-4096:]

    def _kill(self) -> None:
        # Not also ``self._process.kill()`` after the group: Popen polls (and so reaps) the process
        # before it signals, racing asyncio's child watcher, which then loses the exit status.
        try:
            os.killpg(self._process.pid, signal.SIGKILL)  # bubblewrap leads its own process group
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        for pid in self._cgroup.pids() if self._cgroup is not None else ():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        """End the session: the whole sandbox goes (its PID namespace dies with bubblewrap)."""
        if self._process.returncode is None:
            self._kill()
            await self._process.wait()
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain
        if self._cgroup is not None:
            cgroup, self._cgroup = self._cgroup, None
            try:
                await cgroup.remove()
            except OSError as exc:
                _log.warning("could not remove the session's cgroup %s: %s", cgroup.path, exc)
