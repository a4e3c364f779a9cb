"""How a keyword search narrows, and what PostgreSQL's any-word step ranks (core/store/keywords.py): pure logic."""

from __future__ import annotations

import math

from core.store.keywords import COMMON_SHARE, narrowing_steps, searched_alternatives

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
