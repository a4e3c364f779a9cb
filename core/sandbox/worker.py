"""The code interpreter's worker: runs INSIDE the sandbox, one per session, and speaks JSON lines on stdin/stdout.

It is started as a plain script (``python worker.py LIMITS_JSON``) and imports nothing from
Threadline: only the standard library, and the data stack when the model's code asks for it.
It is not trusted by the bot: the model's code runs in this same process and could change
anything here, so every limit that matters is also enforced outside (the sandbox, the bot's
bounded reads and its wall-clock kill). What the worker does is make the common case pleasant:

- one namespace per session, so variables and imports persist between calls;
- stdout and stderr captured, each cut at ``output_chars``;
- the value of a last bare expression shown, as in a notebook;
- a call interrupted after ``wall_seconds`` (KeyboardInterrupt in the main thread, also out of a
  blocking call such as ``time.sleep``), the session kept;
- nothing the code started outlives its call: a forked copy of the worker exits instead of
  answering, and every other process of the session is killed after the call (only inside the
  sandbox's own PID namespace, where that means the session's processes and nothing else);
- open matplotlib figures saved as PNGs, and the files the call created or changed in the
  working directory returned (regular files only, capped in number and size).

Requests: ``{"op": "exec", "code": "..."}``, ``{"op": "put", "name": "...", "data": "<base64>"}``,
``{"op": "ping"}``. One JSON reply line per request.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import os
import resource
import signal
import stat
import sys
import threading
import time
import traceback
from typing import Any

WORKDIR = "/mnt/data"
_MAX_SKIPPED = 100  # names of outputs not returned, listed in a reply
_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._- ")


class _Capped(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self._parts: list[str] = []
        self._kept = 0
        self._limit = limit
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self._limit - self._kept
        if room > 0:
            piece = text[:room]
            self._parts.append(piece)
            self._kept += len(piece)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def value(self) -> str:
        text = "".join(self._parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters not shown]"
        return text


class _Alarm:
    """Interrupts the main thread (SIGINT, so KeyboardInterrupt) once ``seconds`` have passed, unless stopped first.

    The signal is sent to the main thread itself, not raised in the alarm's own thread: a signal
    raised there wakes no system call of the main thread (``time.sleep``, a read, a lock), so that
    code would not stop. The code can still ignore or catch it; then the bot ends the session."""

    def __init__(self, seconds: float) -> None:
        self._main = threading.get_ident()
        self._seconds = seconds
        self._over = threading.Event()
        self._lock = threading.Lock()  # held while deciding to fire, so stop() and firing never overlap
        self._fired = False
        self._thread = threading.Thread(target=self._ring, name="wall time", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _ring(self) -> None:
        if self._over.wait(self._seconds):
            return
        with self._lock:
            if not self._over.is_set():
                self._fired = True
                signal.pthread_kill(self._main, signal.SIGINT)

    def stop(self) -> None:
        """After this returns no interrupt comes; one that was sent is raised here at the latest."""
        with self._lock:
            self._over.set()
        if self._fired:
            # Sent, and its C handler has run, but Python raises KeyboardInterrupt only at its next
            # check, which could be anywhere after the call (answering the bot, reading the next
            # request). pthread_kill checks the pending signals of the calling thread: now, here.
            signal.pthread_kill(self._main, 0)


def _apply_limits(limits: dict[str, Any]) -> None:
    for name, value in (
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_CPU", limits["cpu_seconds"]),
        ("RLIMIT_NPROC", limits["processes"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]),
        ("RLIMIT_NOFILE", limits["open_files"]),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def _snapshot() -> dict[str, tuple[int, int]]:
    seen: dict[str, tuple[int, int]] = {}
    with contextlib.suppress(OSError), os.scandir(".") as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                seen[entry.name] = (info.st_mtime_ns, info.st_size)
    return seen


def _save_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    with contextlib.suppress(Exception):
        for number in pyplot.get_fignums():
            pyplot.figure(number).savefig(f"figure-{number}.png", dpi=100)
        pyplot.close("all")


def _outputs(before: dict[str, tuple[int, int]], limits: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    files: list[dict[str, str]] = []
    skipped: list[str] = []
    budget = limits["returned_bytes"]
    for name, signature in sorted(_snapshot().items()):
        if before.get(name) == signature or name.startswith("."):
            continue
        path = os.path.join(".", name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a symlink or a FIFO never blocks us
        except OSError:
            skipped.append(name)  # a symlink, or gone
            continue
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or len(files) >= limits["returned_files"] or info.st_size > budget:
            os.close(fd)
            skipped.append(name)
            continue
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(budget + 1)
        if len(data) > budget:
            skipped.append(name)
            continue
        budget -= len(data)
        files.append({"name": name, "data": base64.b64encode(data).decode()})
    if len(skipped) > _MAX_SKIPPED:
        skipped[_MAX_SKIPPED - 1 :] = [f"... and {len(skipped) - _MAX_SKIPPED + 1} more"]
    return files, skipped


def _end_strays() -> None:
    """Kill every other process of the session: what the code forked or started in the background.

    ``kill(-1)`` reaches every process this one may signal except itself and the PID namespace's
    init (bubblewrap), so it is only ever called inside the sandbox's own PID namespace."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return  # nothing left
        while True:  # our own children are ours to reap; the init reaps the rest
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        time.sleep(0.005)


def _run(code: str, namespace: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    worker = os.getpid()
    out, err = _Capped(limits["output_chars"]), _Capped(limits["output_chars"])
    before = _snapshot()
    reply: dict[str, Any] = {"ok": True}
    alarm = _Alarm(limits["wall_seconds"])
    try:
        tree = ast.parse(code, "<cell>", "exec")
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        if last is not None:
            tree.body.pop()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            alarm.start()
            try:
                exec(compile(tree, "<cell>", "exec"), namespace)
                if last is not None:
                    value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
                    if value is not None:
                        sys.stdout.write(repr(value) + "\n")
            finally:
                if os.getpid() == worker:  # a forked copy has no alarm thread (and exits below)
                    alarm.stop()  # an interrupt that comes at all comes before this returns: caught below
    except KeyboardInterrupt:
        reply = {"ok": False, "error": "interrupted", "traceback": f"Stopped after {limits['wall_seconds']} s."}
    except BaseException as exc:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": "".join(lines)[-8000:]}
    finally:
        if os.getpid() != worker:
            os._exit(0)  # a forked copy of the worker: only the worker answers
    if limits.get("end_strays") and worker < 10:  # in the sandbox's own PID namespace
        _end_strays()
    _save_figures()
    reply["stdout"], reply["stderr"] = out.value(), err.value()
    reply["files"], reply["skipped"] = _outputs(before, limits)
    return reply


def _put(request: dict[str, Any]) -> dict[str, Any]:
    """Write a file into the working directory as a new regular file: whatever the code left under that name
    (a symlink, a FIFO, a folder's entry) is replaced, never written through."""
    name = str(request["name"])
    if not name or name.startswith(".") or not set(name) <= _SAFE_NAME:
        return {"ok": False, "error": f"refused file name {name!r}"}
    data = base64.b64decode(request["data"])
    path = os.path.join(".", name)
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(path)  # not a folder: the O_EXCL below then fails, and the put with it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return {"ok": True}


def main() -> None:
    limits: dict[str, Any] = json.loads(sys.argv[1])
    # The interrupt is a SIGINT: make it raise KeyboardInterrupt whatever the bot was started with.
    # Python installs that handler only where SIGINT is not ignored at start, and ignored is what a
    # command started with ``&`` by a shell script gets, and passes on to all it starts: the bot, its
    # bubblewrap, this worker. Then the interrupt did nothing and every long call cost the session.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _apply_limits(limits)
    os.chdir(limits.get("workdir", WORKDIR))  # the sandbox's /mnt/data; elsewhere only for benchmarks
    channel_in, channel_out = sys.stdin, sys.stdout
    sys.stdin = io.StringIO()  # the model's code reads nothing from the bot's pipe...
    sys.stdout = sys.stderr = io.StringIO()  # ...and writes nothing to it except through a reply
    namespace: dict[str, Any] = {"__name__": "__main__"}
    worker = os.getpid()
    for line in channel_in:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "exec":
                reply = _run(str(request["code"]), namespace, limits)
            elif op == "put":
                reply = _put(request)
            else:
                reply = {"ok": True, "pong": True}
        except BaseException as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if os.getpid() != worker:
            os._exit(0)  # a forked copy of the worker never answers
        channel_out.write(json.dumps(reply) + "\n")
        channel_out.flush()


if __name__ == "__main__":
    main()
