"""The console channel: lines in, replies out, the same commands as the chat platforms.

Replies stream live when standard output is a terminal and arrive whole when it is piped.
When a tool needs approval the next line decides it: ``y`` or ``yes`` approves, ``/cancel`` stops the answer.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import mimetypes
import os
import stat
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from bots.formatting import format_sources
from bots.health import Health, HealthServer, always_ready
from core.commands import handle_command, help_text, is_command
from core.errors import ConfigError
from core.events import Event, FileOutput
from core.handles import RunHandle
from core.images import SharedImage, is_picture
from core.knowledge.base import Upload
from core.logs import configure_logging
from core.models import Author, Incoming
from core.service import ApprovalError, ChannelNotServed, Threadline
from core.settings import Settings, load_dotenv_file

__all__ = ["ConsoleChannel", "NotARegularFile", "main"]

_log = logging.getLogger(__name__)

ReadLine = Callable[[], Awaitable[str | None]]

NO_MODEL_HELP = """\
No model endpoint is configured yet, so Threadline cannot answer (commands such as /help still work).
Set one in .env (copy .env.example) or in the environment, then start again. For OpenAI:
    OPENAI_API_KEY=sk-...            THREADLINE_MODEL=gpt-5.4-mini
For a local OpenAI-compatible server, e.g. Ollama (`ollama serve`, `ollama pull llama3.2`):
    OPENAI_BASE_URL=http://localhost:11434/v1   THREADLINE_MODEL=llama3.2
(llama.cpp's llama-server: OPENAI_BASE_URL=http://localhost:8080/v1; vLLM: http://localhost:8000/v1.)
"""


def stdin_reader() -> ReadLine:
    """Lines from standard input, read by a daemon thread so that Ctrl-C never waits on a blocked read."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()

    async def read_line() -> str | None:
        line = await lines.get()
        if line is None:
            lines.put_nowait(None)  # stay at end of input for every later read
        return line

    return read_line


UPLOAD_HELP = (
    "/upload PATH    add a file on this computer to this channel's files (as sharing it in chat does); "
    "an image is shown to the assistant"
)
STOPPED = "Stopped: the answer in progress was cancelled."


class NotARegularFile(Exception):
    """``/upload`` of a device, a pipe or a socket: reading one might never end."""


class ConsoleChannel:
    """Reads lines all the time, also while an answer is being written.

    ``/cancel`` acts the moment it is read. Every other line waits its turn, in the order it was typed,
    until the answer in progress has ended; the line after an approval question answers it. Waiting,
    rather than posting a message at once as the chat platforms do, keeps a terminal and a script the
    same: a ``yes`` typed (or piped) before the question appears still answers it, and a script's
    ``/export`` after a question exports the answer.
    """

    def __init__(self, service: Threadline, channel: str, *, read_line: ReadLine, out: TextIO, live: bool) -> None:
        self._service = service
        self._channel = channel
        self._read_line = read_line
        self._out = out
        self._live = live
        user = getpass.getuser() or "you"
        self._author = Author(id=f"console:{user}", name=user, key=f"console:{user}")
        self._waiting: deque[str | None] = deque()  # lines read but not handled yet; None: end of input
        self._answer: asyncio.Task[None] | None = None  # showing the answer in progress
        self._asking: asyncio.Future[str | None] | None = None  # an approval question waiting for its line
        self._midline = False  # streamed text is on the screen without its line end

    def say(self, text: str) -> None:
        """A line (or lines) of its own, after any streamed text."""
        self._end_line()
        self._out.write(text if text.endswith("\n") else text + "\n")
        self._out.flush()

    def _end_line(self) -> None:
        if self._midline:
            self._out.write("\n")
            self._out.flush()
            self._midline = False

    def _stream(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
        self._midline = not text.endswith("\n")

    def _answering(self) -> bool:
        return self._answer is not None and not self._answer.done()

    async def serve(self) -> None:
        """Read until end of input, and show every answer to its end."""
        reading: asyncio.Future[str | None] | None = None
        ended = prompted = False
        try:
            while True:
                if not self._answering():
                    if self._answer is not None:
                        answer, self._answer = self._answer, None
                        if not answer.cancelled():
                            answer.result()  # a failure while showing it is a bug: let it be seen
                    if self._waiting:
                        if (line := self._waiting.popleft()) is None:
                            return
                        await self._handle(line)
                        continue
                    if not prompted:
                        self._prompt()
                        prompted = True
                if reading is None and not ended:
                    reading = asyncio.ensure_future(self._read_line())
                pending = {task for task in (reading, self._answer) if task is not None}
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if reading is not None and reading.done():
                    line, reading, prompted = reading.result(), None, False
                    ended = line is None
                    await self._arrived(line)
        except asyncio.CancelledError:  # Ctrl-C
            if self._answering():
                await self._stop_answer()
            raise
        finally:
            tasks = [task for task in (reading, self._answer) if task is not None and not task.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _arrived(self, line: str | None) -> None:
        """A line was read: it answers the approval question, cancels at once, or waits its turn."""
        if self._asking is not None and not self._asking.done():
            self._asking.set_result(line)
            if line is not None:
                return  # the end of input also ends the session once the answer is shown
        elif line is not None and self._answering() and _command_name(line) == "/cancel":
            await self._command(line.strip())
            return
        self._waiting.append(line)

    async def _stop_answer(self) -> None:
        """Ctrl-C while an answer is written: cancel it (one waiting for approval too), and say so."""
        assert self._answer is not None
        self._answer.cancel()
        try:
            await self._service.cancel(self._channel)
        except Exception:
            _log.exception("cancelling the answer in progress failed")
        self.say(STOPPED)

    async def _handle(self, line: str) -> None:
        """One line, in its turn: a command, or a message whose answer is then shown (see :meth:`serve`)."""
        text = line.strip()
        if not text:
            return
        if _command_name(text) == "/upload":
            await self._upload(text.partition(" ")[2].strip())
            return
        if is_command(text):
            await self._command(text)
            return
        await self._post(text)

    async def _post(self, text: str, images: tuple[SharedImage, ...] = ()) -> None:
        """A message for the assistant; its answer is shown from now on (see :meth:`serve`)."""
        try:
            received = await self._service.receive(Incoming(self._channel, self._author, text, images=images))
        except ChannelNotServed as exc:
            self.say(str(exc))
            return
        if received.notice is not None:
            self.say(received.notice)
        handle = received.handle
        if handle is not None:
            self._answer = asyncio.create_task(self._render(handle), name=f"console answer {handle.run_id}")

    async def _command(self, text: str) -> None:
        if _command_name(text) == "/help" and self._service.policy.refusal(self._channel) is None:
            self.say(help_text([UPLOAD_HELP]))  # the chat platforms' list, and the console's own command
            return
        reply = await handle_command(self._service, self._channel, text, self._author)
        self.say(reply.text)
        if reply.file is not None:
            folder = self._service.settings.db_path.parent / "exports"
            self.say(f"[file] {await asyncio.to_thread(_save_export, folder, *reply.file)}")

    async def _upload(self, argument: str) -> None:
        """``/upload PATH``: add a local file to the channel's files, as a chat upload would; an image is
        shared with the assistant instead (a message of its own, answered as one; core/images.py).

        Only regular files; one over the size limit is refused before it is read, as the chat platforms do.
        """
        if not argument:
            self.say("Say which file: /upload PATH")
            return
        mime = mimetypes.guess_type(argument)[0]
        picture = is_picture(argument, mime)
        limit = self._service.settings.max_image_mb * 1024 * 1024 if picture else self._service.knowledge.max_file_bytes
        try:
            path, data, size = await asyncio.to_thread(_read_local_file, argument, int(limit))
        except FileNotFoundError:
            self.say(f"There is no file at {argument}.")
            return
        except IsADirectoryError:
            self.say(f"{argument} is a folder; upload its files one by one.")
            return
        except NotARegularFile:
            self.say(f"{argument} is not a regular file.")
            return
        except OSError as exc:
            self.say(f"{argument} cannot be read: {exc.strerror or exc}.")
            return
        if picture:
            await self._post("", (SharedImage(path.name, mime, size, data),))
            return
        upload = Upload(
            name=path.name,
            data=data,
            mime=mime,
            uploader_id=self._author.id,
            uploader_name=self._author.name,
            link=path.as_uri(),
            declared_size=size,
        )
        result = await self._service.knowledge.add(self._channel, upload)
        self.say(result.message)

    def _prompt(self) -> None:
        if self._live:
            self._out.write("> ")
            self._out.flush()

    async def _approval_answer(self) -> str | None:
        """The next line, for an approval question: one already waiting, or the next one read."""
        if self._waiting:
            if self._waiting[0] is None:
                return None  # end of input: it stays, to end the session after this answer
            return self._waiting.popleft()
        asking: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._asking = asking
        try:
            return await asking
        finally:
            if self._asking is asking:
                self._asking = None

    async def show_adopted(self, handle: RunHandle, platform_msg_id: str | None) -> None:
        """Show a run this process took over from a console that stopped (``service.adopt_with``) as its own."""
        await self._render(handle)

    async def _render(self, handle: RunHandle) -> None:
        streamed = False
        async for event in handle.events():
            streamed = await self._show(event, streamed)

    async def _show(self, event: Event, streamed: bool) -> bool:
        match event.type:
            case "run_started":
                return streamed
            case "text_delta":
                if self._live:
                    self._stream(event.text)
                    return True
                return streamed
            case "tool_call_started":
                if self._live:
                    self.say(f"· {event.tool}({event.arguments})")
                return False
            case "tool_call_delta" | "tool_call_finished":
                return streamed
            case "file_output":
                path = await asyncio.to_thread(_save_output, self._service.settings.db_path.parent / "outputs", event)
                self.say(f"[file] {path}")
                return False
            case "approval_required":
                self.say(f"The assistant wants to run {event.tool} with {event.arguments}. Approve? [y/N]")
                answer = (await self._approval_answer() or "").strip()
                if _command_name(answer) == "/cancel":
                    await self._command(answer)  # the run ends cancelled; its handle says so next
                    return False
                try:
                    await self._service.decide(
                        event.approval_id,
                        approve=answer.lower() in {"y", "yes"},
                        decided_by=self._author.name,
                        person=self._author,
                    )
                except ApprovalError as exc:
                    self.say(str(exc))
                return False
            case "approval_resolved":
                self.say(f"{event.tool}: {event.outcome}" + (f" by {event.decided_by}" if event.decided_by else ""))
                return False
            case "run_completed":
                if self._live and streamed:
                    self._end_line()
                else:
                    self.say(event.text)
                if event.sources:
                    self.say(format_sources(event.sources, "plain"))
                return False
            case "run_failed":  # handed over at a stop: answered at the next start
                self.say(f"[{'restarting' if event.handed_over else event.status}] {event.message}")
                return False
        return streamed


def _command_name(text: str) -> str:
    return text.strip().partition(" ")[0].lower()


def _save_output(folder: Path, output: FileOutput) -> Path:
    """Save a file the assistant produced under ``folder/<run id>/``; returns where."""
    target = folder / output.run_id
    target.mkdir(parents=True, exist_ok=True)
    path = target / Path(output.name).name
    path.write_bytes(output.data)
    return path.resolve()


def _save_export(folder: Path, name: str, data: bytes) -> Path:
    """Save a command's file (an /export) under ``folder``; returns where."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(name).name
    path.write_bytes(data)
    return path.resolve()


def _read_local_file(argument: str, limit: int) -> tuple[Path, bytes, int]:
    """The file's path, its bytes, and its size; nothing is read from a file over ``limit`` bytes.

    Only a regular file is opened (a pipe would block the open, a device might never end), and it is read
    through a descriptor checked again after opening, at most ``limit + 1`` bytes, in case it changed meanwhile.
    """
    path = Path(argument).expanduser().resolve()
    info = path.stat()
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(argument)
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFile(argument)
    if info.st_size > limit:
        return path, b"", info.st_size
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise NotARegularFile(argument)
        data = file.read(limit + 1)
    return path, data, max(info.st_size, len(data))


async def main() -> int:
    load_dotenv_file()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings, level=logging.WARNING)
    out = sys.stdout

    async def notify(channel: str, text: str) -> None:
        out.write(f"[notice] {text}\n")
        out.flush()

    try:
        service = await Threadline.open(settings, notify=notify, platforms={"console"})
    except ConfigError as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        return 2
    # Only when THREADLINE_METRICS_PORT is set: a terminal session must never fail on a busy default port.
    health = await HealthServer.start(Health(service, always_ready), settings, default_port=None)
    try:
        live = out.isatty()
        if not settings.model_configured:
            out.write(NO_MODEL_HELP)
        elif live:
            out.write(f"Threadline on {settings.channel}. Type a message, /help for commands, Ctrl-D to leave.\n")
        out.flush()
        console = ConsoleChannel(service, settings.channel, read_line=stdin_reader(), out=out, live=live)
        service.adopt_with(console.show_adopted)
        await console.serve()
    finally:
        if health is not None:
            await health.stop()
        await service.close()
    return 0
