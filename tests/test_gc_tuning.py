"""The collector's settings for a serving process (bots/gc_tuning.py): plain calls on this process's gc."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bots.gc_tuning import THRESHOLDS, settle_for_serving


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_what_the_start_made_is_frozen_its_garbage_freed_and_the_thresholds_raised() -> None:
    kept = Node()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector frees
    gone = weakref.ref(a)
    del a, b

    settle_for_serving()

    assert gone() is None  # collected before the freeze, not kept forever
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # out of every later collection's walk
    assert gc.get_threshold() == THRESHOLDS
