"""Which channels' vectors stay in memory (pure logic: core/knowledge/vector_cache.py)."""

from __future__ import annotations

from core.knowledge.vector_cache import AGE_EVERY, VectorCache


def test_values_within_the_budget_are_kept_and_a_new_version_is_a_miss() -> None:
    cache: VectorCache[str] = VectorCache(budget=100)
    assert cache.get("a", 0) is None
    assert cache.offer("a", 0, "A", 40)
    assert cache.get("b", 0) is None
    assert cache.offer("b", 0, "B", 40)
    assert cache.get("a", 0) == "A"
    assert cache.get("b", 0) == "B"
    assert cache.get("a", 1) is None  # the channel changed since
    assert cache.nbytes == 80


def test_a_value_larger_than_the_budget_is_never_kept_and_evicts_nothing() -> None:
    cache: VectorCache[str] = VectorCache(budget=100)
    cache.get("small", 0)
    cache.offer("small", 0, "S", 30)
    cache.get("huge", 0)
    assert not cache.offer("huge", 0, "H", 101)
    assert "huge" not in cache
    assert cache.get("small", 0) == "S"


def test_two_channels_searched_in_turn_that_do_not_fit_together_do_not_thrash() -> None:
    cache: VectorCache[str] = VectorCache(budget=100)
    loads = 0
    for _ in range(50):
        for key, size in (("big", 70), ("small", 40)):
            if cache.get(key, 0) is None:
                loads += 1
                cache.offer(key, 0, key, size)
    assert "big" in cache  # kept: the small channel is searched no more often, so it does not push it out
    assert loads == 51  # the big one loaded once; the small one, not kept, each time (plain LRU: 100 loads)


def test_a_channel_searched_more_often_takes_the_place_of_one_searched_less() -> None:
    cache: VectorCache[str] = VectorCache(budget=100)
    cache.get("big", 0)
    cache.offer("big", 0, "B", 70)
    for _ in range(3):
        if cache.get("small", 0) is None:
            cache.offer("small", 0, "S", 40)
    assert "small" in cache
    assert "big" not in cache


def test_a_channel_nobody_searches_any_more_loses_its_place() -> None:
    cache: VectorCache[str] = VectorCache(budget=100)
    for _ in range(10):
        if cache.get("old", 0) is None:
            cache.offer("old", 0, "O", 70)
    for _ in range(AGE_EVERY * 5):
        cache.get("elsewhere", 0)  # other lookups age every count
    cache.get("new", 0)
    assert cache.offer("new", 0, "N", 40)
    assert "old" not in cache


def test_the_least_recently_used_go_first() -> None:
    cache: VectorCache[str] = VectorCache(budget=100)
    for key in ("a", "b", "c"):
        cache.get(key, 0)
        cache.offer(key, 0, key, 30)
    cache.get("a", 0)  # b is now the least recently used
    cache.get("d", 0)
    cache.get("d", 0)
    assert cache.offer("d", 0, "d", 30)
    assert "b" not in cache
    assert {"a", "c", "d"} <= {k for k in ("a", "b", "c", "d") if k in cache}
