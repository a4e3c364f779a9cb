"""How a long-running entry point waits to be told to stop (Ctrl-C, or SIGTERM from a process manager)."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["stop_requested"]


async def stop_requested() -> None:
    """Return once SIGINT or SIGTERM arrives; until then the signals stop nothing else."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
