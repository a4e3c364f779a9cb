"""The runs this process is showing: one live ``RunHandle`` per run, every event counted in the metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from core.events import Event
from core.handles import RunHandle
from core.metrics import Metrics
from core.models import Run
from core.usage import Price

__all__ = ["RunHandles"]


class RunHandles:
    def __init__(self, metrics: Metrics, prices: Mapping[str, Price]) -> None:
        self._metrics = metrics
        self._prices = prices
        self._handles: dict[str, RunHandle] = {}
        self.on_end: Callable[[Run, Event], None] | None = None  # told of each run's last event

    def get(self, run: Run) -> RunHandle:
        """The run's handle (made on first use; its events start then)."""
        handle = self._handles.get(run.id)
        if handle is None:
            handle = self._handles[run.id] = RunHandle(run.id, run.channel)
        return handle

    def fresh(self, run: Run) -> RunHandle:
        """A new handle for the run, whose events start now (not with what nobody read before)."""
        handle = self._handles[run.id] = RunHandle(run.id, run.channel)
        return handle

    def emit(self, run: Run, event: Event) -> None:
        self._metrics.observe(run, event, prices=self._prices)
        handle = self.get(run)
        handle.put(event)
        if handle.done:
            self._handles.pop(run.id, None)
            if self.on_end is not None:
                self.on_end(run, event)

    def watched(self, run_id: str) -> bool:
        """Whether someone in this process holds the run's handle (an adapter showing it)."""
        return run_id in self._handles

    def run_ids(self) -> list[str]:
        return list(self._handles)
