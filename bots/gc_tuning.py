"""The cyclic garbage collector, set for a process that serves many runs at once.

CPython frees most objects by reference counting; the cyclic collector finds the rest, and a full
collection walks every object the process holds, with the event loop stopped meanwhile. With its default
thresholds (700, 10, 10), a process streaming 1,000 answers at once made 11-54 collections of 5 ms or more
in a 10-17 s load, the longest 117-209 ms, 0.8-2.1 s in all: most of the event loop's lag at p99
(BENCHMARKS.md section 15.1, ``bench.replicas``). Two changes, once the process is up:

- :func:`gc.freeze` moves what the start created (modules, libraries, settings, the platforms' clients:
  nothing that becomes garbage) out of every later collection's walk;
- the thresholds become :data:`THRESHOLDS`: a young collection after 50,000 new container objects rather
  than 700, and a full one considered after 100 middle ones rather than 10 (CPython still skips it
  until the objects promoted since the last one are a quarter of those it would walk).

Measured side by side on the same load: 9-12 collections of 5 ms or more, the longest 29-37 ms, 0.17-0.21 s
in all; CPU per answer down a fifth; memory at its peak within 5 % of before. Cycles are still freed,
in batches.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["THRESHOLDS", "settle_for_serving"]

_log = logging.getLogger(__name__)

THRESHOLDS = (50_000, 20, 100)


def settle_for_serving() -> None:
    """Freeze what the start made and raise the collector's thresholds (call once the process serves)."""
    gc.collect()  # what the start left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    _log.debug("garbage collector: %d objects frozen, thresholds %s", gc.get_freeze_count(), THRESHOLDS)
