"""Extraction runs in worker processes: a file that takes too long is given up on, and the pool recovers."""

from __future__ import annotations

import os

from core.knowledge.pipeline import ExtractionPool


async def test_a_file_that_takes_too_long_fails_and_the_pool_recovers() -> None:
    pool = ExtractionPool(timeout=0.01)  # less than a worker needs even to start
    try:
        slow = await pool.prepare("slow.txt", b"words " * 1000, None, size=100, overlap=10, exact_tokens=False)
        assert slow.error == "slow.txt took longer than 0.000166667 minutes to read, so it was skipped."
        assert slow.chunks == []
        pool.timeout = 60
        fine = await pool.prepare("fine.txt", b"words " * 1000, None, size=100, overlap=10, exact_tokens=False)
        assert fine.error is None
        assert fine.kind == "text"
        assert len(fine.chunks) > 10
    finally:
        await pool.close()


async def test_extraction_happens_in_another_process() -> None:
    pool = ExtractionPool()
    try:
        prepared = await pool.prepare("x.txt", b"hello world", None, size=100, overlap=10, exact_tokens=False)
        assert prepared.chunks[0].text == "hello world"
        pids = {p.pid for p in pool._executor()._processes.values()}  # type: ignore[attr-defined]
        assert pids
        assert os.getpid() not in pids
    finally:
        await pool.close()
