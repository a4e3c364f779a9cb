"""The ``code_interpreter`` tool: the assistant runs Python on the channel's files in a locked-down sandbox.

What the model reads back: what the code printed (cut past a limit), the error and traceback if
it failed, the files it wrote (which are posted to the channel), and a note when the session's
earlier variables were lost. The files themselves go to the adapter through :class:`FileOutbox`.
"""

from __future__ import annotations

import mimetypes
from collections import defaultdict
from typing import Any

from agents import FunctionTool, RunContextWrapper

from core import tool_details
from core.events import FileOutput
from core.sandbox.process import ExecResult
from core.sandbox.sessions import CodeSessions
from core.tools import tool

__all__ = ["CODE_INTERPRETER", "FileOutbox", "make_code_interpreter_tool"]

CODE_INTERPRETER = "code_interpreter"


class FileOutbox:
    """Files tools produced, per run, until the service hands them to the run's watchers."""

    def __init__(self) -> None:
        self._files: defaultdict[str, list[FileOutput]] = defaultdict(list)

    def put(self, run_id: str, name: str, data: bytes) -> None:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._files[run_id].append(FileOutput(run_id, name, data, mime))

    def take(self, run_id: str) -> list[FileOutput]:
        return self._files.pop(run_id, [])


def make_code_interpreter_tool(sessions: CodeSessions, outbox: FileOutbox, timeout: float) -> FunctionTool:
    @tool(name_override=CODE_INTERPRETER)
    async def code_interpreter(ctx: RunContextWrapper[Any], code: str) -> str:
        """Run Python code in this channel's sandbox and get back what it printed, its errors and the files it wrote.

        The working directory /mnt/data holds the files people shared in this channel. Files you save
        there (CSV, XLSX, PNG...) are posted to the channel; matplotlib figures are saved as PNGs
        without calling savefig. Variables and imports persist between calls. pandas, numpy, matplotlib
        and openpyxl are installed; there is no internet access. The value of a last bare expression
        is printed, as in a notebook.

        Args:
            code: The Python source to run.
        """
        context = ctx.context if isinstance(ctx.context, dict) else {}
        channel, run_id = context.get("channel"), context.get("run_id")
        if not isinstance(channel, str) or not isinstance(run_id, str):
            return "The code interpreter is not available in this conversation."
        reply = await sessions.run(channel, code)
        notes: list[str] = []
        if reply.new_session:
            notes.append("Note: the previous session ended (idle too long), so earlier variables and imports are gone.")
        if reply.lost is not None:
            return "\n".join(
                [*notes, f"The code did not finish: {reply.lost}. Variables and imports from before are gone."]
            )
        assert reply.result is not None
        tool_details.record(ctx, logs=logs(reply.result))  # the call's run step shows them (core/tool_details.py)
        for output in reply.result.files:
            outbox.put(run_id, output.name, output.data)
        return "\n".join([*notes, describe(reply.result)])

    code_interpreter.timeout_seconds = timeout
    return code_interpreter


def logs(result: ExecResult) -> str:
    """What the code printed and, if it failed, why: a run step's ``logs`` output, as a notebook shows them."""
    failure = f"{result.error}\n{result.traceback or ''}".rstrip() if result.error else ""
    return "\n".join(part.rstrip("\n") for part in (result.stdout, result.stderr, failure) if part)


def describe(result: ExecResult) -> str:
    """The call's outcome as the model reads it."""
    parts: list[str] = []
    if result.stdout:
        parts.append(f"Output:\n{result.stdout}")
    if result.stderr:
        parts.append(f"Errors printed:\n{result.stderr}")
    if result.error == "interrupted":
        parts.append(f"Interrupted: {result.traceback} Variables from before are kept.")
    elif result.error:
        parts.append(f"Failed: {result.error}\n{result.traceback or ''}".rstrip())
    if result.files:
        names = ", ".join(f"/mnt/data/{f.name}" for f in result.files)
        parts.append(f"Files written (posted to the channel): {names}")
    if result.skipped:
        parts.append(f"Not posted (not regular files, too many or too large): {', '.join(result.skipped[:20])}")
    return "\n\n".join(parts) or "Done (no output)."
