"""A press on the feedback buttons under an answer (bots/slack/render.py ``feedback_blocks``): the vote is
stored with the run (core/feedback.py), one per person, changed by pressing the other button, and the
person who pressed is told so in a message only they see."""

from __future__ import annotations

import logging
from typing import Any

from bots.slack.adapter import channel_key
from core.models import Author
from core.service import Threadline

__all__ = ["FeedbackButtons"]

_log = logging.getLogger(__name__)

NOT_RECORDED = "I could not record your feedback just now. Try again in a moment."


class FeedbackButtons:
    """The ``threadline_feedback`` action's listener."""

    def __init__(self, service: Threadline) -> None:
        self._service = service

    async def on_press(self, ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        vote, _, run_id = str(action.get("value") or "").partition(":")
        user = str((body.get("user") or {}).get("id") or "")
        team = str((body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") or "")
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        scope = channel_key(team, channel) if team and channel else None
        person = Author(id=user, key=f"slack:{user}" if user else "")
        try:
            result = await self._service.feedback.vote(run_id, person, vote, scope=scope)
            text = result.message
        except Exception as exc:  # the database is down: the person hears it, the log says why
            _log.warning("could not record feedback on run %s: %s: %s", run_id[:60], type(exc).__name__, exc)
            text = NOT_RECORDED
        await respond(text=text, response_type="ephemeral", replace_original=False)
