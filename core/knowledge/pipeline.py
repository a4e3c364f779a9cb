"""Extraction and chunking in worker processes, so that a large or hostile file never stalls the bot.

Each worker process limits its own address space (a decompression bomb or a pathological PDF ends
as a failed file, not a dead bot), a file that takes too long is given up on and its worker
replaced, and the event loop only ever awaits the result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import multiprocessing
import resource
from dataclasses import dataclass

from core.knowledge.chunking import Chunk, chunk_sections
from core.knowledge.extract import ExtractionError, UnsupportedFile, extract
from core.tokens import TokenCounter

__all__ = ["ExtractionPool", "Prepared", "prepare"]

_log = logging.getLogger(__name__)

WORKER_MEMORY_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Prepared:
    """A file ready to store: its chunks, or why it cannot be indexed (for people, and as the old API's code)."""

    kind: str | None
    pages: int | None
    chunks: list[Chunk]
    error: str | None = None
    error_code: str = "invalid_file"  # or unsupported_file: a kind Threadline does not read


def prepare(name: str, data: bytes, mime: str | None, size: int, overlap: int, exact_tokens: bool) -> Prepared:
    """Extract and chunk one file (runs in a worker process)."""
    try:
        extracted = extract(name, data, mime)
    except ExtractionError as exc:
        code = "unsupported_file" if isinstance(exc, UnsupportedFile) else "invalid_file"
        return Prepared(kind=None, pages=None, chunks=[], error=str(exc), error_code=code)
    counter = _worker_counter(exact_tokens)
    chunks = chunk_sections(extracted.sections, size=size, overlap=overlap, counter=counter)
    if not chunks:
        return Prepared(extracted.kind, extracted.pages, [], error=f"{name} has no text that could be indexed.")
    return Prepared(extracted.kind, extracted.pages, chunks)


@functools.cache  # once per worker process
def _worker_counter(exact: bool) -> TokenCounter:
    if not exact:
        return TokenCounter()
    try:
        import tiktoken

        return TokenCounter(tiktoken.get_encoding("o200k_base"))
    except Exception:  # the main process had it (cached on disk); a worker that cannot load it estimates
        return TokenCounter()


def _init_worker() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged PDFs end as a failed file with a reason


class ExtractionPool:
    """A small pool of worker processes (spawned, memory-limited) that runs :func:`prepare`."""

    def __init__(self, workers: int = 1, timeout: float = 300.0) -> None:
        self._workers = workers
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
        return self._pool

    async def prepare(
        self, name: str, data: bytes, mime: str | None, *, size: int, overlap: int, exact_tokens: bool
    ) -> Prepared:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor(), prepare, name, data, mime, size, overlap, exact_tokens)
        try:
            return await asyncio.wait_for(future, timeout=self.timeout)
        except TimeoutError:
            _log.warning("extracting %s took over %g s; its worker is replaced", name, self.timeout)
            self._reset()
            minutes = self.timeout / 60
            return Prepared(None, None, [], f"{name} took longer than {minutes:g} minutes to read, so it was skipped.")
        except (concurrent.futures.process.BrokenProcessPool, MemoryError) as exc:
            _log.warning("extracting %s broke its worker (%s); the worker is replaced", name, type(exc).__name__)
            self._reset()
            return Prepared(None, None, [], f"{name} needed more memory than allowed to read, so it was skipped.")

    def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor cannot stop a running task; end its processes so a stuck file frees its worker.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
