"""The knowledge base's full-text indexes, one for each engine, and how a search narrows over them.

A search is a list of words (core/store/fulltext.py: ``query_words``), never a user's query syntax. It
narrows in steps (:func:`narrowing_steps`): chunks holding every word; then all words but one; then any
word. A step is a list of alternatives, each a list of words every one of which a chunk must hold, and
each index writes a step in its own syntax, every word quoted as one term:

- SQLite: FTS5 (:class:`KeywordIndex`), the tables of m025 (Porter-stemmed English chunks, and the
  others unstemmed), ranked by BM25.
- PostgreSQL: the ``tsvector`` column of m026 (:class:`TsvectorIndex`), English chunks matched by the
  query in the ``english`` configuration, the others in ``simple``, ranked by ``ts_rank_cd``.

Either returns (chunk id, score) with lower scores better (BM25 as FTS5 gives it; the cover-density
rank negated), best first, of chunks in the given channels whose files are completed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.store.dialect import is_postgres
from core.store.fulltext import query_words
from core.store.sql import SqlDatabase

__all__ = [
    "POSTGRES_INDEX",
    "SEARCH_INDEX",
    "FullTextIndex",
    "KeywordIndex",
    "Step",
    "TsvectorIndex",
    "index_for",
    "narrowing_steps",
]

# Alternatives, each the words a chunk must all hold: [["a", "b"]] is a AND b; [["a"], ["b"]] is a OR b.
Step = list[list[str]]

# ts_rank_cd's normalisation: the rank divided by 1 + the log of the chunk's length, as BM25 weighs length.
_RANK_NORMALISATION = 1


def narrowing_steps(words: Sequence[str]) -> list[Step]:
    """Every word; then (three words or more) all words but one; then (two or more) any word. None for no words."""
    words = list(words)
    if not words:
        return []
    steps = [[words]]
    if len(words) >= 3:
        steps.append([words[:i] + words[i + 1 :] for i in range(len(words))])
    if len(words) >= 2:
        steps.append([[word] for word in words])
    return steps


class FullTextIndex(Protocol):
    """How a search becomes an index's words, and one narrowing step's ranking over the index."""

    @property
    def words(self) -> Callable[[str], list[str]]: ...

    def ranked(self, db: SqlDatabase, step: Step, channels: Sequence[str], limit: int) -> list[tuple[int, float]]: ...


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def fts5_match(words: Sequence[str], operator: str) -> str:
    """Words for FTS5 MATCH joined by ``operator``, each quoted (so no word is read as FTS5 syntax)."""
    return f" {operator} ".join('"' + w.replace('"', '""') + '"' for w in words)


@dataclass(frozen=True)
class KeywordIndex:
    """SQLite's full-text index over the chunks: its FTS5 tables (each chunk in one of them, their rankings
    merged by BM25 score), and how a search becomes that index's words."""

    tables: tuple[str, ...]
    words: Callable[[str], list[str]]

    @staticmethod
    def match(step: Step) -> str:
        if len(step) == 1:
            return fts5_match(step[0], "AND")
        if all(len(words) == 1 for words in step):
            return fts5_match([words[0] for words in step], "OR")
        return " OR ".join(f"({fts5_match(words, 'AND')})" for words in step)

    def ranked(self, db: SqlDatabase, step: Step, channels: Sequence[str], limit: int) -> list[tuple[int, float]]:
        matched = " UNION ALL ".join(
            f"SELECT rowid, bm25({table}) AS score FROM {table} WHERE {table} MATCH ?" for table in self.tables
        )
        rows = db.execute(
            f"SELECT chunks.id, matched.score FROM ({matched}) AS matched"
            " JOIN chunks ON chunks.id = matched.rowid"
            " JOIN files ON files.id = chunks.file_id AND files.status = 'completed'"
            f" WHERE chunks.channel IN ({_marks(channels)}) ORDER BY matched.score LIMIT ?",
            [*([self.match(step)] * len(self.tables)), *channels, limit],
        ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]


def tsquery_text(step: Step) -> str:
    """A step as ``to_tsquery`` input: each word one quoted lexeme (a quote doubled, a backslash escaped), so
    nothing in it is read as tsquery syntax; ``&`` within an alternative, ``|`` between them."""

    def lexeme(word: str) -> str:
        return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"

    return " | ".join("(" + " & ".join(lexeme(word) for word in words) + ")" for words in step)


# English chunks are matched (and ranked) by the step in the english configuration, the others in simple:
# the two halves of m026's column, as SQLite's two tables. The query is a value of the FROM list, so the
# GIN index is searched with it as with a constant.
_TSVECTOR_HALVES = (
    ("english", "chunks.stemming = 'english'"),
    ("simple", "chunks.stemming IS DISTINCT FROM 'english'"),
)


@dataclass(frozen=True)
class TsvectorIndex:
    """PostgreSQL's full-text index over the chunks: their ``search_vector`` (m026) and its GIN index."""

    words: Callable[[str], list[str]]

    def ranked(self, db: SqlDatabase, step: Step, channels: Sequence[str], limit: int) -> list[tuple[int, float]]:
        query = tsquery_text(step)
        halves = " UNION ALL ".join(
            f"SELECT chunks.id, -ts_rank_cd(chunks.search_vector, query, {_RANK_NORMALISATION}) AS score"
            f" FROM to_tsquery('{config}', ?) AS query, chunks"
            " JOIN files ON files.id = chunks.file_id AND files.status = 'completed'"
            f" WHERE chunks.search_vector @@ query AND {which} AND chunks.channel IN ({_marks(channels)})"
            for config, which in _TSVECTOR_HALVES
        )
        with db.atomic():
            # The planner prices ``@@`` as a cheap operator, but on a sequential scan it decompresses every
            # chunk's tsvector (kilobytes each, kept out of line): with a few percent of chunks matching
            # it chose that scan, 97 ms at 30k chunks against 2 ms through the GIN index. Here it never does.
            db.execute("SET LOCAL enable_seqscan = off")
            rows = db.execute(
                f"SELECT id, score FROM ({halves}) AS matched ORDER BY score, id LIMIT ?",
                [*[value for _ in _TSVECTOR_HALVES for value in (query, *channels)], limit],
            ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]


# m025_multilingual_search: CJK as bigrams; English chunks Porter-stemmed, the others not (core/store/fulltext.py).
SEARCH_INDEX = KeywordIndex(("chunks_search", "chunks_search_plain"), query_words)
# m026_postgres_full_text: the same words, English chunks stemmed by the english configuration.
POSTGRES_INDEX = TsvectorIndex(query_words)


def index_for(db: SqlDatabase) -> FullTextIndex:
    """The store's full-text index on this connection's engine."""
    return POSTGRES_INDEX if is_postgres(db) else SEARCH_INDEX
