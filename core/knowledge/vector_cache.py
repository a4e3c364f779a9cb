"""Which channels' vectors stay in memory: least recently used by bytes, within a budget, without thrashing.

Plain LRU thrashes when two channels searched in turn do not fit together: each search evicts the
other, and every search pays a load. Here a value only evicts others when it has been asked for more
often lately than each of them: a tie keeps what is cached. Counts are kept per key and halved every
:data:`AGE_EVERY` lookups, so a channel nobody searches any more loses its place. And a value larger
than the whole budget is never cached (the caller searches it without keeping it: from its index
file, or read per query).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["AGE_EVERY", "VectorCache"]

V = TypeVar("V")

AGE_EVERY = 64  # lookups between halvings of every key's count
MAX_COUNTED = 4096  # keys whose counts are kept (cached or not)


@dataclass
class _Entry(Generic[V]):
    version: int
    value: V
    nbytes: int


class VectorCache(Generic[V]):
    """Values by key and version, their bytes at most ``budget``."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._uses: dict[str, float] = {}
        self._lookups = 0

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str, version: int) -> V | None:
        """The value cached for this version of ``key``, or None; counts as a use of ``key`` either way."""
        self._use(key)
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            return None
        self._entries.move_to_end(key)
        return entry.value

    def offer(self, key: str, version: int, value: V, nbytes: int) -> bool:
        """Keep ``value`` if it fits, or if what it would evict has been used less lately; whether it was kept."""
        self._entries.pop(key, None)
        if nbytes > self.budget:
            return False
        free = self.budget - self.nbytes
        victims: list[str] = []
        for other, entry in self._entries.items():  # least recently used first
            if free >= nbytes:
                break
            victims.append(other)
            free += entry.nbytes
        uses = self._uses.get(key, 0.0)
        if any(self._uses.get(v, 0.0) >= uses for v in victims):  # a tie keeps what is there
            return False
        for victim in victims:
            del self._entries[victim]
        self._entries[key] = _Entry(version, value, nbytes)
        return True

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def _use(self, key: str) -> None:
        self._uses[key] = self._uses.get(key, 0.0) + 1.0
        self._lookups += 1
        if self._lookups % AGE_EVERY == 0:
            self._uses = {k: n / 2 for k, n in self._uses.items() if n >= 0.25 or k in self._entries}
        if len(self._uses) > MAX_COUNTED:
            for k in sorted(self._uses, key=self._uses.__getitem__)[: len(self._uses) - MAX_COUNTED]:
                if k not in self._entries:
                    del self._uses[k]
