"""``python -m bots`` with an event-loop lag probe: one replica of :mod:`bench.replicas`.

    python -m bench.replica LAG_FILE        (started by :mod:`bench.replicas`, not by hand)

Runs the ``bots`` package's ``__main__`` unchanged, in this process (:func:`runpy.run_module`), with
one addition: when asyncio makes the event loop, a daemon thread starts that every 10 ms hands the
loop a callback (``call_soon_threadsafe``) and writes to ``LAG_FILE`` one line ``<monotonic> <lag>``
per callback: how long the callback waited for the loop to run it, in seconds. The bot exposes no
event-loop lag series on ``/metrics`` (core/metrics.py), so this is measured from outside the code
under test; the thread costs 100 wake-ups a second and writes nothing on the loop's thread.
"""

from __future__ import annotations

import asyncio
import gc
import runpy
import sys
import threading
import time

__all__ = ["LagPolicy"]

INTERVAL = 0.010


def _watch(loop: asyncio.AbstractEventLoop, path: str) -> None:
    with open(path, "w", buffering=1) as out:
        while not loop.is_closed():
            ran = threading.Event()
            asked = time.monotonic()
            try:
                loop.call_soon_threadsafe(ran.set)
            except RuntimeError:  # the loop closed in between
                return
            while not ran.wait(1.0):
                if loop.is_closed():
                    return
            out.write(f"{asked:.6f} {time.monotonic() - asked:.6f}\n")
            time.sleep(INTERVAL)


class LagPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy, whose new loops are watched by a lag thread writing to ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        threading.Thread(target=_watch, args=(loop, self.path), name="loop lag probe", daemon=True).start()
        return loop


def _record_gc(path: str) -> None:
    """Append ``<monotonic> <generation> <seconds>`` to ``path`` for every cyclic collection that took 5 ms or more."""
    out = open(path, "w", buffering=1)  # noqa: SIM115 - open for the life of the process
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.monotonic()
        elif (took := time.monotonic() - started[0]) >= 0.005:
            out.write(f"{started[0]:.6f} {info['generation']} {took:.6f}\n")

    gc.callbacks.append(callback)


def main() -> None:
    path = sys.argv[1]
    del sys.argv[1]
    _record_gc(path + ".gc")
    asyncio.set_event_loop_policy(LagPolicy(path))
    runpy.run_module("bots", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
