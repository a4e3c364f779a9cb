"""The ``code_interpreter`` tool: the assistant runs Python on the conversation's files in a locked-down sandbox.

What the model reads back: what the code printed (cut past a limit), the error and traceback if
it failed, the files it wrote, the conversation's files that could not be copied in, and a note
when the session's earlier variables were lost. The files themselves go to the adapter through
:class:`FileOutbox`.

A run of the Assistants-compatible API brings files of its own (its thread's and its assistant's
``code_interpreter`` files), copied into ``/mnt/data`` before the code runs, and keeps what the
code writes as files of its key: :class:`RunFiles` is that seam (core/code_files.py implements
it). Each file the tool produced reaches the run's watchers as a :class:`~core.events.FileOutput`
right after the call's ``tool_call_finished``, with the kept file's id and the call's id.
"""

from __future__ import annotations

import mimetypes
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Protocol

from agents import FunctionTool, RunContextWrapper

from core import tool_details
from core.events import FileOutput
from core.sandbox.inputs import InputFile
from core.sandbox.process import ExecResult, OutputFile
from core.sandbox.sessions import CodeSessions
from core.tools import tool

__all__ = ["CODE_INTERPRETER", "FileOutbox", "RunFiles", "make_code_interpreter_tool"]

CODE_INTERPRETER = "code_interpreter"


class RunFiles(Protocol):
    """The files a run's code sessions get and give back, from the run's context (core/knowledge/tool.py)."""

    async def inputs(self, context: Mapping[str, Any]) -> list[InputFile]:
        """The files the run's code should find in /mnt/data (none for a chat run: the channel's come at start)."""
        ...

    async def keep(self, context: Mapping[str, Any], call_id: str, output: OutputFile) -> str | None:
        """Keep a file the code wrote; its id, or None when the run keeps none (a chat run posts them)."""
        ...


class FileOutbox:
    """Files tools produced, per run, until the service hands them to the run's watchers."""

    def __init__(self) -> None:
        self._files: defaultdict[str, list[FileOutput]] = defaultdict(list)

    def put(
        self, run_id: str, name: str, data: bytes, *, file_id: str | None = None, call_id: str | None = None
    ) -> None:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._files[run_id].append(FileOutput(run_id, name, data, mime, file_id=file_id, call_id=call_id))

    def take(self, run_id: str) -> list[FileOutput]:
        return self._files.pop(run_id, [])


def make_code_interpreter_tool(
    sessions: CodeSessions, outbox: FileOutbox, timeout: float, files: RunFiles | None = None
) -> FunctionTool:
    @tool(name_override=CODE_INTERPRETER)
    async def code_interpreter(ctx: RunContextWrapper[Any], code: str) -> str:
        """Run Python code in this conversation's sandbox: get back what it printed, its errors, the files it wrote.

        The working directory /mnt/data holds the files shared in this conversation. Files you save
        there (CSV, XLSX, PNG...) are given to the user; matplotlib figures are saved as PNGs without
        calling savefig. Variables and imports persist between calls. pandas, numpy, matplotlib and
        openpyxl are installed; there is no internet access. The value of a last bare expression is
        printed, as in a notebook.

        Args:
            code: The Python source to run.
        """
        context = ctx.context if isinstance(ctx.context, dict) else {}
        channel, run_id = context.get("channel"), context.get("run_id")
        if not isinstance(channel, str) or not isinstance(run_id, str):
            return "The code interpreter is not available in this conversation."
        call_id = str(getattr(ctx, "tool_call_id", "") or "")
        inputs = await files.inputs(context) if files is not None else []
        reply = await sessions.run(channel, code, inputs)
        notes: list[str] = []
        if reply.new_session:
            notes.append("Note: the previous session ended (idle too long), so earlier variables and imports are gone.")
        if reply.left_out:
            notes.append(f"Not copied into /mnt/data: {', '.join(reply.left_out)}.")
        if reply.lost is not None:
            return "\n".join(
                [*notes, f"The code did not finish: {reply.lost}. Variables and imports from before are gone."]
            )
        assert reply.result is not None
        kept: dict[str, str] = {}
        for output in reply.result.files:
            file_id = await files.keep(context, call_id, output) if files is not None else None
            if file_id is not None:
                kept[output.name] = file_id
            outbox.put(run_id, output.name, output.data, file_id=file_id, call_id=call_id or None)
        images = [file_id for name, file_id in kept.items() if _is_image(name)]
        # the call's run step shows them (core/tool_details.py)
        tool_details.record(ctx, logs=logs(reply.result), images=images)
        return "\n".join([*notes, describe(reply.result, kept=kept if kept else None)])

    code_interpreter.timeout_seconds = timeout
    return code_interpreter


def _is_image(name: str) -> bool:
    return (mimetypes.guess_type(name)[0] or "").startswith("image/")


def logs(result: ExecResult) -> str:
    """What the code printed and, if it failed, why: a run step's ``logs`` output, as a notebook shows them."""
    failure = f"{result.error}\n{result.traceback or ''}".rstrip() if result.error else ""
    return "\n".join(part.rstrip("\n") for part in (result.stdout, result.stderr, failure) if part)


def describe(result: ExecResult, *, kept: Mapping[str, str] | None = None) -> str:
    """The call's outcome as the model reads it; ``kept``: the files kept for the user, by name (an API run's),
    which the answer links as ``sandbox:/mnt/data/NAME``."""
    parts: list[str] = []
    if result.stdout:
        parts.append(f"Output:\n{result.stdout}")
    if result.stderr:
        parts.append(f"Errors printed:\n{result.stderr}")
    if result.error == "interrupted":
        parts.append(f"Interrupted: {result.traceback} Variables from before are kept.")
    elif result.error:
        parts.append(f"Failed: {result.error}\n{result.traceback or ''}".rstrip())
    if result.files and kept is not None:
        names = ", ".join(_kept_name(f.name) for f in result.files if f.name in kept)
        parts.append(
            f"Files written (kept for the user): {names}. Images are shown with your answer; to offer any other "
            "file, link it in your answer as [its name](sandbox:/mnt/data/its name)."
        )
    elif result.files:
        names = ", ".join(f"/mnt/data/{f.name}" for f in result.files)
        parts.append(f"Files written (posted to the channel): {names}")
    if result.skipped:
        parts.append(f"Not posted (not regular files, too many or too large): {', '.join(result.skipped[:20])}")
    return "\n\n".join(parts) or "Done (no output)."


def _kept_name(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or ""
    return f"/mnt/data/{name}" + (" (an image)" if kind.startswith("image/") else "")
