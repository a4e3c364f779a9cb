"""Discord people as the core's access control names them."""

from __future__ import annotations

import discord

from core.models import Author

__all__ = ["person"]


def person(user: discord.User | discord.Member) -> Author:
    """A Discord user as the core's policy knows them: ``discord:ID``, and their roles as ``discord-role:ID``.

    A server member's roles include the server's @everyone role, whose id is the server's (guild's) id:
    ``discord-role:GUILD_ID`` in a policy therefore names every member of that server, in its channels only
    (direct messages carry no roles). It is added here even when discord.py does not have the server's
    roles cached, so that the rule means the same whatever the cache holds.
    """
    if not isinstance(user, discord.Member):
        return Author(id=str(user.id), name=user.display_name, key=f"discord:{user.id}")
    ids = [role.id for role in user.roles]
    if user.guild.id not in ids:
        ids.insert(0, user.guild.id)
    roles = tuple(f"discord-role:{role_id}" for role_id in ids)
    return Author(id=str(user.id), name=user.display_name, key=f"discord:{user.id}", roles=roles)
