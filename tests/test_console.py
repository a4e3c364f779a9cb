"""The console channel as a person runs it: ``python -m bots.console`` with standard input and output."""

from __future__ import annotations

import asyncio
import codecs
import os
import signal
import sys
import tty
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from core.commands import handle_command
from core.service import Threadline
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, tool_results
from tests.helpers import CHANNEL

ROOT = Path(__file__).resolve().parent.parent


def console_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SMTP_", "THREADLINE_"))}
    env.update(
        THREADLINE_DB=str(tmp_path / "console.db"),
        THREADLINE_TOKENIZER="estimate",
        OPEN_METEO_URL="http://127.0.0.1:9/v1",
        OPEN_METEO_GEOCODING_URL="http://127.0.0.1:9/v1",
    )
    env.update(extra)
    return env


# Run as python -c so that a soft address-space limit can be set first: a console that reads a device
# without end then fails with MemoryError instead of filling the machine's memory.
_LIMITED = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ["bots.console"]
runpy.run_module("bots.console", run_name="__main__", alter_sys=True)
"""


async def start_console(
    env: dict[str, str], cwd: Path, *, stdout: int = asyncio.subprocess.PIPE, memory_limit: int | None = None
) -> asyncio.subprocess.Process:
    """``python -m bots.console`` with pipes for its standard input, output and errors."""
    command = ["-m", "bots.console"] if memory_limit is None else ["-c", _LIMITED, str(memory_limit)]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
    )


async def run_console(
    env: dict[str, str], stdin: str, cwd: Path, *, memory_limit: int | None = None
) -> tuple[int, str, str]:
    process = await start_console(env, cwd, memory_limit=memory_limit)
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode(), err.decode()


async def test_piped_conversation_with_commands(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url)
        code, out, err = await run_console(env, "hello\n/help\n/reset\nagain\n", tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("echo: ")
    assert lines[0].endswith(": hello")
    assert "/reset" in out
    assert "Started a new conversation" in out
    assert lines[-1].endswith(": again")
    # After /reset the model saw only the new message.
    assert len(fake.chat_requests[-1]["messages"]) == 2
    assert "Traceback" not in err


async def test_without_a_model_it_starts_and_says_what_to_set(tmp_path: Path) -> None:
    code, out, err = await run_console(console_env(tmp_path), "/help\nhello\n", tmp_path)
    assert code == 0, err
    assert "OPENAI_API_KEY=sk-" in out
    assert "OPENAI_BASE_URL=http://localhost:11434/v1" in out  # a local server example
    assert "Commands:" in out
    assert "[failed] No model endpoint is configured" in out
    assert "Traceback" not in out + err


async def test_bad_assistants_file_stops_with_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[[assistants]]\nname = 'x'\ncolour = 'red'\n")
    env = console_env(tmp_path, THREADLINE_ASSISTANTS=str(tmp_path / "bad.toml"), OPENAI_API_KEY="sk-test")
    code, _out, err = await run_console(env, "", tmp_path)
    assert code == 2
    assert "bad.toml" in err
    assert "unknown key 'colour'" in err
    assert "Traceback" not in err


class Mailbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def email_script(req: dict[str, Any]) -> Reply:
    if results := tool_results(req):
        return Reply(text=f"Done: {results[0]['content']}")
    if last_user_text(req).endswith(": hi"):
        return Reply(text="Hello! How can I help?")
    return Reply(
        tool_calls=(ToolCall("send_email", {"to": "ops@example.com", "subject": "Hi", "body": "Deploy at 5"}),)
    )


async def _email_session(tmp_path: Path, answer: str, *, before: str = "") -> tuple[str, Mailbox, FakeOpenAI]:
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(mailbox), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with FakeOpenAI(email_script) as fake:
            env = console_env(
                tmp_path,
                OPENAI_BASE_URL=fake.base_url,
                SMTP_HOST="127.0.0.1",
                SMTP_PORT=str(port),
                SMTP_FROM="bot@example.com",
                SMTP_STARTTLS="false",
                SMTP_PASSWORD="hunter2-secret-value",
            )
            code, out, err = await run_console(env, f"{before}email ops please\n{answer}\n", tmp_path)
    finally:
        server.close()
    assert code == 0, err
    assert "hunter2-secret-value" not in out + err
    return out, mailbox, fake


async def test_email_needs_approval_and_is_sent_when_approved(tmp_path: Path) -> None:
    out, mailbox, _ = await _email_session(tmp_path, "yes")
    assert "wants to run send_email" in out
    assert "ops@example.com" in out
    assert len(mailbox.envelopes) == 1
    assert mailbox.envelopes[0].rcpt_tos == ["ops@example.com"]
    assert b"Deploy at 5" in (mailbox.envelopes[0].original_content or b"")
    assert "Done: Email sent to ops@example.com" in out


async def test_email_denied_is_not_sent(tmp_path: Path) -> None:
    out, mailbox, fake = await _email_session(tmp_path, "no")
    assert mailbox.envelopes == []
    assert "send_email: denied" in out
    assert "denied" in tool_results(fake.chat_requests[-1])[0]["content"]


async def test_approval_after_an_earlier_answer(tmp_path: Path) -> None:
    """`hi`, then an email, then `y`: the paused run's history holds an answer (issue 14)."""
    out, mailbox, fake = await _email_session(tmp_path, "y", before="hi\n")
    assert "Hello! How can I help?" in out
    assert len(mailbox.envelopes) == 1
    assert "Done: Email sent to ops@example.com" in out
    assert any(m.get("content") == "Hello! How can I help?" for m in fake.chat_requests[-1]["messages"])


async def test_upload_then_ask_prints_sources(tmp_path: Path) -> None:
    (tmp_path / "handbook.md").write_text("# Holidays\nEvery employee has 27 days of paid holiday a year.\n")

    def script(req: dict[str, Any]) -> Reply:
        if results := tool_results(req):
            return Reply(text=f"27 days [1]. ({len(results)} result)")
        return Reply(tool_calls=(ToolCall("file_search", {"query": "holiday days"}),))

    async with FakeOpenAI(script) as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url)
        stdin = f"/upload {tmp_path / 'handbook.md'}\n/upload {tmp_path / 'missing.pdf'}\n/files\nholidays?\n"
        code, out, err = await run_console(env, stdin, tmp_path)
    assert code == 0, err
    assert "Indexed handbook.md (1 chunk)." in out
    assert f"There is no file at {tmp_path / 'missing.pdf'}." in out
    assert "- handbook.md (" in out
    assert "27 days [1]." in out
    assert "[1] handbook.md, Holidays" in out


async def test_export_saves_the_conversation_as_markdown(tmp_path: Path) -> None:
    (tmp_path / "handbook.md").write_text("# Holidays\nEvery employee has 27 days of paid holiday a year.\n")

    def script(req: dict[str, Any]) -> Reply:
        if tool_results(req):
            return Reply(text="27 days [1].")
        return Reply(tool_calls=(ToolCall("file_search", {"query": "holiday days"}),))

    async with FakeOpenAI(script) as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url)
        stdin = f"/export\n/upload {tmp_path / 'handbook.md'}\nholidays?\n/export\n"
        code, out, err = await run_console(env, stdin, tmp_path)
    assert code == 0, err
    assert "nothing to export" in out  # before the first message
    assert "This channel's conversation (4 messages) as Markdown" in out
    [saved] = [line.removeprefix("[file] ") for line in out.splitlines() if line.startswith("[file] ")]
    path = Path(saved)
    assert path.parent == (tmp_path / "exports").resolve()  # beside the database
    markdown = await asyncio.to_thread(path.read_text)
    assert markdown.startswith("# Conversation in console:local:default\n")
    order = [
        markdown.index("holidays?"),
        markdown.index("### Tool call: file_search"),
        markdown.index('{"query": "holiday days"}'),
        markdown.index("### Result of file_search"),
        markdown.index("[1] handbook.md, Holidays"),
        markdown.index("## Assistant"),
        markdown.index("27 days [1]."),
        markdown.index("Sources:\n- [1] handbook.md, Holidays"),
    ]
    assert order == sorted(order)


async def test_the_same_upload_twice_is_already_there(tmp_path: Path) -> None:
    (tmp_path / "handbook.md").write_text("# Holidays\nEvery employee has 27 days of paid holiday a year.\n")
    env = console_env(tmp_path)
    stdin = f"/upload {tmp_path / 'handbook.md'}\n/upload {tmp_path / 'handbook.md'}\n/files\n"
    code, out, err = await run_console(env, stdin, tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert "Indexed handbook.md (1 chunk)." in lines
    assert "handbook.md is already in this channel's files (same content), so nothing changed." in lines
    assert out.count("- handbook.md (") == 1  # one file in /files


# -- /upload takes regular files only, and checks the size before reading -----------------------------

MEMORY_LIMIT = 2 * 1024**3  # far more than the console needs; far less than reading /dev/zero would take


async def test_upload_refuses_a_pipe_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    env = console_env(tmp_path)
    code, out, err = await run_console(env, f"/upload {fifo}\n/files\n", tmp_path, memory_limit=MEMORY_LIMIT)
    assert code == 0, err
    assert f"{fifo} is not a regular file." in out.splitlines()
    assert "This channel has no files yet." in out


async def test_upload_refuses_a_device_without_reading_it(tmp_path: Path) -> None:
    env = console_env(tmp_path)
    code, out, err = await run_console(env, "/upload /dev/zero\n/files\n", tmp_path, memory_limit=MEMORY_LIMIT)
    assert code == 0, err
    assert "/dev/zero is not a regular file." in out.splitlines()
    assert "This channel has no files yet." in out
    assert "Traceback" not in err


def _reads_update_atime(folder: Path) -> bool:
    """Whether reading a file here moves its access time (not on noatime mounts)."""
    probe = folder / "atime-probe"
    probe.write_bytes(b"x")
    os.utime(probe, (1_000_000, 2_000_000))
    probe.read_bytes()
    return probe.stat().st_atime != 1_000_000


async def test_upload_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    limit = int(0.001 * 1024 * 1024)  # THREADLINE_MAX_FILE_MB=0.001, as the knowledge base counts it
    words = ("holiday " * limit).encode()
    (tmp_path / "at.txt").write_bytes(words[:limit])
    over = tmp_path / "over.txt"
    over.write_bytes(words[: limit + 1])
    os.utime(over, (1_000_000, 2_000_000))  # an access time older than the change: a read would move it
    env = console_env(tmp_path, THREADLINE_MAX_FILE_MB="0.001")
    stdin = f"/upload {tmp_path / 'at.txt'}\n/upload {over}\n/files\n"
    code, out, err = await run_console(env, stdin, tmp_path)
    assert code == 0, err
    assert "Indexed at.txt (" in out
    assert "over.txt is 0.0 MB, over the 0.001 MB limit for files here." in out  # the chat platforms' message
    assert "- over.txt (1 KB) — failed: over.txt is 0.0 MB" in out  # its size, from stat
    if _reads_update_atime(tmp_path):
        assert over.stat().st_atime == 1_000_000, "the console read a file it refuses"


# -- answers can be stopped: /cancel at once, Ctrl-C with a word -----------------------------------

STORY = "Once upon a time " + "the answer went on, " * 300 + "THE END"


def story_script(req: dict[str, Any]) -> Reply:
    """A slow story (minutes, unless stopped) for "story"; an echo for anything else."""
    text = last_user_text(req)
    if "story" in text:
        return Reply(text=STORY, chunk_delay=0.2)
    return Reply(text=f"echo: {text}")


class LiveConsole:
    """``python -m bots.console`` writing to a terminal (a pty), so answers stream; its input is a pipe."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self._env, self._cwd = env, cwd
        self.output = ""
        self.ended = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._changed = asyncio.Event()
        self._master = -1
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LiveConsole:
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: "\n" stays "\n"
        self._master = master
        try:
            self.process = await start_console(self._env, self._cwd, stdout=slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._read)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if not self.ended:
            asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)

    def _read(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every writer closed the terminal, the console has ended
            data = b""
        self.output += self._decoder.decode(data, final=not data)
        if not data:
            self.ended = True
            asyncio.get_running_loop().remove_reader(self._master)
        self._changed.set()

    async def wait_for(self, text: str) -> None:
        async with asyncio.timeout(60):
            while text not in self.output:
                assert not self.ended, f"the console ended without writing {text!r}:\n{self.output}"
                self._changed.clear()
                await self._changed.wait()

    async def send(self, line: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def finish(self, *, close_input: bool = True) -> tuple[int, str]:
        """Wait for the console to end (after closing its input); returns its exit code and standard errors."""
        assert self.process is not None
        assert self.process.stderr is not None
        if close_input and self.process.stdin is not None:
            self.process.stdin.close()
        async with asyncio.timeout(60):
            err = await self.process.stderr.read()
            code = await self.process.wait()
            while not self.ended:
                self._changed.clear()
                await self._changed.wait()
        return code, err.decode()


def live_console(tmp_path: Path, fake: FakeOpenAI) -> LiveConsole:
    return LiveConsole(console_env(tmp_path, OPENAI_BASE_URL=fake.base_url), tmp_path)


async def test_cancel_stops_the_answer_being_written_and_a_message_typed_meanwhile_waits(tmp_path: Path) -> None:
    async with FakeOpenAI(story_script) as fake, live_console(tmp_path, fake) as console:
        await console.send("tell me a story")
        await console.wait_for("Once upon")  # the answer is streaming
        await console.send("what time is it?")
        await console.send("/cancel")
        await console.wait_for("[cancelled] Cancelled.")
        await console.wait_for(": what time is it?")  # then the message typed meanwhile is answered
        code, err = await console.finish()
    assert code == 0, err
    out = console.output
    assert "Cancelled 1 run." in out  # the answer in progress; the waiting message was not sent yet
    assert "THE END" not in out
    assert out.index("Cancelled 1 run.") < out.index("[cancelled] Cancelled.") < out.index("echo: ")
    assert [last_user_text(r).split(": ", 1)[1] for r in fake.chat_requests] == ["tell me a story", "what time is it?"]
    assert "Traceback" not in err


async def test_ctrl_c_mid_answer_says_it_stopped_the_answer_and_exits_130(tmp_path: Path) -> None:
    async with FakeOpenAI(story_script) as fake, live_console(tmp_path, fake) as console:
        await console.send("tell me a story")
        await console.wait_for("Once upon")  # the answer is streaming
        assert console.process is not None
        console.process.send_signal(signal.SIGINT)
        code, err = await console.finish(close_input=False)
    assert code == 130, err
    assert "Stopped: the answer in progress was cancelled." in console.output.splitlines()
    assert "THE END" not in console.output
    assert "Traceback" not in err


async def test_approval_typed_after_the_question_appears_in_a_terminal(tmp_path: Path) -> None:
    mailbox = Mailbox()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(mailbox), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with FakeOpenAI(email_script) as fake:
            env = console_env(
                tmp_path,
                OPENAI_BASE_URL=fake.base_url,
                SMTP_HOST="127.0.0.1",
                SMTP_PORT=str(port),
                SMTP_FROM="bot@example.com",
                SMTP_STARTTLS="false",
            )
            async with LiveConsole(env, tmp_path) as console:
                await console.send("email ops please")
                await console.wait_for("Approve? [y/N]")
                await console.send("yes")
                await console.wait_for("Done: Email sent to ops@example.com")
                code, err = await console.finish()
    finally:
        server.close()
    assert code == 0, err
    assert len(mailbox.envelopes) == 1


async def test_cancel_at_the_approval_question_stops_the_answer(tmp_path: Path) -> None:
    async with FakeOpenAI(email_script) as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url, SMTP_HOST="127.0.0.1", SMTP_PORT="9")
        async with LiveConsole(env, tmp_path) as console:
            await console.send("email ops please")
            await console.wait_for("Approve? [y/N]")
            await console.send("/cancel")
            await console.wait_for("[cancelled] Cancelled.")
            code, err = await console.finish()
    assert code == 0, err
    assert "Cancelled 1 run." in console.output
    assert "send_email: denied" not in console.output  # stopped, not answered
    assert len(fake.chat_requests) == 1  # the model was not asked to go on


# -- /help ------------------------------------------------------------------------------------------


async def test_help_lists_upload_in_the_console_only(tmp_path: Path, service: Threadline) -> None:
    code, out, err = await run_console(console_env(tmp_path), "/help\n", tmp_path)
    assert code == 0, err
    assert "/upload PATH" in out
    assert "/files" in out
    chat_help = (await handle_command(service, CHANNEL, "/help")).text  # what Slack and Discord show
    assert "/upload" not in chat_help
    assert "/files" in chat_help
