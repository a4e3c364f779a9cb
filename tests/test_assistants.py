"""The assistants file: loaded at start, and a bad one fails naming the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.assistants import DEFAULT_ASSISTANT_NAME, load_assistants
from core.errors import ConfigError
from core.service import Threadline
from core.suggested_prompts import DEFAULT_SUGGESTED_PROMPTS

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "assistants.toml"
    path.write_text(text)
    return path


def test_no_file_gives_the_built_in_default() -> None:
    config = load_assistants(None, default_model="m1")
    assistant = config.get(None)
    assert assistant.name == DEFAULT_ASSISTANT_NAME
    assert assistant.model == "m1"
    assert assistant.tools is None  # every configured built-in


def test_the_shipped_example_is_valid() -> None:
    config = load_assistants(ROOT / "assistants.example.toml", default_model="m1")
    helper = config.get(None)
    assert helper.name == "helper"
    assert helper.tools == ("get_weather", "send_email")
    assert helper.temperature == 0.3
    assert helper.context_tokens == 16000
    assert config.get("terse").tools == ()
    assert config.get("terse").model == "m1"
    assert config.get("no-such-assistant").name == "helper"
    assert [p.title for p in helper.suggested_prompts] == ["Check the weather", "Email the team"]
    assert config.get("terse").suggested_prompts == DEFAULT_SUGGESTED_PROMPTS  # without the key: the built-in ones


def test_suggested_prompts_may_be_none(tmp_path: Path) -> None:
    config = load_assistants(write(tmp_path, "[[assistants]]\nname = 'a'\nsuggested_prompts = []\n"), default_model="m")
    assert config.get("a").suggested_prompts == ()
    assert load_assistants(None, default_model="m").get(None).suggested_prompts == DEFAULT_SUGGESTED_PROMPTS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[assistants]]\nname = 'a'\ntemprature = 0.2\n", r"assistants\]\] #1 \('a'\): unknown key 'temprature'"),
        ("[[assistants]]\nname = 'a'\ntemperature = 'warm'\n", r"'a'\): key 'temperature' must be a number"),
        ("[[assistants]]\ninstructions = 'x'\n", r"#1: key 'name' is required"),
        ("[[assistants]]\nname = 'a'\ncontext_tokens = 10\n", r"key 'context_tokens' must be a whole number"),
        ("[[assistants]]\nname = 'a'\ntools = 'get_weather'\n", r"key 'tools' must be a list"),
        ("default = 'ghost'\n", r"key 'default': 'ghost' is not an assistant"),
        ("[[assistants]]\nname = 'a'\n[[assistants]]\nname = 'a'\n", r"'a' is used twice"),
        ("name = = 1\n", r"not valid TOML"),
        ("models = []\n", r"unknown key 'models'"),
        ("[[assistants]]\nname = 'a'\nsuggested_prompts = 'hi'\n", r"'a'\): key 'suggested_prompts' must be a list"),
        (
            "[[assistants]]\nname = 'a'\nsuggested_prompts = [{ title = 'x' }]\n",
            r"'a'\): suggested_prompts #1: key 'message' is required",
        ),
        (
            "[[assistants]]\nname = 'a'\nsuggested_prompts = [{ title = 'x', message = 'y', icon = 'z' }]\n",
            r"suggested_prompts #1: unknown key 'icon'",
        ),
        (
            "[[assistants]]\nname = 'a'\nsuggested_prompts = [" + "{ title = 'x', message = 'y' }, " * 5 + "]\n",
            r"has 5 prompts; Slack shows 4 at most",
        ),
        (
            "[[assistants]]\nname = 'a'\nsuggested_prompts = [{ title = '" + "x" * 80 + "', message = 'y' }]\n",
            r"key 'title' is 80 characters long; at most 75",
        ),
    ],
)
def test_a_bad_file_names_the_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_assistants(path, default_model="m1")
    assert str(path) in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_assistants(tmp_path / "nope.toml", default_model="m1")


async def test_unknown_tool_fails_at_start(settings, tmp_path: Path) -> None:
    from dataclasses import replace

    path = write(tmp_path, "[[assistants]]\nname = 'a'\ntools = ['send_email']\n")
    # Email is not configured (no SMTP_HOST), so the tool does not exist here.
    with pytest.raises(ConfigError, match=r"assistant 'a', key 'tools': unknown tool 'send_email'.*SMTP_HOST"):
        await Threadline.open(replace(settings, assistants_file=path))


async def test_tool_module_that_cannot_be_imported_fails_at_start(settings, tmp_path: Path) -> None:
    from dataclasses import replace

    path = write(tmp_path, "tool_modules = ['tests.tool_modules.does_not_exist']\n")
    with pytest.raises(ConfigError, match=r"tool module .tests\.tool_modules\.does_not_exist. cannot be imported"):
        await Threadline.open(replace(settings, assistants_file=path))


async def test_default_assistant_offers_configured_builtins_only(open_service, fake_model, smtp_settings) -> None:
    from tests.helpers import ask

    without_email = await open_service(assistants_file=None)
    await ask(without_email, "hi", channel="console:local:a")
    offered = [t["function"]["name"] for t in fake_model.chat_requests[-1]["tools"]]
    assert offered == ["get_weather"]
    await without_email.close()

    with_email = await open_service(assistants_file=None, smtp=smtp_settings)
    await ask(with_email, "hi", channel="console:local:b")
    offered = [t["function"]["name"] for t in fake_model.chat_requests[-1]["tools"]]
    assert offered == ["get_weather", "send_email"]
