"""Discord people as the core's access control names them."""

from __future__ import annotations

import discord

from core.models import Author

__all__ = ["person"]


def person(user: discord.User | discord.Member) -> Author:
    """A Discord user as the core's policy knows them: ``discord:ID``, and their roles as ``discord-role:ID``."""
    roles = tuple(f"discord-role:{role.id}" for role in getattr(user, "roles", ()))
    return Author(id=str(user.id), name=user.display_name, key=f"discord:{user.id}", roles=roles)
