"""Attribute filters of vector store search (pure logic)."""

from __future__ import annotations

from core.attribute_filters import passes

FILE = {"team": "office", "year": 2025, "draft": False}


def test_comparisons() -> None:
    assert passes({"type": "eq", "key": "team", "value": "office"}, FILE)
    assert not passes({"type": "eq", "key": "year", "value": "2025"}, FILE)  # a string is not the number
    assert passes({"type": "eq", "key": "year", "value": 2025.0}, FILE)
    assert passes({"type": "ne", "key": "team", "value": "people"}, FILE)
    assert passes({"type": "gt", "key": "year", "value": 2024}, FILE)
    assert not passes({"type": "lt", "key": "year", "value": 2025}, FILE)
    assert passes({"type": "lte", "key": "team", "value": "office"}, FILE)
    assert not passes({"type": "gt", "key": "team", "value": 1}, FILE)  # across kinds: never
    assert passes({"type": "eq", "key": "draft", "value": False}, FILE)
    assert not passes({"type": "eq", "key": "draft", "value": 0}, FILE)  # a bool is not a number


def test_a_missing_key_passes_only_the_negations() -> None:
    assert not passes({"type": "eq", "key": "owner", "value": "x"}, FILE)
    assert passes({"type": "ne", "key": "owner", "value": "x"}, FILE)
    assert passes({"type": "nin", "key": "owner", "value": ["x"]}, None)


def test_lists_and_compounds() -> None:
    assert passes({"type": "in", "key": "year", "value": [2024, 2025]}, FILE)
    assert not passes({"type": "nin", "key": "year", "value": [2025]}, FILE)
    both = {
        "type": "and",
        "filters": [{"type": "eq", "key": "team", "value": "office"}, {"type": "gt", "key": "year", "value": 2025}],
    }
    assert not passes(both, FILE)
    assert passes(both | {"type": "or"}, FILE)
