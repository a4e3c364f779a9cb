"""Small reproductions of two core bugs the soak found (BENCHMARKS.md, section 13.4), for whoever fixes them.

    .venv/bin/python -m bench.repro_multiprocess channels     # a: a channel's first message fails
    .venv/bin/python -m bench.repro_multiprocess unadopted    # b: an answer stored and never told

``channels``: two processes on one migrated database each post the first message of 300 new
channels of their own, then both post the first messages of the same 300 new channels
(``Store.post_user_message``, as ``Threadline.post`` does). Expected: no errors. Found: "database
is locked" (``Store._ensure_channel`` writes in a deferred transaction after sqlite_utils has read
``sqlite_master``, so SQLite answers SQLITE_BUSY at once) and "UNIQUE constraint failed:
channels.key" (two processes create the same channel).

``unadopted``: a process that is gone (its row: another host, a lease in the past) has queued
"first question" in a channel; a live service then gets "second question" in the same channel.
Expected: both answered, the first posted through ``notify`` (the service took it over). Found:
both answered and stored, the first never passed to ``notify``: the lane's claim started the gone
process's run, so the service neither watches nor adopted it.

Nothing leaves 127.0.0.1 (the model is :class:`tests.fakes.openai_server.FakeOpenAI`).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import bench_settings, forbid_non_loopback
from core.models import Author, Incoming
from core.service import Threadline
from core.store import Store
from core.store.processes import ProcessStore
from tests.fakes.openai_server import FakeOpenAI, Reply, last_user_text

CHANNEL = "slack:T1:C1"


# -- a: a channel's first message ----------------------------------------------------------------


async def _post_first_messages(db: str, channels: list[str], author: str, barrier: Any) -> dict[str, int]:
    store = await Store.open(db)
    errors: Counter[str] = Counter()
    await asyncio.to_thread(barrier.wait, 60)  # both processes post from the same moment
    try:
        for i, channel in enumerate(channels):
            try:
                await store.post_user_message(
                    channel=channel,
                    author_id=author,
                    author_name=author,
                    text="hi",
                    item={"role": "user", "content": "hi"},
                    tokens=1,
                    platform_msg_id=f"{author}-{i}",
                )
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"] += 1
    finally:
        await store.close()
    return dict(errors)


def _poster(db: str, channels: list[str], author: str, barrier: Any, results: Any) -> None:
    results.put((author, asyncio.run(_post_first_messages(db, channels, author, barrier))))


def channels() -> int:
    found = 0
    context = multiprocessing.get_context("spawn")
    for case in ("own channels", "the same channels"):
        folder = tempfile.mkdtemp(prefix="threadline-repro-")
        db = str(Path(folder) / "repro.db")

        async def migrate(path: str = db) -> None:
            await (await Store.open(path)).close()

        asyncio.run(migrate())  # only the posts race, not the migrations
        results = context.Queue()
        barrier = context.Barrier(2)
        processes = []
        for author in ("U1", "U2"):
            names = [f"slack:T1:C{author}{i}" if case == "own channels" else f"slack:T1:C{i}" for i in range(300)]
            processes.append(context.Process(target=_poster, args=(db, names, author, barrier, results)))
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        outcome = dict(results.get(timeout=10) for _ in processes)
        shutil.rmtree(folder, ignore_errors=True)
        errors = sum(sum(e.values()) for e in outcome.values())
        found += errors
        print(f"{case}: {errors} of 600 first messages failed: {outcome}")
    return 1 if found else 0


# -- b: a gone process's queued run, started by a live lane ----------------------------------------


async def unadopted() -> int:
    with tempfile.TemporaryDirectory(prefix="threadline-repro-") as folder:
        return await _unadopted(Path(folder) / "repro.db")


async def _unadopted(db: Path) -> int:

    def script(request: dict[str, Any]) -> Reply:
        return Reply(text=f"answer to {last_user_text(request).split(': ', 1)[-1]}")

    async with FakeOpenAI(script) as fake:
        told: list[tuple[str, str]] = []

        async def notify(channel: str, text: str) -> None:
            told.append((channel, text))

        # Lease 15 s: the service's next recovery pass is 5 s away.
        service = await Threadline.open(bench_settings(fake.base_url, db), notify=notify)
        gone_store = await Store.open(db)
        try:
            gone = ProcessStore(gone_store, platforms=None, lease_seconds=15)
            await gone.register()
            await gone_store.call(
                lambda d: d.execute(
                    "UPDATE processes SET host = 'elsewhere', lease_until = 0 WHERE id = ?", [gone.process_id]
                )
            )
            await gone_store.post_user_message(
                channel=CHANNEL, author_id="U1", author_name="alice", text="first question",
                item={"role": "user", "content": "alice: first question"}, tokens=3, platform_msg_id="m1",
            )  # fmt: skip
            handle = await service.post(Incoming(CHANNEL, Author("U2", "bob"), "second question", platform_msg_id="m2"))
            assert handle is not None
            print("second question, on its handle:", getattr(await handle.result(), "text", "?"))
            await asyncio.sleep(6)  # past the service's next recovery pass
            await service.wait_idle()
            rows = await gone_store.call(
                lambda d: d.execute(
                    "SELECT m.text, r.status, (SELECT a.text FROM messages a WHERE a.turn_id = m.id"
                    " AND a.role = 'assistant') FROM messages m JOIN runs r ON r.trigger_message_id = m.id"
                    " WHERE m.role = 'user' ORDER BY m.id"
                ).fetchall()
            )
        finally:
            await gone_store.close()
            await service.close()
    for row in rows:
        print("stored:", tuple(row))
    print("told through notify:", told)
    first_told = any("first question" in text for _, text in told)
    print("the first question's answer was told" if first_told else "BUG: the first question's answer was never told")
    return 0 if first_told else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=("channels", "unadopted"))
    args = parser.parse_args()
    forbid_non_loopback()
    sys.exit(channels() if args.case == "channels" else asyncio.run(unadopted()))


if __name__ == "__main__":
    main()
