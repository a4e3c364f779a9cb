"""Words for the full-text index in any language: what is indexed for a chunk, and what a search looks for.

SQLite's ``unicode61`` tokenizer splits text at spaces and punctuation, which Chinese and Japanese do not
have (and Korean writes particles onto its words): "東京の売上は" would be one token, and 東京 would find
nothing. So runs of CJK characters are indexed as overlapping bigrams of each script's run (Han,
Hiragana, Katakana, Hangul), as search engines without a dictionary do (Lucene's CJK analyzer):

    index_text("東京の売上は増加").split() == ["東京", "の", "売上", "は", "増加"]
    index_text("上海的销售额").split() == ["上海", "海的", "的销", "销售", "售额"]

A search's words go through the same split, so a bigram of the question is a word of the index.

The Porter stemmer knows only English: a chunk that reads as English (or as no language: code,
numbers) is stemmed by it, any other is indexed with case and accents folded and no stemming
(:func:`is_english`; two FTS5 tables, m025_multilingual_search). Measured in BENCHMARKS.md.
"""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "index_text", "is_english", "query_words", "search_words"]

_HAN = "\u3005\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_HIRAGANA = "\u3041-\u309f"
_KATAKANA = "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
# One run of one script: bigrams never straddle a change of script (東京|の|売上).
_CJK_RUN = re.compile(f"[{_HAN}]+|[{_HIRAGANA}]+|[{_KATAKANA}]+|[{_HANGUL}]+")
_ANY_CJK = re.compile(f"[{_HAN}{_HIRAGANA}{_KATAKANA}{_HANGUL}]")
_HIRAGANA_RUN = re.compile(f"[{_HIRAGANA}]+")
_WORD = re.compile(r"\w+", re.UNICODE)

# Words that match nearly every chunk: they cost the most to rank and tell BM25 almost nothing.
_STOPWORD_TEXT = """a about above after again all am an and any are as at be because been before being below
    between both
    but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or
    other our ours out over own same she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which while who whom why
    will with would you your yours"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


# Words common in English and rare in other languages written in Latin letters (so not "in", "an", "on",
# "so", "was", "die", "also"): their share of a text's words tells English from the rest.
_ENGLISH_MARKERS = frozenset(
    "the and of to is that for with this are be or by it you not from which if can have has were its".split()  # noqa: SIM905
)
_ENGLISH_SHARE = 0.05  # English prose runs at 20-30 %, reference text with code at 8-15 %
_LANGUAGE_SAMPLE = 4000  # characters looked at
_OTHER_LETTERS_SHARE = 0.02  # words with letters beyond ASCII in text that is not English


def is_english(text: str) -> bool:
    """Whether a chunk should be stemmed as English (Porter): it reads as English, or as no language at all
    (code, numbers, names in plain ASCII, stemmed as before); not text with other letters and few English words.
    """
    words = _WORD.findall(text[:_LANGUAGE_SAMPLE].lower())
    if not words:
        return True
    if sum(word in _ENGLISH_MARKERS for word in words) >= _ENGLISH_SHARE * len(words):
        return True
    return sum(not word.isascii() for word in words) < _OTHER_LETTERS_SHARE * len(words)


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) < 3 else [run[i : i + 2] for i in range(len(run) - 1)]


def _spaced(match: re.Match[str]) -> str:
    return " " + " ".join(_bigrams(match.group())) + " "


def index_text(text: str) -> str | None:
    """The text as the full-text index should see it, or None when that is the text itself (no CJK in it)."""
    if not _ANY_CJK.search(text):
        return None
    return _CJK_RUN.sub(_spaced, text)


def search_words(text: str) -> list[tuple[str, bool]]:
    """The index's words in a search, lower-cased, in order, repeats included, CJK runs as bigrams; each with
    whether it carries content: English function words and runs of Hiragana (in a Japanese question mostly
    particles and endings: の, は, ですか) do not."""
    words: list[tuple[str, bool]] = []
    for word in _WORD.findall(text.lower()):
        if _ANY_CJK.search(word) is None:
            words.append((word, word not in STOPWORDS))
            continue
        start = 0
        for run in _CJK_RUN.finditer(word):
            if run.start() > start:
                words.append((word[start : run.start()], True))
            content = _HIRAGANA_RUN.fullmatch(run.group()) is None
            words.extend((bigram, content) for bigram in _bigrams(run.group()))
            start = run.end()
        if start < len(word):
            words.append((word[start:], True))
    return words


def query_words(text: str, limit: int = 32) -> list[str]:
    """The words of a search, once each, function words left out (unless nothing else is left):
    東京の売上はいくらですか looks for 東京 and 売上."""
    words = list(dict.fromkeys(search_words(text)))
    content = [word for word, carries in words if carries]
    return list(dict.fromkeys(content or [word for word, _ in words]))[:limit]
