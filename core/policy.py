"""Access control: which channels the bot serves, who manages them, who may use and approve which tool.

The ``[policy]`` section of the assistants file (every key optional; without it, everything is
allowed as before):

    [policy]
    channels.allow = ["slack:T01:*", "discord:*:123"]  # empty or absent: every channel
    channels.deny = ["slack:T01:C0SECRET"]             # wins over allow
    direct_messages = false                            # default: true
    managers = ["slack:U123", "discord:456", "discord-role:789", "console:alice"]

    [policy.tools.send_email]
    use = "managers"                                   # "everyone" (default) | "managers" | a list
    approve = ["slack:U123", "managers"]               # "everyone" (default) | "managers" | a list

Channel patterns are channel keys (``platform:workspace:channel``) where ``*`` stands for any
run of characters. They name channels only: a conversation inside a channel (a Slack thread, a
Discord thread; core/models.py) is served exactly when its channel (its scope) is, so a rule for
``slack:T01:C02`` covers that channel's threads, and no rule names one thread.

People are named by user key (``slack:U123``, ``discord:456``, ``console:NAME``) and, on Discord,
by role (``discord-role:789``). In a list, ``"managers"``
stands for every manager. With no managers configured, manager-only commands are open to
everyone (a tool rule naming managers then is a configuration error).

On Discord the @everyone role's id is the server's (guild's) id, and every member has it:
``discord-role:GUILD_ID`` names every member of that server (in its channels; direct messages
carry no roles). Check that a role id you copy is not the server's id, unless that is what you mean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.models import Author, parse_channel_key

__all__ = ["NOT_SERVED", "Audience", "Policy", "ToolRule", "is_direct", "parse_policy"]

NOT_SERVED = "I do not serve this channel. Ask whoever runs the bot if you need me here."
NOT_SERVED_DM = "I do not answer direct messages here. Mention me in a channel I serve instead."

_POLICY_KEYS = {"channels", "direct_messages", "managers", "tools"}
_CHANNEL_KEYS = {"allow", "deny"}
_TOOL_KEYS = {"use", "approve"}
_PERSON_PREFIXES = ("slack:", "discord:", "console:", "discord-role:")
EVERYONE, MANAGERS = "everyone", "managers"


def is_direct(channel: str) -> bool:
    """Whether a channel key names a direct conversation with the bot (Slack ``D...`` ids, Discord ``dm``)."""
    try:
        platform, workspace, channel_id = parse_channel_key(channel)
    except ValueError:
        return False
    return (platform == "slack" and channel_id.startswith("D")) or (platform == "discord" and workspace == "dm")


def person_keys(person: Author | None) -> frozenset[str]:
    """Every key a person answers to: their user key and their role keys."""
    if person is None:
        return frozenset()
    return frozenset(k for k in (person.key, *person.roles) if k)


@dataclass(frozen=True)
class Audience:
    """Who a rule lets in: everyone, the managers, and/or these user and role keys."""

    everyone: bool = True
    managers: bool = False
    keys: frozenset[str] = frozenset()

    def describe(self) -> str:
        if self.everyone:
            return EVERYONE
        return ", ".join([*([MANAGERS] if self.managers else []), *sorted(self.keys)]) or "nobody"


@dataclass(frozen=True)
class ToolRule:
    use: Audience = Audience()
    approve: Audience = Audience()


@dataclass(frozen=True)
class Policy:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    direct_messages: bool = True
    managers: frozenset[str] = frozenset()
    tools: Mapping[str, ToolRule] = field(default_factory=dict)

    @property
    def serves_every_channel(self) -> bool:
        """Whether no channel is refused (no allow or deny list, direct messages on): nothing to look up."""
        return not self.allow and not self.deny and self.direct_messages

    def refusal(self, channel: str) -> str | None:
        """Why the bot does not serve ``channel`` (a message for people), or None when it does.

        ``channel``: a channel key, the scope of a conversation (``Threadline.scope``), not a conversation
        inside it."""
        if any(_matches(p, channel) for p in self.deny):
            return NOT_SERVED
        if is_direct(channel):
            return None if self.direct_messages else NOT_SERVED_DM
        if self.allow and not any(_matches(p, channel) for p in self.allow):
            return NOT_SERVED
        return None

    def is_manager(self, person: Author | None) -> bool:
        """Managers may switch assistants and see every channel's usage; with none configured, everyone may."""
        return not self.managers or bool(self.managers & person_keys(person))

    def may_use(self, tool: str, person: Author | None) -> bool:
        return self._admits(self.tools.get(tool, ToolRule()).use, person)

    def may_approve(self, tool: str, person: Author | None) -> bool:
        return self._admits(self.tools.get(tool, ToolRule()).approve, person)

    def usable(self, tools: Iterable[str], person: Author | None) -> frozenset[str]:
        return frozenset(t for t in tools if self.may_use(t, person))

    def check_tools(self, available: Iterable[str], where: str) -> None:
        known = set(available)
        for name in self.tools:
            if name not in known:
                choices = ", ".join(sorted(known)) or "none"
                raise ConfigError(f"{where}: [policy.tools.{name}]: unknown tool {name!r} (available here: {choices}).")

    def _admits(self, audience: Audience, person: Author | None) -> bool:
        if audience.everyone:
            return True
        keys = person_keys(person)
        return bool(audience.keys & keys) or (audience.managers and bool(self.managers & keys))


def _matches(pattern: str, channel: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, channel) is not None


def parse_policy(table: Any, where: str) -> Policy:
    """The ``[policy]`` table of the assistants file; ConfigError names the key and the problem."""
    at = f"{where}: [policy]"
    if not isinstance(table, dict):
        raise ConfigError(f"{at}: must be a table.")
    _known(table, _POLICY_KEYS, at)
    channels = table.get("channels", {})
    if not isinstance(channels, dict):
        raise ConfigError(f"{at}: 'channels' must be a table with 'allow' and/or 'deny'.")
    _known(channels, _CHANNEL_KEYS, f"{at} channels")
    allow = _patterns(channels.get("allow", []), f"{at}: key 'channels.allow'")
    deny = _patterns(channels.get("deny", []), f"{at}: key 'channels.deny'")
    direct = table.get("direct_messages", True)
    if not isinstance(direct, bool):
        raise ConfigError(f"{at}: key 'direct_messages' must be true or false, not {direct!r}.")
    managers = _people(table.get("managers", []), f"{at}: key 'managers'", allow_managers=False)
    tools_table = table.get("tools", {})
    if not isinstance(tools_table, dict):
        raise ConfigError(f"{at}: 'tools' must be a table of tools ([policy.tools.NAME]).")
    tools: dict[str, ToolRule] = {}
    for name, entry in tools_table.items():
        tool_at = f"{where}: [policy.tools.{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{tool_at}: must be a table with 'use' and/or 'approve'.")
        _known(entry, _TOOL_KEYS, tool_at)
        rule = ToolRule(
            use=_audience(entry.get("use", EVERYONE), f"{tool_at}: key 'use'"),
            approve=_audience(entry.get("approve", EVERYONE), f"{tool_at}: key 'approve'"),
        )
        for key, audience in (("use", rule.use), ("approve", rule.approve)):
            if audience.managers and not managers:
                raise ConfigError(
                    f"{tool_at}: key {key!r} names the managers, but [policy] lists none; add 'managers' or "
                    "name the people."
                )
        tools[name] = rule
    return Policy(tuple(allow), tuple(deny), direct, frozenset(managers), tools)


def _known(table: dict[str, Any], keys: set[str], at: str) -> None:
    for key in table:
        if key not in keys:
            raise ConfigError(f"{at}: unknown key {key!r} (expected one of: {', '.join(sorted(keys))}).")


def _patterns(value: Any, at: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise ConfigError(f'{at} must be a list of channel keys, e.g. ["slack:T01:*", "discord:*:123"].')
    return [p.strip() for p in value]


def _people(value: Any, at: str, *, allow_managers: bool) -> set[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ConfigError(f'{at} must be a list of user or role keys, e.g. ["slack:U123", "discord-role:789"].')
    people = set()
    for entry in value:
        entry = entry.strip()
        if allow_managers and entry == MANAGERS:
            people.add(entry)
            continue
        prefix = next((p for p in _PERSON_PREFIXES if entry.startswith(p)), None)
        if prefix is None or len(entry) == len(prefix):
            expected = ", ".join(f"{p}ID" for p in _PERSON_PREFIXES)
            extra = ' or "managers"' if allow_managers else ""
            raise ConfigError(f"{at}: {entry!r} is not a user or role key (expected {expected}{extra}).")
        people.add(entry)
    return people


def _audience(value: Any, at: str) -> Audience:
    if value == EVERYONE:
        return Audience()
    if value == MANAGERS:
        return Audience(everyone=False, managers=True)
    if isinstance(value, list):
        people = _people(value, at, allow_managers=True)
        return Audience(everyone=False, managers=MANAGERS in people, keys=frozenset(people - {MANAGERS}))
    raise ConfigError(f'{at} must be "everyone", "managers" or a list of user or role keys, not {value!r}.')
