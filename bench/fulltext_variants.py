"""Other full-text indexes over a benchmark's chunks, to measure beside the one the store keeps.

``today``: the index before m025_multilingual_search, ``porter unicode61`` over the chunk text as it is,
queried with the words of ``\\w+`` (a CJK run is one word). The others change one thing each. Each is an
FTS5 table the benchmark builds in its own database (:func:`build`), searched through the store's own
``FileStore.keyword_search`` (same narrowing, same BM25) with its ``index`` argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.store.files import KeywordIndex
from core.store.fulltext import STOPWORDS, index_text, query_words

__all__ = ["CURRENT", "VARIANTS", "Variant", "build"]

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK_SCRIPT_RUN = re.compile(
    "[\u3005\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[\u3041-\u309f]+|[\u30a0-\u30ff]+|[\uac00-\ud7af]+"
)


def today_words(text: str, limit: int = 32) -> list[str]:
    """The query words of the index before m025 (core/store/files.py as it was)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    content = [w for w in words if w not in STOPWORDS]
    return (content or words)[:limit]


def trigram_words(text: str, limit: int = 32) -> list[str]:
    """Words for a trigram index: each a substring to find, CJK split where the script changes; words of
    fewer than three characters cannot be found by a trigram index and are left out."""
    words: list[str] = []
    for word in today_words(text, limit=1000):
        words += [m.group() for m in _CJK_SCRIPT_RUN.finditer(word)] if _CJK_SCRIPT_RUN.search(word) else [word]
    return [w for w in dict.fromkeys(words) if len(w) >= 3][:limit]


@dataclass(frozen=True)
class Variant:
    name: str
    index: KeywordIndex
    tokenizer: str
    text: Callable[[str], str]  # what is indexed of a chunk's text


CURRENT = "CJK bigrams; Porter for English chunks, unicode61 for the rest (m025)"
VARIANTS = (
    Variant("porter unicode61 (today)", KeywordIndex(("bench_today",), today_words), "porter unicode61", str),
    Variant(
        "porter unicode61, CJK bigrams",
        KeywordIndex(("bench_porter_bigrams",), query_words),
        "porter unicode61 remove_diacritics 2",
        lambda text: index_text(text) or text,
    ),
    Variant(
        "unicode61, CJK bigrams, nothing stemmed",
        KeywordIndex(("bench_plain_bigrams",), query_words),
        "unicode61 remove_diacritics 2",
        lambda text: index_text(text) or text,
    ),
    Variant("trigram", KeywordIndex(("bench_trigram",), trigram_words), "trigram", str),
)


def build(db: Any, channel: str, variants: Sequence[Variant] = VARIANTS) -> None:
    """Create and fill each variant's table from the channel's chunks (a database of the benchmark's own)."""
    rows = db.execute("SELECT id, text FROM chunks WHERE channel = ?", [channel]).fetchall()
    for variant in variants:
        [table] = variant.index.tables
        db.execute(f"DROP TABLE IF EXISTS {table}")
        db.execute(f"CREATE VIRTUAL TABLE {table} USING fts5(text, tokenize='{variant.tokenizer}')")
        db.conn.executemany(
            f"INSERT INTO {table} (rowid, text) VALUES (?, ?)", [(r[0], variant.text(r[1])) for r in rows]
        )
