"""The knowledge base's full-text indexes, one for each engine, and how a search narrows over them.

A search is a list of words (core/store/fulltext.py: ``query_words``), never a user's query syntax. It
narrows in steps (:func:`narrowing_steps`): chunks holding every word; then all words but one; then any
word. A step is a list of alternatives, each a list of words every one of which a chunk must hold, and
each index writes a step in its own syntax, every word quoted as one term:

- SQLite: FTS5 (:class:`KeywordIndex`), the tables of m025 (Porter-stemmed English chunks, and the
  others unstemmed), ranked by BM25: the index's best :data:`RANKED_POOL` matches first, from FTS5's own
  data, and only then their chunks read for the channel and the file's status (every match's chunk
  only when the channels have too few among those). In the any-word step a word most chunks hold is left
  out while a rarer one remains, as on PostgreSQL (:meth:`KeywordIndex.searched`).
- PostgreSQL: the ``tsvector`` column of m026 (:class:`TsvectorIndex`), English chunks matched by the
  query in the ``english`` configuration, the others in ``simple``, ranked as BM25 ranks: each word's
  ``ts_rank`` in the chunk (which grows with how often the word occurs there, less and less, and shrinks
  with the chunk's length) weighted by how rare the word is, summed (:func:`rank_sql`).

  Where the server has the ``rum`` extension, its index (core/store/postgres/ranking_index.py) hands out
  a step's chunks best first by rum's own rank, and only the first :data:`RANKED_POOL` are read and
  scored so: a question of common words at 100k chunks reads 200 chunks, not 5,000.

Either returns (chunk id, score) with lower scores better (BM25 as FTS5 gives it; the weighted rank
negated), best first, of chunks in the given channels whose files are completed.

How rare a word is comes from PostgreSQL's own statistics of the column: ANALYZE (autovacuum runs it as
chunks are added) keeps the lexemes found most often in a sample of chunks and the share of chunks holding
each (``pg_stats.most_common_elems``, what the planner estimates ``@@`` by). A word among them weighs
``-ln(share)``; one rarer than all of them, as much as half the rarest share. Nothing is counted per
search, and no table beyond the column is kept. Without statistics yet (a table not yet analysed) every
word weighs the same. Plain ``ts_rank_cd`` (how close together the words stand), which ranked here
before, found the labelled section in the top 5 for 57 % of bench.retrieval's questions against FTS5's
77 %; weighted ``ts_rank``, 77 % (BENCHMARKS.md section 5.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.store.dialect import is_postgres
from core.store.fulltext import query_words
from core.store.postgres import ranking_index
from core.store.sql import SqlDatabase

__all__ = [
    "COMMON_SHARE",
    "POSTGRES_INDEX",
    "RANKED_POOL",
    "SEARCH_INDEX",
    "FullTextIndex",
    "KeywordIndex",
    "Step",
    "TsvectorIndex",
    "fts5_rows",
    "index_for",
    "narrowing_steps",
    "searched_alternatives",
]

# Alternatives, each the words a chunk must all hold: [["a", "b"]] is a AND b; [["a"], ["b"]] is a OR b.
Step = list[list[str]]

# ts_rank's normalisation: the rank divided by 1 + the log of the chunk's length, as BM25 weighs length.
_RANK_NORMALISATION = 1
# A word rarer than every one the statistics keep: this share of the rarest kept share. Without statistics,
# every word has the same weight (any positive share would do).
_RARER_THAN_KEPT = 0.5
_NO_STATISTICS = 0.001
# The any-word step leaves out a word in more than this share of the chunks while rarer ones remain.
COMMON_SHARE = 0.05
_COMMON_WEIGHT = -math.log(COMMON_SHARE)
# A step ranks this many of the index's best matches first (SQLite: FTS5's own ranking, before any chunk is
# read; PostgreSQL with rum: the first it hands out), then the channels' among them.
RANKED_POOL = 200


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
    merged by BM25 score), and how a search becomes that index's words.

    ``counted_from``: a table of at least this many rows has its any-word step's common words counted and
    left out (:meth:`searched`); below it every match is ranked (a few thousand at most: a few ms)."""

    tables: tuple[str, ...]
    words: Callable[[str], list[str]]
    counted_from: int = 4_000

    @staticmethod
    def match(step: Step) -> str:
        if len(step) == 1:
            return fts5_match(step[0], "AND")
        if all(len(words) == 1 for words in step):
            return fts5_match([words[0] for words in step], "OR")
        return " OR ".join(f"({fts5_match(words, 'AND')})" for words in step)

    def ranked(self, db: SqlDatabase, step: Step, channels: Sequence[str], limit: int) -> list[tuple[int, float]]:
        found: list[tuple[int, float]] = []
        for table in self.tables:
            match = self.match(self.searched(db, table, step))
            pooled = self._pooled(db, table, match, channels, limit)
            found += self._all(db, table, match, channels, limit) if pooled is None else pooled
        return sorted(found, key=lambda row: (row[1], row[0]))[:limit]

    def searched(self, db: SqlDatabase, table: str, step: Step) -> Step:
        """The alternatives of ``step`` ranked in ``table``: in the any-word step, as on PostgreSQL
        (:func:`searched_alternatives`), a word held by more than :data:`COMMON_SHARE` of the table's chunks
        is left out while a rarer one remains. Ranking a match costs about ten times what counting it does,
        and a count stops past the share: at 100k chunks the slowest of bench.search_backends' questions
        ranked 46,000 matches in its any-word step, where counting a word stops at 5,001 (0.6 ms).

        Each word's share is counted in the table (FTS5 keeps no document frequencies to read), of its
        rows as FTS5 records them (:func:`fts5_rows`). A chunk holding a rare word and a common one is then
        scored by the rare one alone (PostgreSQL adds the common word's small weight too)."""
        if len(step) < 2 or any(len(alternative) != 1 for alternative in step):
            return step
        rows = fts5_rows(db, table)
        if rows < max(self.counted_from, 1):
            return step
        past = math.floor(rows * COMMON_SHARE) + 1  # a count that reaches it: the word is common
        words = [alternative[0] for alternative in step]
        shares = [
            db.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)",
                [fts5_match([word], "AND"), past],
            ).fetchone()[0]
            / rows
            for word in words
        ]
        return searched_alternatives(step, [-math.log(max(share, 1 / rows)) for share in shares], words)

    @staticmethod
    def _pooled(
        db: SqlDatabase, table: str, match: str, channels: Sequence[str], limit: int
    ) -> list[tuple[int, float]] | None:
        """The table's best :data:`RANKED_POOL` matches in the whole index (FTS5 ranks them from its own
        data, reading no chunk), then those of the channels among them; None when those may not be the
        channels' best ``limit``: fewer than that among a pool that was full.

        Exact otherwise: a chunk of the channels missing from a full pool ranks below every chunk in it, so
        below ``limit`` of the channels' own. Joining every match to its chunk and file first was most of
        a search at a million chunks (45,000 matches: 120–145 ms, against 45 ms for FTS5's ranking alone)."""
        pool = max(RANKED_POOL, limit)
        best = db.execute(
            f"SELECT rowid, bm25({table}) AS score FROM {table} WHERE {table} MATCH ? ORDER BY score LIMIT ?",
            [match, pool],
        ).fetchall()
        scores = {int(r[0]): float(r[1]) for r in best}
        if not scores:
            return []
        kept = db.execute(
            f"SELECT chunks.id FROM chunks JOIN files ON files.id = chunks.file_id AND files.status = 'completed'"
            f" WHERE chunks.id IN ({_marks(list(scores))}) AND chunks.channel IN ({_marks(channels)})",
            [*scores, *channels],
        ).fetchall()
        if len(best) == pool and len(kept) < limit:
            return None
        return [(int(r[0]), scores[int(r[0])]) for r in kept]

    @staticmethod
    def _all(db: SqlDatabase, table: str, match: str, channels: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """The channels' best ``limit`` matches of the table, every match joined to its chunk first."""
        rows = db.execute(
            f"SELECT chunks.id, matched.score FROM"
            f" (SELECT rowid, bm25({table}) AS score FROM {table} WHERE {table} MATCH ?) AS matched"
            " JOIN chunks ON chunks.id = matched.rowid"
            " JOIN files ON files.id = chunks.file_id AND files.status = 'completed'"
            f" WHERE chunks.channel IN ({_marks(channels)}) ORDER BY matched.score LIMIT ?",
            [match, *channels, limit],
        ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]


def fts5_rows(db: SqlDatabase, table: str) -> int:
    """How many rows an FTS5 table holds, read from the record FTS5 keeps for BM25 (the first varint of its
    averages record, ``{table}_data`` row 1), not counted: one row read whatever the table's size."""
    row = db.execute(f"SELECT block FROM {table}_data WHERE id = 1").fetchone()
    block = bytes(row[0]) if row is not None and row[0] is not None else b""
    value = 0
    for i, byte in enumerate(block[:9]):  # SQLite's varint: 7 bits a byte, big-endian; the ninth byte whole
        if i == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value
    return 0


def tsquery_text(step: Step) -> str:
    """A step as ``to_tsquery`` input: each word one quoted lexeme (a quote doubled, a backslash escaped), so
    nothing in it is read as tsquery syntax; ``&`` within an alternative, ``|`` between them."""

    def lexeme(word: str) -> str:
        return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"

    return " | ".join("(" + " & ".join(lexeme(word) for word in words) + ")" for words in step)


# English chunks are matched (and ranked) by the step in the english configuration, the others in simple:
# the two halves of m026's column, as SQLite's two tables (each with a ranking index of its own, whose
# predicate is the half's condition here word for word). The query is a value of the FROM list, so the
# index is searched with it as with a constant.
_TSVECTOR_HALVES = tuple((config, f"chunks.{which}") for config, which in ranking_index.HALVES.items())

# Each word's weight in each configuration, -ln(the share of chunks holding its lexeme), from the column's
# statistics, and whether the ranking index is there: (word, weight in english, weight in simple, index) for
# the words given as one text[] parameter.
_WEIGHTS_SQL = f"""
WITH kept AS (
    SELECT most_common_elems::text::text[] AS lexemes, most_common_elem_freqs AS shares
    FROM pg_stats
    WHERE schemaname = current_schema() AND tablename = 'chunks' AND attname = 'search_vector'
    LIMIT 1
), floor AS (
    SELECT COALESCE(
        (SELECT shares[array_length(lexemes, 1) + 1] * {_RARER_THAN_KEPT} FROM kept), {_NO_STATISTICS}
    ) AS share
)
SELECT word,
    -ln(COALESCE((
        SELECT kept.shares[array_position(kept.lexemes, lexeme.lexeme)]
        FROM kept, unnest(to_tsvector('english', word)) AS lexeme LIMIT 1
    ), (SELECT share FROM floor))),
    -ln(COALESCE((
        SELECT kept.shares[array_position(kept.lexemes, lexeme.lexeme)]
        FROM kept, unnest(to_tsvector('simple', word)) AS lexeme LIMIT 1
    ), (SELECT share FROM floor))),
    {ranking_index.present_sql}
FROM unnest(?::text[]) AS word
"""


def rank_sql(config: str, count: int) -> str:
    """The score of a chunk (``matched.vector``) for ``count`` words: minus the sum of each word's weight
    times its ``ts_rank`` in the chunk; parameters: weight, word (as ``to_tsquery`` text), for each word."""
    return (
        "-("
        + " + ".join([f"? * ts_rank(matched.vector, to_tsquery('{config}', ?), {_RANK_NORMALISATION})"] * count)
        + ")"
    )


@dataclass(frozen=True)
class TsvectorIndex:
    """PostgreSQL's full-text index over the chunks: their ``search_vector`` (m026) and its GIN index."""

    words: Callable[[str], list[str]]

    @staticmethod
    def weights(db: SqlDatabase, words: Sequence[str]) -> tuple[dict[str, tuple[float, float]], bool]:
        """How rare each word is, as (its weight among English chunks, among the others); and whether the
        ranking index (core/store/postgres/ranking_index.py) is there."""
        rows = db.execute(_WEIGHTS_SQL, [list(words)]).fetchall()
        indexed = bool(rows and rows[0][3])
        return {str(word): (float(english), float(simple)) for word, english, simple, _ in rows}, indexed

    def ranked(self, db: SqlDatabase, step: Step, channels: Sequence[str], limit: int) -> list[tuple[int, float]]:
        sql, parameters = self.statement(db, step, channels, limit)
        with db.atomic():
            # The planner prices ``@@`` as a cheap operator, but on a sequential scan it decompresses every
            # chunk's tsvector (kilobytes each, kept out of line): with a few percent of chunks matching
            # it chose that scan, 97 ms at 30k chunks against 2 ms through the GIN index. Here it never does.
            db.execute("SET LOCAL enable_seqscan = off")
            rows = db.execute(sql, parameters).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def statement(self, db: SqlDatabase, step: Step, channels: Sequence[str], limit: int) -> tuple[str, list[object]]:
        """The SQL of one step's ranking and its parameters (the words' weights read first)."""
        words = list(dict.fromkeys(word for words in step for word in words))
        weights, indexed = self.weights(db, words)
        searched = [searched_alternatives(step, [weights[w][half] for w in words], words) for half in (0, 1)]

        # With the ranking index, only the chunks it hands out first are read and scored: best first by
        # rum's own rank for any of the searched words (how often each occurs, its length; every word
        # weighing the same), the weighted rank then ordering those. With weights, rum's first
        # RANKED_POOL held 94.8 % of the exact top 5 in bench.search_backends' questions (BENCHMARKS 4.4).
        def pool(config: str) -> str:
            if not indexed:
                return ""
            return f" ORDER BY chunks.search_vector <=> to_tsquery('{config}', ?) LIMIT {max(RANKED_POOL, limit)}"

        # Each chunk's vector is read (and decompressed) once, in the inner query, then ranked for every
        # word from that copy: ``|| ''`` makes it a value of its own, and OFFSET 0 keeps the inner query
        # from being folded into the outer one.
        halves = " UNION ALL ".join(
            f"SELECT matched.id, {rank_sql(config, len(words))} AS score FROM ("
            "SELECT chunks.id, chunks.search_vector || ''::tsvector AS vector"
            f" FROM to_tsquery('{config}', ?) AS query, chunks"
            " JOIN files ON files.id = chunks.file_id AND files.status = 'completed'"
            f" WHERE chunks.search_vector @@ query AND {which} AND chunks.channel IN ({_marks(channels)})"
            f"{pool(config)} OFFSET 0) AS matched"
            for config, which in _TSVECTOR_HALVES
        )
        parameters: list[object] = []
        for half, _ in enumerate(_TSVECTOR_HALVES):
            parameters += [value for word in words for value in (weights[word][half], tsquery_text([[word]]))]
            parameters += [tsquery_text(searched[half]), *channels]
            if indexed:
                any_word = list(dict.fromkeys(word for words in searched[half] for word in words))
                parameters.append(tsquery_text([[word] for word in any_word]))
        return f"SELECT id, score FROM ({halves}) AS ranked ORDER BY score, id LIMIT ?", [*parameters, limit]


def searched_alternatives(step: Step, weights: Sequence[float], words: Sequence[str]) -> Step:
    """The alternatives of ``step`` whose chunks are ranked, ``weights`` being ``words``' weights.

    All of them, except in the any-word step: there a word held by more than :data:`COMMON_SHARE` of the
    chunks ("has", "by" in text the english configuration does not stem) would bring most of the channel to be
    ranked (470 ms at 100k chunks for one such question) for chunks that hold nothing but it, and those
    rank last anyway by its small weight; so while a rarer word is left, only the rarer words' chunks
    are ranked (each still scored by every word it holds)."""
    if len(step) < 2 or any(len(alternative) != 1 for alternative in step):
        return step
    weight = dict(zip(words, weights, strict=True))
    rarer = [alternative for alternative in step if weight[alternative[0]] >= _COMMON_WEIGHT]
    return rarer or step


# m025_multilingual_search: CJK as bigrams; English chunks Porter-stemmed, the others not (core/store/fulltext.py).
SEARCH_INDEX = KeywordIndex(("chunks_search", "chunks_search_plain"), query_words)
# m026_postgres_full_text: the same words, English chunks stemmed by the english configuration.
POSTGRES_INDEX = TsvectorIndex(query_words)


def index_for(db: SqlDatabase) -> FullTextIndex:
    """The store's full-text index on this connection's engine."""
    return POSTGRES_INDEX if is_postgres(db) else SEARCH_INDEX
