"""Register the slash commands with Discord only when their definitions changed.

discord.py advises against syncing at every start: the bulk overwrite is rate limited per day, and a
restart loop or a rolling restart of several processes would spend it. So the bot first reads what
Discord has (one GET) and overwrites only when the definitions differ. The comparison keeps the
fields a definition sets (names, descriptions, option types, whether required, choices, bounds,
permissions) and treats absent as the default, so what Discord fills in by itself does not count as a
change; a difference it cannot judge counts as a change, so at worst the bot syncs as it did before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["definitions_differ", "normal_form"]

_KEPT = (
    "name",
    "description",
    "type",
    "required",
    "choices",
    "options",
    "min_value",
    "max_value",
    "min_length",
    "max_length",
    "autocomplete",
    "channel_types",
    "default_member_permissions",
    "nsfw",
    "name_localizations",
    "description_localizations",
)
_DEFAULTS: dict[str, Any] = {
    "type": 1,
    "required": False,
    "autocomplete": False,
    "nsfw": False,
    "choices": [],
    "options": [],
    "channel_types": [],
    "name_localizations": {},
    "description_localizations": {},
    "default_member_permissions": None,
}


def normal_form(payload: Any) -> Any:
    """A command (or option) payload with only what a definition sets, defaults dropped. Lists keep their
    order: Discord shows options and choices in it (and required options must come first)."""
    if isinstance(payload, list):
        return [normal_form(p) for p in payload]
    if not isinstance(payload, Mapping):
        return payload
    kept = {}
    for key in _KEPT:
        value = payload.get(key)
        if value is None or value == _DEFAULTS.get(key, object()):
            continue
        kept[key] = normal_form(value)
    return kept


def definitions_differ(local: Sequence[Mapping[str, Any]], remote: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the command lists differ; the order of the commands themselves does not matter."""

    def commands(payloads: Sequence[Mapping[str, Any]]) -> list[Any]:
        return sorted((normal_form(p) for p in payloads), key=lambda p: json.dumps(p, sort_keys=True))

    return commands(local) != commands(remote)
