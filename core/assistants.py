"""Assistants: who the bot is in a channel. Loaded from a TOML file, with a built-in default.

    default = "helper"                 # optional: the assistant channels use unless set otherwise
    tool_modules = ["myteam.tools"]    # optional: Python modules whose tools assistants may name

    [[assistants]]
    name = "helper"
    instructions = "You help the platform team."
    model = "gpt-5.4-mini"             # optional: THREADLINE_MODEL
    tools = ["get_weather"]            # optional: every configured built-in tool
    temperature = 0.3                  # optional: the model's default
    context_tokens = 16000             # optional: the token budget for context
    vision = true                      # optional: its model takes images (default false; core/images.py)
    tool_calling = false               # optional: its model has no tools (default true; file search goes in the prompt)
    suggested_prompts = [{ title = "Plan a trip", message = "Plan a day in Lisbon." }]  # optional: Slack's pane

    [prices."gpt-5.4-mini"]            # optional: per model, for /usage (built in: gpt-5.4-mini's list price)
    input_per_million = 0.75
    output_per_million = 4.50
    currency = "USD"                   # optional: USD

    [policy]                           # optional: access control, see core/policy.py
    managers = ["slack:U123"]

    [budgets]                          # optional: spending limits, see core/budgets.py
    channel = { day = "5 USD" }

    [[mcp_servers]]                    # optional: MCP tool servers assistants may name, see core/mcp_config.py
    name = "tracker"
    command = "tracker-mcp"

A bad file fails at start with the file, the key and the problem named.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.budgets import BudgetConfig, parse_budgets
from core.errors import ConfigError
from core.mcp_config import McpServerConfig, mcp_names, parse_mcp_servers
from core.policy import Policy, parse_policy
from core.suggested_prompts import DEFAULT_SUGGESTED_PROMPTS, SuggestedPrompt, parse_suggested_prompts
from core.usage import DEFAULT_PRICES, Price

__all__ = [
    "DEFAULT_ASSISTANT_NAME",
    "DEFAULT_CONTEXT_TOKENS",
    "DEFAULT_INSTRUCTIONS",
    "Assistant",
    "AssistantsConfig",
    "load_assistants",
]

DEFAULT_ASSISTANT_NAME = "threadline"
DEFAULT_CONTEXT_TOKENS = 16_000
DEFAULT_INSTRUCTIONS = (
    "You are Threadline, the assistant of a team chat channel. Several people may talk to you in the "
    "same conversation; their messages start with their name. Answer clearly and briefly, in Markdown. "
    "Use your tools when they help, say so when a tool fails, and never invent tool results."
)

_ASSISTANT_KEYS = {
    "name",
    "instructions",
    "model",
    "tools",
    "temperature",
    "context_tokens",
    "vision",
    "tool_calling",
    "suggested_prompts",
}
_TOP_KEYS = {"default", "tool_modules", "assistants", "prices", "policy", "budgets", "mcp_servers"}
_PRICE_KEYS = {"input_per_million", "output_per_million", "currency"}


@dataclass(frozen=True)
class Assistant:
    name: str
    instructions: str
    model: str
    tools: tuple[str, ...] | None = None  # None: every configured built-in tool
    temperature: float | None = None
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    vision: bool = False  # images shared with it are shown to its model (else people are told it cannot see them)
    suggested_prompts: tuple[SuggestedPrompt, ...] = DEFAULT_SUGGESTED_PROMPTS  # core/suggested_prompts.py
    tool_calling: bool = True  # False: no tools sent; file search puts passages in its prompt (knowledge/passages.py)


@dataclass(frozen=True)
class AssistantsConfig:
    assistants: dict[str, Assistant]
    default: str
    tool_modules: tuple[str, ...] = ()
    source: str = "built-in"
    prices: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))  # model → price
    policy: Policy = field(default_factory=Policy)  # [policy]: access control (core/policy.py)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)  # [budgets]: default limits (core/budgets.py)
    mcp_servers: tuple[McpServerConfig, ...] = ()  # [[mcp_servers]]: MCP tool servers (core/mcp_config.py)

    def get(self, name: str | None) -> Assistant:
        """The named assistant, or the default one when the name is unknown or None."""
        if name and name in self.assistants:
            return self.assistants[name]
        return self.assistants[self.default]

    def check_tools(self, available: Iterable[str]) -> None:
        named = [*(t for a in self.assistants.values() for t in a.tools or ()), *self.policy.tools]
        known = set(available) | mcp_names(self.mcp_servers, named, self.source)
        for assistant in self.assistants.values():
            for tool in assistant.tools or ():
                if tool not in known:
                    choices = ", ".join(sorted(known)) or "none"
                    raise ConfigError(
                        f"{self.source}: assistant {assistant.name!r}, key 'tools': unknown tool {tool!r} "
                        f"(available here: {choices}; email needs SMTP_HOST, your own tools need tool_modules)."
                    )
        self.policy.check_tools(known, self.source)


def builtin_assistant(model: str) -> Assistant:
    return Assistant(name=DEFAULT_ASSISTANT_NAME, instructions=DEFAULT_INSTRUCTIONS, model=model)


def load_assistants(path: Path | None, *, default_model: str) -> AssistantsConfig:
    """Read the assistants file (None: only the built-in default)."""
    builtin = builtin_assistant(default_model)
    if path is None:
        return AssistantsConfig({builtin.name: builtin}, builtin.name)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: the assistants file does not exist (THREADLINE_ASSISTANTS).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read: {exc}.") from None

    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (expected one of: {', '.join(sorted(_TOP_KEYS))}).")

    assistants: dict[str, Assistant] = {builtin.name: builtin}
    entries = data.get("assistants", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'assistants' must be an array of tables ([[assistants]]).")
    for position, entry in enumerate(entries, start=1):
        assistant = _parse_assistant(entry, f"{where}: [[assistants]] #{position}", default_model)
        if assistant.name in assistants and assistant.name != DEFAULT_ASSISTANT_NAME:
            raise ConfigError(f"{where}: assistant name {assistant.name!r} is used twice.")
        assistants[assistant.name] = assistant

    default = data.get("default", DEFAULT_ASSISTANT_NAME)
    if not isinstance(default, str) or default not in assistants:
        names = ", ".join(sorted(assistants))
        raise ConfigError(f"{where}: key 'default': {default!r} is not an assistant here (known: {names}).")

    modules = data.get("tool_modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        raise ConfigError(f"{where}: key 'tool_modules' must be a list of Python module names.")

    prices = {**DEFAULT_PRICES, **_parse_prices(data.get("prices", {}), where)}
    policy = parse_policy(data.get("policy", {}), where)
    budgets = parse_budgets(data.get("budgets", {}), where, prices, (a.model for a in assistants.values()))
    mcp_servers = parse_mcp_servers(data.get("mcp_servers", []), where)
    return AssistantsConfig(assistants, default, tuple(modules), where, prices, policy, budgets, mcp_servers)


def _parse_prices(table: Any, where: str) -> dict[str, Price]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'prices' must be a table of models ([prices.\"MODEL\"]).")
    prices: dict[str, Price] = {}
    for model, entry in table.items():
        at = f'{where}: [prices."{model}"]'
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: must be a table with input_per_million and output_per_million.")
        for key in entry:
            if key not in _PRICE_KEYS:
                raise ConfigError(f"{at}: unknown key {key!r} (expected one of: {', '.join(sorted(_PRICE_KEYS))}).")
        amounts = []
        for key in ("input_per_million", "output_per_million"):
            value = entry.get(key)
            if value is None:
                raise ConfigError(f"{at}: key {key!r} is required (the price of a million tokens).")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{at}: key {key!r} must be a number of at least 0, not {value!r}.")
            amounts.append(float(value))
        currency = entry.get("currency", "USD")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise ConfigError(f"{at}: key 'currency' must be a three-letter code such as \"USD\", not {currency!r}.")
        prices[model] = Price(amounts[0], amounts[1], currency)
    return prices


def _parse_assistant(entry: Any, where: str, default_model: str) -> Assistant:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table.")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: key 'name' is required and must be a non-empty string.")
    where = f"{where} ({name!r})"
    for key in entry:
        if key not in _ASSISTANT_KEYS:
            expected = ", ".join(sorted(_ASSISTANT_KEYS))
            raise ConfigError(f"{where}: unknown key {key!r} (expected one of: {expected}).")
    instructions = entry.get("instructions", DEFAULT_INSTRUCTIONS)
    if not isinstance(instructions, str) or not instructions.strip():
        raise ConfigError(f"{where}: key 'instructions' must be a non-empty string.")
    model = entry.get("model", default_model)
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: key 'model' must be a non-empty string.")
    tools = entry.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, str) for t in tools)):
        raise ConfigError(f"{where}: key 'tools' must be a list of tool names.")
    temperature = entry.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise ConfigError(f"{where}: key 'temperature' must be a number from 0 to 2, not {temperature!r}.")
    context_tokens = entry.get("context_tokens", DEFAULT_CONTEXT_TOKENS)
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int) or context_tokens < 1000:
        raise ConfigError(f"{where}: key 'context_tokens' must be a whole number of at least 1000.")
    vision = entry.get("vision", False)
    if not isinstance(vision, bool):
        raise ConfigError(f"{where}: key 'vision' must be true or false, not {vision!r}.")
    tool_calling = entry.get("tool_calling", True)
    if not isinstance(tool_calling, bool):
        raise ConfigError(f"{where}: key 'tool_calling' must be true or false, not {tool_calling!r}.")
    prompts = entry.get("suggested_prompts")
    return Assistant(
        name=name.strip(),
        instructions=instructions.strip(),
        model=model.strip(),
        tools=tuple(tools) if tools is not None else None,
        temperature=float(temperature) if temperature is not None else None,
        context_tokens=context_tokens,
        vision=vision,
        suggested_prompts=DEFAULT_SUGGESTED_PROMPTS if prompts is None else parse_suggested_prompts(prompts, where),
        tool_calling=tool_calling,
    )
