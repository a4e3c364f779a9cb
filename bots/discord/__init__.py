"""Threadline in Discord (discord.py): mentions and DMs, attachments, slash commands, approval buttons."""
