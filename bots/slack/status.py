"""What a thread shows while the model works: Slack's thread status where Slack offers it, else the :eyes: reaction.

``assistant.threads.setStatus`` shows "Threadline is thinking…" under the thread: at a run's start, then
"is searching the files…" or "is running code…" (or the tool's name) while a tool runs, and it is
cleared (status ``""``) when the answer's text starts, while the run waits for an approval, and at the
end if it is still set. Slack offers it in assistant threads (the pane) and, for apps with its AI features,
in other threads too; elsewhere it refuses the call. Where it refuses, the run's question gets the :eyes:
reaction for as long as it is answered, as before.

Which places offer it is learnt from Slack's answers and kept in this process's memory (it is a cache:
at worst a process asks once more after a restart): a refusal of the thread (``invalid_thread_ts``)
marks that thread, any other refusal (a missing scope, a method this workspace lacks) the kind of place
(threads of direct messages, direct messages, channels). A failure that may pass (rate limit, Slack's own
error, no connection) costs that run its status, not the place. No call raises: an indicator is cosmetic.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.threads import Place
from core.metrics import Metrics

__all__ = ["THINKING", "THINKING_STATUS", "StatusSupport", "Working", "place_kind", "tool_status"]

_log = logging.getLogger(__name__)

THINKING = "eyes"  # the reaction where Slack offers no status
THINKING_STATUS = "is thinking…"
TOOL_STATUSES = {"file_search": "is searching the files…", "code_interpreter": "is running code…"}
REFUSED_THREADS = 2000  # threads remembered as refusing a status
# What Slack answers with HTTP 200 for a call that may work next time.
PASSING_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})

Kind = Literal["assistant thread", "direct message", "channel"]


def tool_status(tool: str) -> str:
    """The status while ``tool`` runs: Slack shows it after the app's name."""
    return TOOL_STATUSES.get(tool, f"is using {tool[:40]}…")


def place_kind(channel_id: str, in_thread: bool) -> Kind:
    """A thread of a direct message with the bot (where the assistant pane's threads are), a direct message's
    top level, or a channel (every answer there is in a thread)."""
    if channel_id.startswith("D"):
        return "assistant thread" if in_thread else "direct message"
    return "channel"


class StatusSupport:
    """Where ``assistant.threads.setStatus`` works, as this process has found; makes each run's :class:`Working`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._refused_kinds: dict[Kind, str] = {}  # kind -> Slack's error
        self._refused_threads: OrderedDict[tuple[str, str], None] = OrderedDict()

    def working(self, client: AsyncWebClient, place: Place, ts: str) -> Working:
        """The indicator, through ``client``, for a run answering the message ``ts`` at ``place``."""
        return self.at(client, place.channel_id, place.reply_in, ts, in_thread=place.in_thread)

    def at(self, client: AsyncWebClient, channel_id: str, thread_ts: str, ts: str, *, in_thread: bool) -> Working:
        """The indicator for a run answering the message ``ts`` in the thread ``thread_ts`` of ``channel_id``
        (``in_thread``: the message is a reply inside that thread, not its first message)."""
        return Working(self, client, self._metrics, channel_id, thread_ts, ts, place_kind(channel_id, in_thread))

    def offered(self, kind: Kind, channel_id: str, thread_ts: str) -> bool:
        return kind not in self._refused_kinds and (channel_id, thread_ts) not in self._refused_threads

    def refused(self, kind: Kind, channel_id: str, thread_ts: str, error: str) -> None:
        if error == "invalid_thread_ts":
            _log.debug("Slack has no status for thread %s in %s: the reaction instead", thread_ts, channel_id)
            self._refused_threads[(channel_id, thread_ts)] = None
            while len(self._refused_threads) > REFUSED_THREADS:
                self._refused_threads.popitem(last=False)
        elif kind not in self._refused_kinds:
            _log.info("no thread status in %ss here (%s): the :%s: reaction instead", kind, error, THINKING)
            self._refused_kinds[kind] = error


class Working:
    """One run's indicator: the thread's status, or the :eyes: reaction on the question where there is none."""

    def __init__(
        self,
        support: StatusSupport,
        client: AsyncWebClient,
        metrics: Metrics,
        channel_id: str,
        thread_ts: str,
        ts: str,
        kind: Kind,
    ) -> None:
        self._support = support
        self._client = client
        self._metrics = metrics
        self._channel = channel_id
        self._thread_ts = thread_ts
        self._ts = ts
        self._kind = kind
        self._mode: Literal["status", "reaction"] | None = None
        self._shown = ""  # the status shown now ("": none)

    @property
    def uses_status(self) -> bool:
        return self._mode == "status"

    async def start(self) -> None:
        """The run begins: "is thinking…", or the reaction where Slack offers no status."""
        if self._support.offered(self._kind, self._channel, self._thread_ts) and await self._set(THINKING_STATUS):
            self._mode = "status"
            return
        self._mode = "reaction"
        await self._react(add=True)

    async def tool(self, name: str) -> None:
        """A tool started."""
        if self._mode == "status":
            await self._set(tool_status(name))

    async def thinking(self) -> None:
        """The model works again (a decision was made on an approval)."""
        if self._mode == "status" and not self._shown:
            await self._set(THINKING_STATUS)

    async def quiet(self) -> None:
        """The answer's text started, or the run waits for people: no status."""
        if self._mode == "status" and self._shown:
            await self._set("")

    async def end(self) -> None:
        """The run ended (or this process stopped showing it)."""
        if self._mode == "status":
            await self.quiet()
        elif self._mode == "reaction":
            await self._react(add=False)
        self._mode = None

    async def clear(self) -> None:
        """What a process that stopped left of its run's indicator: no status, no reaction (nothing started here)."""
        if self._support.offered(self._kind, self._channel, self._thread_ts) and await self._set(""):
            return
        await self._react(add=False)

    async def _set(self, status: str) -> bool:
        if status == self._shown and self._mode == "status":
            return True
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._channel, thread_ts=self._thread_ts, status=status
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown")[:40]
            if exc.response.status_code >= 500 or error in PASSING_ERRORS:
                _log.info("setting the status of %s in %s failed: %s", self._thread_ts, self._channel, error)
                self._metrics.platform_error("slack", error)
            else:
                self._support.refused(self._kind, self._channel, self._thread_ts, error)
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.info("setting the status of %s in %s failed: %s", self._thread_ts, self._channel, exc)
            self._metrics.platform_error("slack", "connection")
            return False
        self._shown = status
        return True

    async def _react(self, *, add: bool) -> None:
        try:
            if add:
                await self._client.reactions_add(channel=self._channel, timestamp=self._ts, name=THINKING)
            else:
                await self._client.reactions_remove(channel=self._channel, timestamp=self._ts, name=THINKING)
        except SlackApiError as exc:  # a missing reaction is cosmetic
            _log.debug("reaction %s failed: %s", "add" if add else "remove", exc)
            self._metrics.platform_error("slack", str(exc.response.get("error") or "unknown")[:40])
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.debug("reaction %s failed: %s", "add" if add else "remove", exc)
            self._metrics.platform_error("slack", "connection")
