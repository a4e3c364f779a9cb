"""The console channel: lines in, replies out, the same commands as the chat platforms.

Replies stream live when standard output is a terminal and arrive whole when it is piped.
When a tool needs approval the next line decides it: ``y`` or ``yes`` approves.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from bots.formatting import format_sources
from bots.health import Health, HealthServer, always_ready
from core.commands import handle_command, is_command
from core.errors import ConfigError
from core.events import Event, FileOutput
from core.handles import RunHandle
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


class NotARegularFile(Exception):
    """``/upload`` of a device, a pipe or a socket: reading one might never end."""


class ConsoleChannel:
    def __init__(self, service: Threadline, channel: str, *, read_line: ReadLine, out: TextIO, live: bool) -> None:
        self._service = service
        self._channel = channel
        self._read_line = read_line
        self._out = out
        self._live = live
        user = getpass.getuser() or "you"
        self._author = Author(id=f"console:{user}", name=user, key=f"console:{user}")

    def say(self, text: str) -> None:
        self._out.write(text if text.endswith("\n") else text + "\n")
        self._out.flush()

    async def serve(self) -> None:
        """Read until end of input."""
        while (line := await self._prompt()) is not None:
            text = line.strip()
            if not text:
                continue
            if text.lower().startswith("/upload"):
                self.say(await self._upload(text.partition(" ")[2].strip()))
                continue
            if is_command(text):
                reply = await handle_command(self._service, self._channel, text, self._author)
                self.say(reply.text)
                if reply.file is not None:
                    folder = self._service.settings.db_path.parent / "exports"
                    self.say(f"[file] {await asyncio.to_thread(_save_export, folder, *reply.file)}")
                continue
            try:
                handle = await self._service.post(Incoming(self._channel, self._author, text))
            except ChannelNotServed as exc:
                self.say(str(exc))
                continue
            if handle is not None:
                await self._render(handle)

    async def _upload(self, argument: str) -> str:
        """``/upload PATH``: add a local file to the channel's files, as a chat upload would.

        Only regular files; one over the size limit is refused before it is read, as the chat platforms do.
        """
        if not argument:
            return "Say which file: /upload PATH"
        limit = self._service.knowledge.max_file_bytes
        try:
            path, data, size = await asyncio.to_thread(_read_local_file, argument, limit)
        except FileNotFoundError:
            return f"There is no file at {argument}."
        except IsADirectoryError:
            return f"{argument} is a folder; upload its files one by one."
        except NotARegularFile:
            return f"{argument} is not a regular file."
        except OSError as exc:
            return f"{argument} cannot be read: {exc.strerror or exc}."
        upload = Upload(
            name=path.name,
            data=data,
            mime=mimetypes.guess_type(path.name)[0],
            uploader_id=self._author.id,
            uploader_name=self._author.name,
            link=path.as_uri(),
            declared_size=size,
        )
        result = await self._service.knowledge.add(self._channel, upload)
        return result.message

    async def _prompt(self) -> str | None:
        if self._live:
            self._out.write("> ")
            self._out.flush()
        return await self._read_line()

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
                    self._out.write(event.text)
                    self._out.flush()
                    return True
                return streamed
            case "tool_call_started":
                if self._live:
                    self._out.write(f"{chr(10) if streamed else ''}· {event.tool}({event.arguments})\n")
                    self._out.flush()
                return False
            case "tool_call_finished":
                return streamed
            case "file_output":
                path = await asyncio.to_thread(_save_output, self._service.settings.db_path.parent / "outputs", event)
                self.say(f"{chr(10) if streamed else ''}[file] {path}")
                return False
            case "approval_required":
                if streamed:
                    self.say("")
                self.say(f"The assistant wants to run {event.tool} with {event.arguments}. Approve? [y/N]")
                answer = await self._read_line()
                approve = (answer or "").strip().lower() in {"y", "yes"}
                try:
                    await self._service.decide(
                        event.approval_id, approve=approve, decided_by=self._author.name, person=self._author
                    )
                except ApprovalError as exc:
                    self.say(str(exc))
                return False
            case "approval_resolved":
                self.say(f"{event.tool}: {event.outcome}" + (f" by {event.decided_by}" if event.decided_by else ""))
                return False
            case "run_completed":
                if self._live and streamed:
                    self.say("")
                elif not streamed or not self._live:
                    self.say(event.text)
                if event.sources:
                    self.say(format_sources(event.sources, "plain"))
                return False
            case "run_failed":
                if streamed:
                    self.say("")
                self.say(f"[{event.status}] {event.message}")
                return False
        return streamed


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
        service = await Threadline.open(settings, notify=notify)
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
        await console.serve()
    finally:
        if health is not None:
            await health.stop()
        await service.close()
    return 0
