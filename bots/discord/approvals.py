"""Approve / Deny buttons for a tool call that needs a person's go-ahead.

The buttons carry the approval id in their custom ids (``threadline:approve:<id>``), and the
bot listens for that pattern with a :class:`discord.ui.DynamicItem`: nothing is kept in
memory per message, so buttons posted before a restart still work after it.
Only someone who can see the channel may press; the message is then edited to say who
decided and what, and the buttons go.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import ui

from bots.discord.people import person
from bots.formatting import pretty_arguments
from core.events import ApprovalRequired
from core.handles import RunHandle
from core.service import ApprovalError, Threadline

__all__ = [
    "ApprovalDesk",
    "approval_button_type",
    "approval_message",
    "decided_message",
]

_log = logging.getLogger(__name__)

CUSTOM_ID = r"threadline:(?P<verdict>approve|deny):(?P<approval>[A-Za-z0-9_-]{1,80})"
NOT_ALLOWED = "Only people who can see this channel can approve or deny this."
ShowRun = Callable[[RunHandle, discord.abc.Messageable], Awaitable[None]]
IsShowing = Callable[[str], bool]


def _custom_id(verdict: str, approval_id: str) -> str:
    return f"threadline:{verdict}:{approval_id}"


def approval_message(event: ApprovalRequired) -> tuple[str, ui.View]:
    """The question and its two buttons."""
    content = (
        f"The assistant wants to run **{event.tool}** with:\n```json\n{pretty_arguments(event.arguments)}\n```\n"
        f"-# Anyone who can see this channel can decide. Expires <t:{int(event.expires_at)}:R>."
    )
    view = ui.View(timeout=None)
    view.add_item(
        ui.Button(
            label="Approve", style=discord.ButtonStyle.success, custom_id=_custom_id("approve", event.approval_id)
        )
    )
    view.add_item(
        ui.Button(label="Deny", style=discord.ButtonStyle.danger, custom_id=_custom_id("deny", event.approval_id))
    )
    return content, view


def decided_message(tool: str, arguments: str | None, outcome: str, decided_by: str | None) -> str:
    icon = {"approved": "✅", "denied": "🚫", "expired": "⌛"}.get(outcome, "")
    who = f" by {decided_by}" if decided_by else ""
    text = f"{icon} **{tool}** {outcome}{who}."
    if arguments:
        text += f"\n```json\n{pretty_arguments(arguments)}\n```"
    return text


class ApprovalDesk:
    """What happens when someone presses Approve or Deny."""

    def __init__(self, service: Threadline, show: ShowRun, showing: IsShowing) -> None:
        self._service = service
        self._show = show
        self._showing = showing

    async def press(self, interaction: discord.Interaction[Any], approval_id: str, approve: bool) -> None:
        # Acknowledge at once (Discord allows 3 s); the message itself is edited below.
        await interaction.response.defer()
        if interaction.guild_id is not None and not interaction.permissions.view_channel:
            await interaction.followup.send(
                "Only people who can see this channel can approve or deny this.", ephemeral=True
            )
            _log.info("user %s may not decide approval %s", interaction.user.id, approval_id)
            return
        approval = await self._service.approval(approval_id)
        who = interaction.user.mention
        try:
            handle = await self._service.decide(
                approval_id, approve=approve, decided_by=who, person=person(interaction.user)
            )
        except ApprovalError as exc:
            await interaction.followup.send(str(exc), ephemeral=True)
            return
        outcome = "approved" if approve else "denied"
        tool = approval.tool_name if approval else "the tool"
        await interaction.edit_original_response(
            content=decided_message(tool, approval.arguments if approval else None, outcome, who), view=None
        )
        if not self._showing(handle.run_id) and interaction.channel is not None:
            # After a restart nobody is showing this run: show the rest of it here.
            channel = interaction.channel
            if isinstance(channel, discord.abc.Messageable):
                await self._show(handle, channel)


def approval_button_type(desk: ApprovalDesk) -> type[ui.DynamicItem[ui.Button[Any]]]:
    """The button type discord.py matches against every pressed custom id (``bot.add_dynamic_items``)."""

    class ApprovalButton(ui.DynamicItem[ui.Button[Any]], template=CUSTOM_ID):
        def __init__(self, verdict: str, approval_id: str) -> None:
            super().__init__(ui.Button(label=verdict.title(), custom_id=_custom_id(verdict, approval_id)))
            self.verdict = verdict
            self.approval_id = approval_id

        @classmethod
        async def from_custom_id(
            cls, interaction: discord.Interaction[Any], item: ui.Item[Any], match: re.Match[str], /
        ) -> ApprovalButton:
            return cls(match["verdict"], match["approval"])

        async def callback(self, interaction: discord.Interaction[Any]) -> None:
            await desk.press(interaction, self.approval_id, self.verdict == "approve")

    return ApprovalButton
