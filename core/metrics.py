"""Prometheus metrics: what operators graph and alert on. One registry per service, no global state.

The service feeds :meth:`Metrics.observe` every event it emits, with the assistants file's price table
(cost by channel is counted when a run ends, with its tokens); at each scrape it sets the queue depths from
the database with :meth:`Metrics.set_queues`. Adapters count platform API errors
and retries with :meth:`Metrics.platform_error` and :meth:`Metrics.platform_retry`; the knowledge
base counts files with :meth:`Metrics.file_indexed`, core/feedback.py votes on answers with
:meth:`Metrics.feedback_given`. ``/metrics`` serves :meth:`Metrics.exposition`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.events import Event
from core.models import Run, scope_of
from core.run_slots import RunSlots
from core.store.queue import MAX_THREADS, QueueDepths
from core.tools import TOOL_FAILED_PREFIX
from core.usage import ModelUsage, Price, cost

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_RUN_SECONDS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
_FIRST_TOKEN_SECONDS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 60)


class Metrics:
    """The service's Prometheus series, on a registry of their own (one per service: tests run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter("threadline_runs", "Runs that ended, by final status.", ["status"], registry=r)
        self.run_seconds = Histogram(
            "threadline_run_duration_seconds",
            "Time from a run's start to its end (approval waits included).",
            buckets=_RUN_SECONDS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "threadline_time_to_first_token_seconds",
            "Time from a run's start to the first answer text from the model.",
            buckets=_FIRST_TOKEN_SECONDS,
            registry=r,
        )
        self.tool_calls = Counter(
            "threadline_tool_calls",
            "Finished tool calls, by tool and outcome (ok, error, denied).",
            ["tool", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "threadline_tokens",
            "Model tokens used by ended runs, by channel and direction (input, output).",
            ["channel", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "threadline_cost",
            "Model cost of ended runs, by channel and currency, at the assistants file's [prices];"
            " tokens of a model without a price are not counted here.",
            ["channel", "currency"],
            registry=r,
        )
        self.queued_runs = Gauge("threadline_queued_runs", "Runs waiting for their thread's lane.", registry=r)
        self.runs_waiting_for_slot = Gauge(
            "threadline_runs_waiting_for_slot",
            "Threads of this process whose next run waits for a slot (core/run_slots.py).",
            registry=r,
        )
        self.run_slots = Gauge(
            "threadline_run_slots",
            "Runs this process executes at once at most now: the bound adapts to its event loop's lag,"
            " up to THREADLINE_CONCURRENT_RUNS (0: unbounded).",
            registry=r,
        )
        self.thread_queued_runs = Gauge(
            "threadline_thread_queued_runs",
            "Runs waiting for their thread's lane (status queued; the run in progress or awaiting approval"
            f" is not counted), per thread that has any, the deepest {MAX_THREADS} threads at most.",
            ["channel", "thread"],
            registry=r,
        )
        self.budget_refusals = Counter(
            "threadline_budget_refusals",
            "Runs refused before they started, and model calls refused midway, by the budget that was full"
            " (scope channel or user, period day or month).",
            ["scope", "period", "when"],
            registry=r,
        )
        self.files = Counter(
            "threadline_files",
            "Files the knowledge base finished, by result (indexed, failed).",
            ["result"],
            registry=r,
        )
        self.platform_errors = Counter(
            "threadline_platform_errors",
            "Calls to a chat platform's API that failed, by platform and kind.",
            ["platform", "kind"],
            registry=r,
        )
        self.feedback = Counter(
            "threadline_feedback",
            "Votes people gave answers with the feedback buttons, by vote (up, down); a changed vote counts"
            " again as its new kind.",
            ["vote"],
            registry=r,
        )
        self.platform_retries = Counter(
            "threadline_platform_retries",
            "Calls to a chat platform's API that were retried, by platform and kind.",
            ["platform", "kind"],
            registry=r,
        )
        self._started: dict[str, float] = {}  # run id -> monotonic start, until its first text arrives

    # -- runs -----------------------------------------------------------------------------------

    def observe(self, run: Run, event: Event, *, prices: Mapping[str, Price] | None = None) -> None:
        """Count what ``event`` says about ``run`` (``run`` as stored when the event was emitted).

        ``prices``: the assistants file's price table, to count what an ending run cost (None: not counted).
        """
        match event.type:
            case "run_started":
                self._started[run.id] = time.monotonic()
            case "text_delta":
                if (start := self._started.pop(run.id, None)) is not None:
                    self.first_token_seconds.observe(time.monotonic() - start)
            case "approval_required":  # time spent waiting for people is not the model's
                self._started.pop(run.id, None)
            case "tool_call_finished":
                self.tool_calls.labels(event.tool or "unknown", _tool_outcome(event.output)).inc()
            case "run_failed" if event.handed_over:  # not an end: it is counted where it ends
                self._started.pop(run.id, None)
            case "run_completed" | "run_failed":
                self._ended(run, "completed" if event.type == "run_completed" else event.status, prices)
            case _:
                pass

    def _ended(self, run: Run, status: str, prices: Mapping[str, Price] | None) -> None:
        self._started.pop(run.id, None)
        self.runs.labels(status).inc()
        if run.started_at is not None and run.completed_at is not None:
            self.run_seconds.observe(max(run.completed_at - run.started_at, 0.0))
        # by the channel the key names: a Slack thread counts in its channel (a series per thread would never end)
        channel = scope_of(run.channel)
        if run.input_tokens:
            self.tokens.labels(channel, "input").inc(run.input_tokens)
        if run.output_tokens:
            self.tokens.labels(channel, "output").inc(run.output_tokens)
        if prices is not None and (run.input_tokens or run.output_tokens):
            usage = ModelUsage(run.model or "unknown model", run.input_tokens, run.output_tokens)
            for currency, amount in cost([usage], prices).amounts.items():
                self.cost.labels(channel, currency).inc(amount)

    def watch_run_slots(self, slots: RunSlots) -> None:
        """Read the run slots' bound and waiting threads at every scrape."""
        self.runs_waiting_for_slot.set_function(lambda: slots.waiting)
        self.run_slots.set_function(lambda: slots.limit)

    def set_queues(self, depths: QueueDepths) -> None:
        """The queue depths as the database has them now: threads no longer waiting lose their series."""
        self.queued_runs.set(depths.total)
        self.thread_queued_runs.clear()
        for thread in depths.threads:
            self.thread_queued_runs.labels(thread.channel, thread.thread_id).set(thread.queued)

    # -- files and platforms ---------------------------------------------------------------------

    def file_indexed(self, ok: bool) -> None:
        self.files.labels("indexed" if ok else "failed").inc()

    def feedback_given(self, vote: str) -> None:
        """Someone rated an answer (``vote``: up or down), or changed their rating to ``vote``."""
        self.feedback.labels(vote).inc()

    def platform_error(self, platform: str, kind: str) -> None:
        """A platform API call failed (``kind``: a short, bounded word such as ``ratelimited`` or ``http``)."""
        self.platform_errors.labels(platform, kind).inc()

    def platform_retry(self, platform: str, kind: str) -> None:
        self.platform_retries.labels(platform, kind).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def _tool_outcome(output: str) -> str:
    if output.startswith(TOOL_FAILED_PREFIX):
        return "error"
    if " denied this call to " in output:  # the rejection message core.service gives the model
        return "denied"
    return "ok"
