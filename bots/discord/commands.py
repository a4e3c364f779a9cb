"""Slash commands: /reset, /files, /forget (with autocomplete over the channel's files), /cancel, /export, /usage,
/assistant (with autocomplete over the assistants file's names), /budget.

Each is deferred at once (Discord allows 3 s), runs the core's command for the channel it was
used in, and answers only the person who used it.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bots.discord.conversation import channel_key, parent_key
from bots.discord.people import person
from bots.text import split_message
from core.commands import handle_command
from core.service import Threadline

__all__ = ["CommandsCog", "on_tree_error"]

_log = logging.getLogger(__name__)

ALL_FILES = "--all"
CHOICES = 25  # Discord shows at most 25 suggestions


def _channel(interaction: discord.Interaction[Any]) -> str:
    return channel_key(interaction.guild_id, interaction.channel_id or 0)


class CommandsCog(commands.Cog):
    def __init__(self, service: Threadline) -> None:
        self._service = service

    @app_commands.command(name="reset")
    async def reset(self, interaction: discord.Interaction[Any]) -> None:
        """Start a new conversation in this channel (its files are kept)."""
        await self._run(interaction, "/reset")

    @app_commands.command(name="files")
    async def files(self, interaction: discord.Interaction[Any]) -> None:
        """List this channel's files: status, size, chunks."""
        await self._run(interaction, "/files")

    @app_commands.command(name="forget")
    @app_commands.describe(name="The file to remove (pick from the list), or --all for every file")
    async def forget(self, interaction: discord.Interaction[Any], name: str) -> None:
        """Remove a file from this channel's files."""
        await self._run(interaction, f"/forget {name}")

    @forget.autocomplete("name")
    async def _file_names(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        files = await self._service.knowledge.files(_channel(interaction))
        wanted = current.casefold()
        names = sorted({f.name for f in files if wanted in f.name.casefold()})
        choices = [app_commands.Choice(name=n[:100], value=n[:100]) for n in names[: CHOICES - 1]]
        if files and (not wanted or wanted in ALL_FILES):
            choices.append(app_commands.Choice(name=f"All {len(files)} files", value=ALL_FILES))
        return choices

    @app_commands.command(name="cancel")
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        """Stop the answer being written in this channel, and any queued ones."""
        await self._run(interaction, "/cancel")

    @app_commands.command(name="export")
    async def export(self, interaction: discord.Interaction[Any]) -> None:
        """This channel's conversation as a Markdown file, sent only to you."""
        await self._run(interaction, "/export")

    @app_commands.command(name="usage")
    @app_commands.describe(scope="Leave empty for this channel; all: every channel's totals this month")
    @app_commands.choices(scope=[app_commands.Choice(name="all channels", value="all")])
    async def usage(self, interaction: discord.Interaction[Any], scope: str = "") -> None:
        """This channel's tokens and cost today and this month (UTC), and its top users."""
        await self._run(interaction, f"/usage {scope}".strip())

    @app_commands.command(name="assistant")
    @app_commands.describe(name="Leave empty to see this channel's assistant; a name switches to it (managers)")
    async def assistant(self, interaction: discord.Interaction[Any], name: str = "") -> None:
        """This channel's assistant (name, model, tools), or switch to another one."""
        await self._run(interaction, f"/assistant {name}".strip())

    @app_commands.command(name="budget")
    @app_commands.describe(
        scope="Leave empty to see the budgets; channel or user to change one (managers)",
        member="Whose budget, with scope user",
        period="day or month",
        limit="Like 10 USD or 200k tokens; none: no limit; default: the assistants file's",
    )
    @app_commands.choices(
        scope=[app_commands.Choice(name=n, value=n) for n in ("channel", "user")],
        period=[app_commands.Choice(name=n, value=n) for n in ("day", "month")],
    )
    async def budget(
        self,
        interaction: discord.Interaction[Any],
        scope: str = "",
        member: discord.User | None = None,
        period: str = "",
        limit: str = "",
    ) -> None:
        """This channel's budgets and yours, and how much is used; managers change them."""
        whose = f"<@{member.id}>" if member is not None and scope == "user" else ""
        await self._run(interaction, " ".join(p for p in ("/budget", scope, whose, period, limit) if p))

    @assistant.autocomplete("name")
    async def _assistant_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        wanted = current.casefold()
        names = sorted(n for n in self._service.assistants.assistants if wanted in n.casefold())
        return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names[:CHOICES]]

    async def _run(self, interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = await handle_command(
            self._service,
            _channel(interaction),
            text,
            person(interaction.user),
            scope=parent_key(interaction.channel, interaction.guild_id),
        )
        pieces = split_message(reply.text, 2000)
        for index, piece in enumerate(pieces):
            if reply.file is not None and index == len(pieces) - 1:  # the file comes with the last words
                name, data = reply.file
                await interaction.followup.send(piece, ephemeral=True, file=discord.File(io.BytesIO(data), name))
            else:
                await interaction.followup.send(piece, ephemeral=True)


async def on_tree_error(interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
    """One error handler for every slash command: a short answer to the person, the detail to the log."""
    name = interaction.command.name if interaction.command else "the command"
    _log.error("/%s failed in channel %s", name, interaction.channel_id, exc_info=error)
    text = f"/{name} failed on my side; the details are in the bot's log. Please try again in a moment."
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        _log.warning("could not tell the user /%s failed: %s", name, exc)
