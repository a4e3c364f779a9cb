"""Slack installed into many workspaces, over real protocols: the install page and the OAuth redirect served by
the bot's HTTP server, the code exchanged at the fake Slack's ``oauth.v2.access``, each workspace's token kept in
Threadline's database and used for that workspace's events, and forgotten when Slack says the app was
uninstalled or its tokens revoked."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from bots.slack.app import SlackBot
from bots.slack.config import BOT_SCOPES, SlackSettings
from core.errors import ConfigError
from core.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, app_mention, event_callback
from tests.test_slack import ALICE, Harness, running_harness

ROOT = Path(__file__).resolve().parent.parent
STATE_SECRET = "a-long-random-state-secret"
CHANNEL = "C_TEAM"


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, fake_model, settings, members=[ALICE], **_many(FakeSlack)) as h:
        yield h


def _many(slack: FakeSlack | type[FakeSlack]) -> dict[str, Any]:
    return {
        "bot_token": None,
        "client_id": slack.client_id,
        "client_secret": slack.client_secret,
        "state_secret": STATE_SECRET,
    }


def _origin(bot: SlackBot | None) -> str:
    assert bot is not None
    return f"http://127.0.0.1:{bot.port}"


async def _install(harness: Harness, team_id: str, *, bot: SlackBot | None = None) -> int:
    """Open the install page as a browser would, approve in "Slack", and follow the redirect back."""
    origin = _origin(bot or harness.bot)
    async with harness.http.get(f"{origin}/slack/install") as page:
        assert page.status == 200
        html = await page.text()
        cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    link = re.search(r'href="(https://slack.com/oauth/v2/authorize\?[^"]+)"', html)
    assert link is not None, html
    query = parse_qs(urlparse(link.group(1).replace("&amp;", "&")).query)
    assert query["client_id"] == [harness.slack.client_id]
    assert set(query["scope"][0].split(",")) == set(BOT_SCOPES)
    code = harness.slack.authorize(team_id)
    params = {"code": code, "state": query["state"][0]}
    async with harness.http.get(f"{origin}/slack/oauth_redirect", params=params, headers={"Cookie": cookie}) as done:
        return done.status


async def _event(harness: Harness, event: dict[str, Any], team_id: str, event_id: str) -> int:
    harness.slack.say(event)
    body = json.dumps(event_callback(event, event_id, team_id)).encode()
    return await harness.send(body)


def _tokens_used(harness: Harness, method: str) -> set[str | None]:
    return {c.token for c in harness.slack.calls if c.method == method}


async def test_an_install_keeps_the_workspaces_token_and_its_events_are_answered_with_it(harness: Harness) -> None:
    assert await _install(harness, "T02") == 200
    [exchange] = harness.slack.calls_to("oauth.v2.access")
    assert exchange["code"].startswith("code-T02-")
    assert harness.bot is not None
    saved = await harness.bot.service.installations("slack").find(harness.slack.client_id, None, "T02")
    assert saved is not None
    token = saved["bot_token"]
    assert harness.slack.team_of(token) == "T02"

    mention = app_mention(CHANNEL, ALICE, "<@U_BOT_T02> hello from two", "1700000300.000100")
    assert await _event(harness, mention, "T02", "EvI1") == 200
    assert await harness.answer(CHANNEL, "1700000300.000100") == ["Answer to: hello from two"]
    assert _tokens_used(harness, "chat.startStream") == {token}
    assert await harness.bot.service.conversation_state(f"slack:T02:{CHANNEL}") == (True, True)


async def test_two_workspaces_each_get_their_own_token_and_conversation(harness: Harness) -> None:
    assert await _install(harness, "T02") == 200
    assert await _install(harness, "T03") == 200
    for number, team in enumerate(("T02", "T03")):
        ts = f"170000031{number}.000100"
        await _event(harness, app_mention(CHANNEL, ALICE, f"<@U_BOT_{team}> in {team}", ts), team, f"EvW{number}")
        assert await harness.answer(CHANNEL, ts) == [f"Answer to: in {team}"]
    streams = [c for c in harness.slack.calls if c.method == "chat.startStream"]
    assert [harness.slack.team_of(c.token) for c in streams] == ["T02", "T03"]
    # Each workspace's channel is a conversation of its own, though the channel ids are the same.
    contents = [m["content"] for m in harness.model.chat_requests[-1]["messages"] if m["role"] == "user"]
    assert len(contents) == 1


async def test_an_uninstall_forgets_the_token_and_the_workspaces_events_are_dropped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert await _install(harness, "T02") == 200
    assert harness.bot is not None
    service = harness.bot.service
    harness.slack.revoke_team("T02")
    assert await _event(harness, {"type": "app_uninstalled", "event_ts": "1700000320.000100"}, "T02", "EvU1") == 200
    await _until_forgotten(service, harness.slack.client_id, "T02")
    assert any("uninstalled from T02" in r.getMessage() for r in caplog.records)

    calls_before = len(harness.slack.calls)
    mention = app_mention(CHANNEL, ALICE, "<@U_BOT_T02> still there?", "1700000321.000100")
    assert await _event(harness, mention, "T02", "EvU2") == 200
    # Bolt finds no installation for T02 and answers for the app: nothing is asked of Slack, nothing posted.
    assert not harness.slack.calls[calls_before:]
    assert not any(last == "still there?" for last in _user_texts(harness))


async def test_revoked_bot_tokens_are_forgotten(harness: Harness) -> None:
    assert await _install(harness, "T04") == 200
    assert harness.bot is not None
    revoked = {"type": "tokens_revoked", "tokens": {"bot": ["U_BOT_T04"]}, "event_ts": "1700000330.000100"}
    assert await _event(harness, revoked, "T04", "EvR1") == 200
    await _until_forgotten(harness.bot.service, harness.slack.client_id, "T04")


async def test_another_process_on_the_database_serves_a_workspace_installed_through_the_first(
    harness: Harness,
) -> None:
    second = await SlackBot.start(harness.settings, harness.slack_settings(**_many(harness.slack)))
    try:
        assert await _install(harness, "T05", bot=second) == 200
        await _event(
            harness, app_mention(CHANNEL, ALICE, "<@U_BOT_T05> via the first", "1700000340.000100"), "T05", "EvP1"
        )
        assert await harness.answer(CHANNEL, "1700000340.000100") == ["Answer to: via the first"]
    finally:
        await second.stop()


async def test_a_forged_or_reused_state_installs_nothing(harness: Harness) -> None:
    origin = _origin(harness.bot)
    async with harness.http.get(f"{origin}/slack/install") as page:
        cookie = page.headers["Set-Cookie"].split(";", 1)[0]
        state = cookie.split("=", 1)[1]
    forged = {"code": harness.slack.authorize("T06"), "state": "made-up.0123"}
    async with harness.http.get(
        f"{origin}/slack/oauth_redirect", params=forged, headers={"Cookie": f"slack-app-oauth-state={forged['state']}"}
    ) as refused:
        assert refused.status >= 400
    good = {"code": harness.slack.authorize("T06"), "state": state}
    async with harness.http.get(f"{origin}/slack/oauth_redirect", params=good, headers={"Cookie": cookie}) as done:
        assert done.status == 200
    again = {"code": harness.slack.authorize("T07"), "state": state}
    async with harness.http.get(f"{origin}/slack/oauth_redirect", params=again, headers={"Cookie": cookie}) as reused:
        assert reused.status >= 400
    assert harness.bot is not None
    assert await harness.bot.service.installations("slack").find(harness.slack.client_id, None, "T07") is None
    assert len(harness.slack.calls_to("oauth.v2.access")) == 1  # neither refused flow reached Slack


async def test_the_settings_of_many_workspaces() -> None:
    many = {
        "SLACK_CLIENT_ID": "1.2",
        "SLACK_CLIENT_SECRET": "c",
        "SLACK_STATE_SECRET": "s",
        "SLACK_SIGNING_SECRET": "x",
    }
    settings = SlackSettings.from_env(many)
    assert settings.many_workspaces
    assert settings.bot_token is None
    assert set(settings.secrets) == {"c", "s", "x"}
    with pytest.raises(ConfigError, match="Both SLACK_BOT_TOKEN"):
        SlackSettings.from_env(many | {"SLACK_BOT_TOKEN": "xoxb-1"})
    with pytest.raises(ConfigError, match="SLACK_STATE_SECRET is needed too"):
        SlackSettings.from_env({k: v for k, v in many.items() if k != "SLACK_STATE_SECRET"})
    with pytest.raises(ConfigError, match="needs HTTP mode"):
        SlackSettings.from_env(many | {"SLACK_APP_TOKEN": "xapp-1"})


def test_the_install_asks_for_the_manifests_scopes() -> None:
    manifest = (ROOT / "bots" / "slack" / "manifest.yml").read_text()
    bot_scopes = manifest.split("    bot:\n", 1)[1].split("\nsettings:", 1)[0]
    assert re.findall(r"^\s+- (\S+)$", bot_scopes, re.MULTILINE) == list(BOT_SCOPES)


def _user_texts(harness: Harness) -> list[str]:
    return [
        str(m.get("content") or "").split(": ", 1)[-1]
        for r in harness.model.chat_requests
        for m in r["messages"]
        if m["role"] == "user"
    ]


async def _until_forgotten(service: Any, client_id: str, team: str) -> None:
    """Bolt runs the revocation listener after it answered Slack: wait until the installation is gone."""
    async with asyncio.timeout(10):
        while await service.installations("slack").find(client_id, None, team) is not None:
            await asyncio.sleep(0.01)


async def test_with_one_token_an_uninstall_tells_the_operator(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.stop()
    await harness.start()  # SLACK_BOT_TOKEN
    assert await harness.event({"type": "app_uninstalled", "event_ts": "1700000350.000100"}) == 200
    async with asyncio.timeout(10):
        while not any("SLACK_BOT_TOKEN no longer works" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
