"""The channel knowledge base end to end: upload, index, search, cite; channels never see each other's files."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import pytest

from core.commands import handle_command
from core.events import RunCompleted
from core.knowledge.base import DownloadFailed, Upload
from tests.fakes.openai_server import Error, FakeOpenAI, Reply, ToolCall, last_user_text, offered_tools, tool_results
from tests.helpers import CHANNEL, StoreDatabase, ask

HANDBOOK = """# Handbook

## Expenses
Travel expenses are reimbursed within 30 days when the receipt is uploaded to the finance portal.

## Holidays
Every employee has 27 days of paid holiday a year; unused days expire on 31 March.
"""


@pytest.fixture
async def service(open_service):
    """The built-in assistant: it offers file search wherever the channel has files."""
    return await open_service(assistants_file=None)


def search_then_answer(req: dict[str, Any]) -> Reply:
    """A model that searches the files when it can, then answers citing the first passage."""
    if results := tool_results(req):
        return Reply(text=f"Here is what the files say [1]. ({results[0]['content'][:60]})")
    if "file_search" in offered_tools(req):
        return Reply(tool_calls=(ToolCall("file_search", {"query": last_user_text(req).split(": ", 1)[1]}),))
    return Reply(text="I have no files to look at.")


def upload(name: str, text: str | bytes, **extra: Any) -> Upload:
    data = text.encode() if isinstance(text, str) else text
    return Upload(name=name, data=data, uploader_id="U_ALICE", uploader_name="alice", **extra)


async def test_an_uploaded_file_is_searched_and_cited(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = search_then_answer
    result = await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK, link="https://files.example/h"))
    assert result.file.status == "completed"
    assert result.file.chunk_count >= 2
    assert "Indexed handbook.md" in result.message

    events = await ask(service, "how many holiday days do we get?")
    done = events[-1]
    assert isinstance(done, RunCompleted)
    tool_output = tool_results(fake_model.chat_requests[-1])[0]["content"]
    assert tool_output.startswith("[1] handbook.md, Handbook > Holidays")
    assert "27 days of paid holiday" in tool_output
    assert [(s.number, s.file_name, s.location, s.link) for s in done.sources] == [
        (1, "handbook.md", "Handbook > Holidays", "https://files.example/h")
    ]


async def test_file_search_is_offered_only_where_there_are_files(service, fake_model: FakeOpenAI) -> None:
    fake_model.script = search_then_answer
    await ask(service, "anything?")
    assert "file_search" not in offered_tools(fake_model.chat_requests[-1])
    await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK))
    await ask(service, "anything?")
    assert "file_search" in offered_tools(fake_model.chat_requests[-2])


async def test_a_channel_never_sees_another_channels_files(service, fake_model: FakeOpenAI) -> None:
    await service.knowledge.add("slack:T1:FINANCE", upload("handbook.md", HANDBOOK))
    await service.knowledge.add("slack:T1:OTHER", upload("notes.txt", "The office plants need water on Fridays."))
    assert await service.knowledge.search("slack:T1:OTHER", "holiday days expenses receipt") == []
    hits = await service.knowledge.search("slack:T1:FINANCE", "holiday days")
    assert hits
    assert {h.file_name for h in hits} == {"handbook.md"}
    fake_model.script = search_then_answer
    await ask(service, "holiday days?", channel="slack:T1:THIRD")
    assert "file_search" not in offered_tools(fake_model.chat_requests[-1])


async def test_same_content_is_indexed_once_and_a_new_version_replaces_the_old(service) -> None:
    first = await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK))
    again = await service.knowledge.add(CHANNEL, upload("copy-of-handbook.md", HANDBOOK))
    assert again.duplicate
    assert again.file.id == first.file.id
    assert "already in this channel" in again.message
    newer = await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK.replace("27 days", "30 days")))
    assert [f.id for f in newer.replaced] == [first.file.id]
    files = await service.knowledge.files(CHANNEL)
    assert [f.name for f in files] == ["handbook.md"]
    hits = await service.knowledge.search(CHANNEL, "paid holiday")
    assert "30 days" in hits[0].text
    assert all("27 days" not in h.text for h in hits)


async def test_bad_files_fail_with_a_reason_and_the_channel_keeps_working(open_service, fake_model: FakeOpenAI) -> None:
    service = await open_service(assistants_file=None, max_file_mb=0.01)
    big = await service.knowledge.add(CHANNEL, upload("big.txt", "word " * 5000))
    assert big.file.status == "failed"
    assert "over the 0.01 MB limit" in big.message
    empty = await service.knowledge.add(CHANNEL, upload("empty.txt", b""))
    assert empty.file.status == "failed"
    junk = await service.knowledge.add(CHANNEL, upload("notes.txt", bytes(range(256)) * 10))
    assert junk.file.status == "failed"
    image = await service.knowledge.add(CHANNEL, upload("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100))
    assert image.file.status == "failed"
    assert "PDF" in image.message  # names what is supported
    listing = (await handle_command(service, CHANNEL, "/files")).text
    assert listing.count("failed:") == 4
    events = await ask(service, "still there?")
    assert isinstance(events[-1], RunCompleted)


async def test_files_forget_and_reset_commands(service) -> None:
    await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK))
    await service.knowledge.add(CHANNEL, upload("plants.txt", "Water the plants on Fridays."))
    listing = (await handle_command(service, CHANNEL, "/files")).text
    assert "handbook.md" in listing
    assert "plants.txt" in listing
    assert "chunk" in listing
    reset = (await handle_command(service, CHANNEL, "/reset")).text
    assert "2 files stay searchable" in reset
    assert len(await service.knowledge.files(CHANNEL)) == 2
    forgot = (await handle_command(service, CHANNEL, "/forget plants.txt")).text
    assert "Removed plants.txt" in forgot
    assert await service.knowledge.search(CHANNEL, "plants Fridays") == []
    missing = (await handle_command(service, CHANNEL, "/forget nope.txt")).text
    assert "No file called nope.txt" in missing
    everything = (await handle_command(service, CHANNEL, "/forget --all")).text
    assert "Removed all 1 file" in everything
    assert await service.knowledge.files(CHANNEL) == []
    assert not await service.knowledge.searchable(CHANNEL)


async def test_embeddings_are_stored_and_fused_with_keywords(
    open_service, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    service = await open_service(assistants_file=None, embedding_model="fake-embedding")
    await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK))
    embedding_requests = [r for r in fake_model.requests if "input" in r]
    assert embedding_requests
    assert embedding_requests[0]["model"] == "fake-embedding"
    rows = database.rows("SELECT model, dim, length(vector) FROM embeddings")
    assert rows
    assert all(row == ("fake-embedding", 8, 32) for row in rows)
    hits = await service.knowledge.search(CHANNEL, "paid holiday")
    assert hits[0].location == "Handbook > Holidays"
    assert hits[0].score > 0  # a fused (RRF) score: both rankings were used


async def test_embedding_failure_falls_back_to_keywords(open_service, fake_model: FakeOpenAI, caplog) -> None:
    service = await open_service(assistants_file=None, embedding_model="fake-embedding")
    fake_model.embeddings_error = Error(500, "embeddings down")
    with caplog.at_level(logging.WARNING):
        result = await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK))
    assert result.file.status == "completed"
    assert "embedding failed" in caplog.text
    hits = await service.knowledge.search(CHANNEL, "paid holiday")
    assert hits
    assert hits[0].location == "Handbook > Holidays"


async def test_changing_the_embedding_model_re_embeds(
    open_service, fake_model: FakeOpenAI, database: StoreDatabase
) -> None:
    first = await open_service(assistants_file=None, embedding_model="model-a")
    await first.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK))
    await first.close()
    second = await open_service(assistants_file=None, embedding_model="model-b")
    await second.knowledge.settle()
    models = {row[0] for row in database.rows("SELECT model FROM embeddings")}
    assert models == {"model-b"}
    assert any(r.get("model") == "model-b" for r in fake_model.requests if "input" in r)


async def test_a_large_file_does_not_hold_up_another_channel(service, fake_model: FakeOpenAI) -> None:
    big = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum dolor sit amet " * 40 for n in range(3000))
    ingest = asyncio.create_task(service.knowledge.add("slack:T1:DOCS", upload("big.txt", big)))
    events = await ask(service, "quick question", channel="slack:T1:CHAT")
    assert isinstance(events[-1], RunCompleted)
    assert not ingest.done()  # answered while the big file was still being read
    result = await ingest
    assert result.file.status == "completed"
    assert result.file.chunk_count > 100


@pytest.mark.parametrize("query", ["", "   ", '"; DROP TABLE chunks; --', "NEAR( AND OR *"])
async def test_odd_queries_are_safe(service, query: str) -> None:
    await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK))
    hits = await service.knowledge.search(CHANNEL, query)
    assert isinstance(hits, list)
    assert await service.knowledge.searchable(CHANNEL)


async def test_a_file_left_half_indexed_by_a_stop_is_marked_failed(open_service, database: StoreDatabase) -> None:
    from core.store.files import FileStore

    store = await database.open()
    await FileStore(store).create(
        channel=CHANNEL, name="report.pdf", size=10, sha256="ab", mime=None,
        uploader_id=None, uploader_name=None, platform_file_id=None, link=None,
    )  # fmt: skip
    await store.close()
    service = await open_service(assistants_file=None)
    [record] = await service.knowledge.files(CHANNEL)
    assert record.status == "failed"
    assert "upload the file again" in (record.error or "")


async def test_a_file_forgotten_while_indexing_is_not_resurrected(service) -> None:
    big = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 40 for n in range(2000))
    adding = asyncio.create_task(service.knowledge.add(CHANNEL, upload("big.txt", big)))
    while not await service.knowledge.files(CHANNEL):
        await asyncio.sleep(0.01)
    await service.knowledge.forget(CHANNEL, "big.txt")
    result = await adding
    assert "removed while it was being indexed" in result.message
    assert await service.knowledge.files(CHANNEL) == []
    assert await service.knowledge.search(CHANNEL, "lorem ipsum") == []


async def test_chunks_holding_every_word_rank_first(service) -> None:
    # By any-word BM25 alone, a.txt (two of the words, many times, in a short text) ranks first.
    await service.knowledge.add(CHANNEL, upload("a.txt", "holiday expire " * 20))
    await service.knowledge.add(CHANNEL, upload("b.txt", "Unused holiday days expire at the end of March each year."))
    await service.knowledge.add(CHANNEL, upload("c.txt", "Cats sleep all day."))
    hits = await service.knowledge.search(CHANNEL, "when do holiday days expire?")
    # Fewer than five chunks hold every word, so chunks holding any word follow.
    assert [h.file_name for h in hits] == ["b.txt", "a.txt", "c.txt"]


async def test_the_rarer_word_of_a_question_weighs_more(service, database: StoreDatabase) -> None:
    """BM25 on SQLite; on PostgreSQL each word's rank weighted by how rare the column's statistics say it is."""
    for n in range(30):
        await service.knowledge.add(CHANNEL, upload(f"report{n}.txt", f"Report {n} covers the budget."))
    await service.knowledge.add(CHANNEL, upload("budget.txt", "budget budget budget budget audit"))
    await service.knowledge.add(CHANNEL, upload("audit.txt", "audit audit audit audit budget"))
    if database.is_postgres:  # the statistics autovacuum keeps as chunks are added, here at once
        await service.store.call(lambda db: db.execute("ANALYZE chunks"))
    hits = await service.knowledge.search(CHANNEL, "budget audit")
    # Both hold both words, as often; audit is in 2 chunks of 32, budget in all: the chunk about it wins.
    assert [h.file_name for h in hits[:2]] == ["audit.txt", "budget.txt"]


async def test_a_small_channel_finds_its_matches_under_a_big_channel_s_better_ones(service) -> None:
    """The index is shared by every channel, and a search ranks only its best few hundred matches first
    (core/store/keywords.py RANKED_POOL): when another channel's chunks fill those, the channel's own are
    still found, and the big channel's own best still come first."""
    from core.store.keywords import RANKED_POOL

    big = "console:local:big"
    sections = [f"## Part {n}\n\nInvoice invoice invoice, number {n}." for n in range(RANKED_POOL + 50)]
    sections[77] = "## Part 77\n\ninvoice invoice invoice invoice invoice invoice"
    await service.knowledge.add(big, upload("invoices.md", "\n\n".join(sections)))
    for name in ("march.txt", "april.txt", "may.txt"):
        await service.knowledge.add(
            CHANNEL, upload(name, f"The {name[:-4]} invoice was paid late, as noted in the long report.")
        )
    hits = await service.knowledge.search(CHANNEL, "invoice")
    assert sorted(h.file_name for h in hits) == ["april.txt", "march.txt", "may.txt"]
    [best, *_] = await service.knowledge.search(big, "invoice")
    assert "invoice invoice invoice invoice invoice invoice" in best.text


@pytest.mark.postgresql_only
async def test_postgresql_ranks_from_the_rum_index_what_it_ranks_without_it(service, database: StoreDatabase) -> None:
    """More chunks hold the word than the ranking index's pool (core/store/keywords.py RANKED_POOL): with the
    index only the chunks it hands out first are read and scored, and the best are those found without it."""
    from core.store.files import FileStore
    from core.store.keywords import POSTGRES_INDEX, RANKED_POOL, narrowing_steps
    from core.store.postgres.ranking_index import INDEX_NAMES

    sections = [f"## Entry {n}\n\nThe ledger of entry {n} lists item{n}." for n in range(RANKED_POOL + 60)]
    sections += [f"## Note {n}\n\nNothing of note {n} is kept." for n in range(40)]  # the word is not in all
    sections[137] = "## Entry 137\n\nledger ledger ledger ledger: the ledger reconciled."
    sections[201] = "## Entry 201\n\nA ledger, a ledger, and ledger again."
    await service.knowledge.add(CHANNEL, upload("ledgers.md", "\n\n".join(sections)))
    files = FileStore(service.store)
    assert database.rows("SELECT count(*) FROM chunks WHERE strpos(text, 'ledger') > 0")[0][0] > RANKED_POOL
    await service.store.call(lambda db: db.execute("ANALYZE chunks, files"))

    def plan(db: Any) -> str:
        sql, parameters = POSTGRES_INDEX.statement(db, narrowing_steps(["ledger"])[0], [CHANNEL], 40)
        with db.atomic():  # as the planner chooses at 100k chunks; at 300 it reads them all, as cheap
            db.execute("SET LOCAL enable_seqscan = off")
            db.execute("SET LOCAL enable_sort = off")
            return "\n".join(row[0] for row in db.execute("EXPLAIN " + sql, parameters).fetchall())

    # Store.open made the index (rum is installed: make postgres); the search can read chunks in its order.
    await service.store.ranking_index_ready()
    assert f"Index Scan using {INDEX_NAMES['english']}" in (planned := await service.store.call(plan))
    assert "Order By: (search_vector <=>" in planned
    with_index = await files.keyword_search(CHANNEL, "ledger", 40)
    await service.store.call(lambda db: db.execute(f"DROP INDEX {INDEX_NAMES['english']}"))
    assert "<=>" not in await service.store.call(plan)  # neither half's index ranks without both
    without = await files.keyword_search(CHANNEL, "ledger", 40)
    # The same ranking: the same two best, then the same scores (chunks of one mention tie, in any order).
    assert [chunk for chunk, _ in with_index[:2]] == [chunk for chunk, _ in without[:2]]
    assert [round(score, 6) for _, score in with_index] == [round(score, 6) for _, score in without]
    texts = dict(database.rows("SELECT id, text FROM chunks"))
    # the two chunks that say it most, first
    assert {texts[chunk].split("\n")[0] for chunk, _ in with_index[:2]} == {"## Entry 137", "## Entry 201"}


@pytest.mark.postgresql_only
async def test_a_ranking_index_a_stopped_build_left_unfinished_is_built_again(database: StoreDatabase) -> None:
    """A concurrent build that stops leaves an invalid index behind; the next start drops it and builds it."""
    from core.store.postgres.ranking_index import INDEX_NAMES

    name = INDEX_NAMES["english"]
    store = await database.open()
    await store.ranking_index_ready()
    await store.close()
    import psycopg

    assert database.url is not None
    with psycopg.connect(database.url, autocommit=True) as pg:
        pg.execute(f"DROP INDEX {name}")
        pg.execute("INSERT INTO files (id, channel, status) VALUES ('f', %s, 'completed')", [CHANNEL])
        pg.execute("INSERT INTO chunks (file_id, channel, text) VALUES ('f', %s, 'a'), ('f', %s, 'b')", [CHANNEL] * 2)
        with pytest.raises(psycopg.errors.UniqueViolation):  # and leaves the index behind, as a stopped build does
            pg.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON chunks (channel)")
    assert database.rows(f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{name}'::regclass") == [(False,)]

    store = await database.open()
    try:
        await store.ranking_index_ready()
    finally:
        await store.close()
    assert _ranking_indexes(database) == {
        name: f"USING rum (search_vector) WHERE {predicate}" for name, predicate in _ranking_index_predicates().items()
    }


def _ranking_index_predicates() -> dict[str, str]:
    """Each ranking index's name and its predicate as pg_indexes spells it."""
    from core.store.postgres.ranking_index import INDEX_NAMES

    return {
        INDEX_NAMES["english"]: "(stemming = 'english'::text)",
        INDEX_NAMES["simple"]: "(stemming IS DISTINCT FROM 'english'::text)",
    }


def _ranking_indexes(database: StoreDatabase) -> dict[str, str]:
    """The valid rum indexes on chunks: name -> their definition from USING on."""
    rows = database.rows(
        "SELECT indexname, indexdef FROM pg_indexes JOIN pg_index ON indexrelid = to_regclass(indexname)"
        " WHERE tablename = 'chunks' AND strpos(indexdef, 'USING rum') > 0 AND indisvalid"
    )
    return {name: definition[definition.index("USING") :] for name, definition in rows}


@pytest.mark.postgresql_only
async def test_the_one_ranking_index_of_before_is_replaced_by_one_for_each_half(database: StoreDatabase) -> None:
    """A database whose start built the single index over both halves gets the two partial ones, and the old
    one is dropped (searches of one half no longer read the other half's chunks)."""
    store = await database.open()
    await store.ranking_index_ready()
    await store.close()
    import psycopg

    assert database.url is not None
    with psycopg.connect(database.url, autocommit=True) as pg:
        for name in _ranking_index_predicates():
            pg.execute(f"DROP INDEX {name}")
        pg.execute("CREATE INDEX chunks_search_rum ON chunks USING rum (search_vector rum_tsvector_ops)")
    assert list(_ranking_indexes(database)) == ["chunks_search_rum"]

    store = await database.open()
    try:
        await store.ranking_index_ready()
    finally:
        await store.close()
    assert sorted(_ranking_indexes(database)) == sorted(_ranking_index_predicates())


@pytest.mark.postgresql_only
async def test_searching_english_chunks_reads_none_for_the_other_half(service, database: StoreDatabase) -> None:
    """Each half of the column is searched in its own index: the simple configuration's half of a search,
    whose words stem to themselves in English, finds no English chunk only to leave it out."""
    from core.store.files import FileStore
    from core.store.keywords import POSTGRES_INDEX, narrowing_steps

    sections = [f"## Part {n}\n\nThe quarterly ledger {n} was closed." for n in range(60)]
    await service.knowledge.add(CHANNEL, upload("ledgers.md", "\n\n".join(sections)))
    await service.store.call(lambda db: db.execute("ANALYZE chunks, files"))
    await service.store.ranking_index_ready()

    def analysed(db: Any) -> str:
        sql, parameters = POSTGRES_INDEX.statement(db, narrowing_steps(["ledger"])[0], [CHANNEL], 40)
        with db.atomic():  # as the planner chooses at 100k chunks; at 60 it reads the channel's, as cheap
            db.execute("SET LOCAL enable_seqscan = off")
            db.execute("SET LOCAL enable_sort = off")
            return "\n".join(row[0] for row in db.execute("EXPLAIN ANALYZE " + sql, parameters).fetchall())

    plan = await service.store.call(analysed)
    [(english, others)] = database.rows(
        "SELECT count(*) FILTER (WHERE stemming = 'english'), count(*) FILTER (WHERE stemming <> 'english') FROM chunks"
    )
    assert (english, others) == (60, 0)
    assert "Rows Removed by Filter" not in plan, plan  # with one index over both: "Rows Removed by Filter: 60"
    assert len(await FileStore(service.store).keyword_search(CHANNEL, "ledger", 40)) == 40


@pytest.mark.postgresql_only
async def test_replicas_starting_together_build_the_ranking_index_once(
    database: StoreDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """Three processes' starts on one new database at once: the extension made once (no error from the others),
    the index built by one of them, and none of them told anything went wrong."""
    with caplog.at_level(logging.INFO, logger="core.store.postgres.ranking_index"):
        stores = await asyncio.gather(*(database.open() for _ in range(3)))
        try:
            await asyncio.gather(*(store.ranking_index_ready() for store in stores))
        finally:
            await asyncio.gather(*(store.close() for store in stores))
    told = [r for r in caplog.records if r.name == "core.store.postgres.ranking_index"]
    assert [r.levelno for r in told] == [logging.INFO]  # "built the keyword ranking index", by one of them
    assert sorted(_ranking_indexes(database)) == sorted(_ranking_index_predicates())


@pytest.mark.postgresql_only
async def test_a_database_user_who_cannot_create_rum_is_told_how_and_still_searches(
    postgres_server, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """rum is not a trusted extension: creating it takes a superuser. The start says what to run, once."""
    import uuid

    import psycopg

    from core.store import Store
    from core.store.files import FileStore

    name = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    url = f"postgresql://{name}@127.0.0.1:{postgres_server.port}/{name}"
    try:
        with caplog.at_level(logging.INFO, logger="core.store.postgres.ranking_index"):
            store = await Store.open(tmp_path / "unused.db", url=url)
        try:
            [told] = [r for r in caplog.records if r.name == "core.store.postgres.ranking_index"]
            assert told.levelno == logging.WARNING
            assert "CREATE EXTENSION rum;" in told.getMessage()
            files = FileStore(store)
            record = await files.create(
                channel=CHANNEL, name="rota.txt", size=10, sha256="ef", mime=None,
                uploader_id=None, uploader_name=None, platform_file_id=None, link=None,
            )  # fmt: skip
            await store.call(
                lambda db: db.execute(
                    "INSERT INTO chunks (file_id, channel, ordinal, location, text, tokens) VALUES (?, ?, 0, '', ?, 5)",
                    [record.id, CHANNEL, "the holiday rota is on the wall"],
                )
            )
            await store.call(lambda db: db.execute("UPDATE files SET status = 'completed' WHERE id = ?", [record.id]))
            assert len(await files.keyword_search(CHANNEL, "holiday rota", 5)) == 1
        finally:
            await store.close()
    finally:
        postgres_server.drop(url)
        with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{name}"')


async def test_keyword_search_stems_english_splits_cjk_and_ranks_every_word_first(service) -> None:
    """On either engine's full text (FTS5, or PostgreSQL's tsvector): the same words are found."""
    await service.knowledge.add(CHANNEL, upload("leave.txt", "Public holidays are listed on the intranet."))
    await service.knowledge.add(CHANNEL, upload("sales.txt", "東京の売上は増加"))
    await service.knowledge.add(CHANNEL, upload("both.txt", "Sales grew in Tokyo over the holidays."))
    await service.knowledge.add(CHANNEL, upload("tokyo.txt", "Tokyo is a large city; Tokyo, Tokyo, Tokyo."))

    async def found(query: str) -> list[str]:
        return [hit.file_name for hit in await service.knowledge.search(CHANNEL, query)]

    assert set(await found("holiday")) == {"leave.txt", "both.txt"}  # English stemming: holidays is holiday
    assert await found("東京") == ["sales.txt"]  # a CJK word inside a run of them
    assert await found("売上は") == ["sales.txt"]
    assert (await found("tokyo holiday sales"))[0] == "both.txt"  # every word first, before many of one
    for odd in ('"; DROP TABLE chunks; --', "NEAR( AND OR *", "it's a \\ & | ! ( <-> :* 'x'"):
        assert isinstance(await found(odd), list)
    assert await found("holiday")  # the chunks are still there


async def test_no_word_of_a_search_is_read_as_query_syntax(service, database: StoreDatabase) -> None:
    """Words reach the index quoted, whatever they hold (core/store/keywords.py): an FTS5 or tsquery operator
    inside one is a character of that word, never an operator (a word of a search holds none, but if it did)."""
    from core.store.files import FileStore
    from core.store.keywords import POSTGRES_INDEX, SEARCH_INDEX

    await service.knowledge.add(CHANNEL, upload("notes.txt", "O'Brien wrote the holiday rota."))
    files = FileStore(service.store)
    index = POSTGRES_INDEX if database.is_postgres else SEARCH_INDEX
    # Each would find the chunk if its operators were read: OR / | holiday, a prefix, NOT a word it lacks.
    for word in ("o'brien') | ('holiday", 'rota" OR "holiday', "x\\' | 'holiday", "holi:*", "holi*", "!cats"):
        quoted = replace(index, words=lambda _text, word=word: [word])
        assert await files.keyword_search(CHANNEL, "ignored", 5, index=quoted) == [], word
    assert len(await files.keyword_search(CHANNEL, "holiday", 5)) == 1


async def test_chunks_of_a_file_still_being_indexed_are_not_searchable(service) -> None:
    from core.store.files import FileStore

    files = FileStore(service.store)
    record = await files.create(
        channel=CHANNEL, name="half.txt", size=10, sha256="cd", mime=None,
        uploader_id=None, uploader_name=None, platform_file_id=None, link=None,
    )  # fmt: skip
    await service.store.call(
        lambda db: db.execute(
            "INSERT INTO chunks (file_id, channel, ordinal, location, text, tokens) VALUES (?, ?, 0, '', ?, 5)",
            [record.id, CHANNEL, "the rocket launches at dawn"],
        )
    )
    assert await service.knowledge.search(CHANNEL, "rocket launches") == []
    await files.fail_interrupted("interrupted")
    count = await service.store.call(lambda db: db.execute("SELECT count(*) FROM chunks").fetchone()[0])
    assert count == 0


# -- one file per platform upload, whichever delivery or process brings it ----------------------------


async def _chunk_count(service) -> int:
    return await service.store.call(lambda db: db.execute("SELECT count(*) FROM chunks").fetchone()[0])


async def test_two_processes_given_the_same_platform_file_at_once_index_it_once(open_service) -> None:
    first = await open_service(assistants_file=None)
    second = await open_service(assistants_file=None)  # another process: its own store on the same database file
    assert first.store is not second.store
    assert first.store.path == second.store.path
    given = upload("handbook.md", HANDBOOK, platform_file_id="F_HANDBOOK")
    results = await asyncio.gather(first.knowledge.add(CHANNEL, given), second.knowledge.add(CHANNEL, given))
    [record] = await first.knowledge.files(CHANNEL)
    assert (record.platform_file_id, record.status) == ("F_HANDBOOK", "completed")
    assert await _chunk_count(first) == record.chunk_count  # indexed once
    assert sorted(r.outcome for r in results) == ["added", "already_there"]
    [added] = [r for r in results if r.outcome == "added"]
    [again] = [r for r in results if r.outcome == "already_there"]
    assert added.file.id == again.file.id == record.id
    assert again.delivered_before
    assert not again.duplicate
    assert again.notice is None  # the first delivery was answered: nothing to say twice
    assert again.message == "handbook.md is already in this channel's files."


async def test_a_second_delivery_answers_at_once_while_the_first_downloads(open_service) -> None:
    first = await open_service(assistants_file=None)
    second = await open_service(assistants_file=None)
    downloads: list[int] = []
    downloading, release = asyncio.Event(), asyncio.Event()

    async def download(limit: int) -> bytes:
        downloads.append(limit)
        downloading.set()
        await release.wait()
        return HANDBOOK.encode()

    given = Upload("handbook.md", platform_file_id="F_SLOW", declared_size=len(HANDBOOK), download=download)
    adding = [asyncio.create_task(kb.add(CHANNEL, given)) for kb in (first.knowledge, second.knowledge)]
    [early], [late] = await asyncio.wait(adding, return_when=asyncio.FIRST_COMPLETED)
    assert early.result().outcome == "already_there"  # answered while the other one's download is held
    assert early.result().notice is None
    await asyncio.wait_for(downloading.wait(), 30)  # the claim may answer before the claimant reaches its download
    assert downloads == [first.knowledge.max_file_bytes]
    release.set()
    assert (await late).outcome == "added"
    assert len(downloads) == 1
    assert [f.status for f in await second.knowledge.files(CHANNEL)] == ["completed"]


async def test_a_failed_download_leaves_nothing_and_the_next_delivery_adds_the_file(service) -> None:
    async def broken(limit: int) -> bytes:
        raise DownloadFailed("I could not download handbook.md, so it was not added. Try sharing it again.")

    failed = await service.knowledge.add(CHANNEL, Upload("handbook.md", platform_file_id="F_1", download=broken))
    assert failed.outcome == "refused"
    assert failed.notice == "I could not download handbook.md, so it was not added. Try sharing it again."
    assert await service.knowledge.files(CHANNEL) == []
    again = await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK, platform_file_id="F_1"))
    assert again.outcome == "added"
    assert again.file.status == "completed"


async def test_a_refused_platform_file_is_refused_once_and_never_downloaded(open_service) -> None:
    service = await open_service(assistants_file=None, max_file_mb=0.01)

    async def download(limit: int) -> bytes:
        raise AssertionError("a file over the limit is not downloaded")

    big = Upload("big.txt", platform_file_id="F_BIG", declared_size=10**6, download=download)
    refused = await service.knowledge.add(CHANNEL, big)
    assert refused.outcome == "refused"
    assert "over the 0.01 MB limit" in (refused.notice or "")
    again = await service.knowledge.add(CHANNEL, big)
    assert (again.outcome, again.notice, again.file.id) == ("already_there", None, refused.file.id)
    assert [f.status for f in await service.knowledge.files(CHANNEL)] == ["failed"]


async def test_the_same_content_under_another_platform_id_is_a_duplicate_as_before(service) -> None:
    first = await service.knowledge.add(CHANNEL, upload("handbook.md", HANDBOOK, platform_file_id="F_1"))
    copy = await service.knowledge.add(CHANNEL, upload("copy.md", HANDBOOK, platform_file_id="F_2"))
    assert copy.duplicate
    assert not copy.delivered_before
    assert copy.outcome == "already_there"
    assert copy.file.id == first.file.id
    assert copy.notice == "handbook.md is already in this channel's files (same content), so nothing changed."
    assert [f.platform_file_id for f in await service.knowledge.files(CHANNEL)] == ["F_1"]


async def test_a_process_starting_leaves_alone_a_file_another_live_process_is_adding(open_service) -> None:
    first = await open_service(assistants_file=None)
    downloading, release = asyncio.Event(), asyncio.Event()

    async def download(limit: int) -> bytes:
        downloading.set()
        await release.wait()
        return HANDBOOK.encode()

    adding = asyncio.create_task(
        first.knowledge.add(CHANNEL, Upload("handbook.md", platform_file_id="F_1", download=download))
    )
    await downloading.wait()
    second = await open_service(assistants_file=None)  # its start fails what stopped processes left half-indexed
    assert [f.status for f in await second.knowledge.files(CHANNEL)] == ["in_progress"]
    release.set()
    result = await adding
    assert result.outcome == "added"
    assert result.file.status == "completed"


async def test_the_any_word_step_leaves_out_a_word_most_chunks_hold_while_a_rarer_one_remains(
    service, database: StoreDatabase
) -> None:
    """No chunk holds both words, so the search falls to its any-word step: there the word nearly every chunk
    holds is left out (ranking its chunks was most of such a search in a big channel), the rarer word's chunks
    are what is found, and the common word alone still finds its own. On both engines (PostgreSQL by its
    statistics of the column, SQLite by counting in FTS5)."""
    from core.store.files import FileStore
    from core.store.keywords import POSTGRES_INDEX, SEARCH_INDEX

    sections = [f"## Entry {n}\n\nThe ledger of entry {n} is open." for n in range(58)]
    sections += [f"## Check {n}\n\nAn audit found item {n} missing." for n in range(2)]
    await service.knowledge.add(CHANNEL, upload("books.md", "\n\n".join(sections)))
    assert database.rows("SELECT count(*) FROM chunks")[0][0] == 60
    files = FileStore(service.store)
    if database.is_postgres:
        await service.store.call(lambda db: db.execute("ANALYZE chunks, files"))
    # (SQLite counts from 4,000 rows a table, where ranking every match starts to cost: here from the first.)
    index = POSTGRES_INDEX if database.is_postgres else replace(SEARCH_INDEX, counted_from=0)
    texts = dict(database.rows("SELECT id, text FROM chunks"))

    found = await files.keyword_search(CHANNEL, "ledger audit", 40, index=index)
    assert sorted(texts[chunk].split("\n")[0] for chunk, _ in found) == ["## Check 0", "## Check 1"]
    assert len(await files.keyword_search(CHANNEL, "ledger", 40, index=index)) == 40
    # Without the count (a table below counted_from), every chunk of either word is ranked.
    if not database.is_postgres:
        assert len(await files.keyword_search(CHANNEL, "ledger audit", 40)) == 40
