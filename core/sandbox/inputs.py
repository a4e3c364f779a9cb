"""Files copied into a code session's working directory before its code runs, within the session's bounds.

The caller names each file (:class:`InputFile`, its name made safe with :func:`safe_name`) and says
what its content is (a digest); the session copies it once, and again only when another content
comes under that name. What the code did to a copied file is kept: the same content is never
copied over it a second time. The bytes are loaded only for the files that are copied.

Bounds, so that copied files cannot fill the session or stall it: no file larger than the largest
file the session may write (``SandboxLimits.file_mb``, which the kernel enforces on the worker's
writes too), and all of a session's copied files together at most half its working directory, so
that the code keeps room of its own. A file past either bound is left out, and the caller tells the
model which and why. Nothing is copied through the host's file system: the bytes go to the worker
over its pipe and it writes them as new regular files (a symlink or FIFO the code left under that
name is replaced, never followed: core/sandbox/worker.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["InputFile", "Ledger", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
WORKSPACE_SHARE = 0.5  # of the working directory, for copied files together


def safe_name(name: str) -> str:
    """A file name the worker accepts (letters, digits, ``._ -``, not hidden, at most 120 characters)."""
    cleaned = _UNSAFE.sub("_", os.path.basename(name)).lstrip(".").strip() or "file"
    return cleaned[:120]


@dataclass(frozen=True)
class InputFile:
    """A file to have in the working directory: ``load`` returns its bytes (None: it is gone meanwhile)."""

    name: str  # in /mnt/data, already safe
    digest: str  # what its content is (a SHA-256)
    size: int
    load: Callable[[], Awaitable[bytes | None]] = field(compare=False, repr=False)


class Ledger:
    """What one session holds of the files copied into it: name → (digest, size)."""

    def __init__(self, largest_bytes: int, budget_bytes: int) -> None:
        self._largest = largest_bytes
        self._budget = budget_bytes
        self._held: dict[str, tuple[str, int]] = {}

    @classmethod
    def for_workspace(cls, file_mb: int, workspace_mb: int) -> Ledger:
        return cls(file_mb << 20, int((workspace_mb << 20) * WORKSPACE_SHARE))

    @property
    def used(self) -> int:
        return sum(size for _, size in self._held.values())

    def wanted(self, files: list[InputFile]) -> tuple[list[InputFile], list[str]]:
        """The files to copy now (new, or another content under a known name), and those left out, each
        as "name (why)"."""
        copy: list[InputFile] = []
        left_out: list[str] = []
        used = self.used
        for file in files:
            held = self._held.get(file.name)
            if held is not None and held[0] == file.digest:
                continue
            if file.size > self._largest:
                left_out.append(f"{file.name} (larger than the {self._largest >> 20} MB a file may have here)")
                continue
            freed = held[1] if held is not None else 0
            if used - freed + file.size > self._budget:
                left_out.append(f"{file.name} (the files here would pass {self._budget >> 20} MB together)")
                continue
            used += file.size - freed
            copy.append(file)
        return copy, left_out

    def copied(self, name: str, digest: str, size: int) -> None:
        self._held[name] = (digest, size)
