"""How a keyword search narrows, and what the any-word step ranks (core/store/keywords.py): pure logic, and the
row count SQLite's FTS5 keeps."""

from __future__ import annotations

import math

from sqlite_utils import Database

from core.store.keywords import COMMON_SHARE, fts5_rows, narrowing_steps, searched_alternatives

RARE = -math.log(COMMON_SHARE / 10)  # a word in one chunk of 200
COMMON = -math.log(COMMON_SHARE * 4)  # a word in one chunk of 5


def test_a_search_narrows_from_every_word_to_any_word() -> None:
    assert narrowing_steps(["a", "b", "c"]) == [
        [["a", "b", "c"]],
        [["b", "c"], ["a", "c"], ["a", "b"]],
        [["a"], ["b"], ["c"]],
    ]
    assert narrowing_steps(["a"]) == [[["a"]]]
    assert narrowing_steps([]) == []


def test_the_any_word_step_ranks_only_the_rarer_words_chunks_while_there_are_rarer_words() -> None:
    words = ["budget", "by", "audit"]
    any_word = narrowing_steps(words)[-1]
    assert searched_alternatives(any_word, [RARE, COMMON, RARE], words) == [["budget"], ["audit"]]
    # Only common words: all of them, or the search would find nothing.
    assert searched_alternatives(any_word, [COMMON, COMMON, COMMON], words) == any_word


def test_steps_that_need_every_word_of_an_alternative_are_left_whole() -> None:
    words = ["budget", "by", "audit"]
    every, all_but_one, _ = narrowing_steps(words)
    assert searched_alternatives(every, [RARE, COMMON, RARE], words) == every
    assert searched_alternatives(all_but_one, [RARE, COMMON, RARE], words) == all_but_one


def test_an_fts5_tables_rows_are_read_from_its_averages_record() -> None:
    """fts5_rows reads the count FTS5 keeps (a varint of one to nine bytes), equal to counting the rows, as rows
    are added and deleted (committed); an empty table has none."""
    db = Database(memory=True)
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    assert fts5_rows(db, "t") == 0
    added = 0
    for count in (1, 126, 20_000):  # past one byte (127) and two (16,383)
        with db.conn:  # FTS5 writes its record as a transaction commits
            db.conn.executemany("INSERT INTO t (body) VALUES (?)", [(f"word{n} ledger",) for n in range(count)])
        added += count
        assert fts5_rows(db, "t") == added == db.execute("SELECT count(*) FROM t").fetchone()[0]
    with db.conn:
        db.execute("DELETE FROM t WHERE rowid <= 100")
    assert fts5_rows(db, "t") == added - 100
