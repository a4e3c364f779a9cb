"""Bad input at ``/slack/events`` (HTTP mode), over real signed requests: a 4xx with a short ``{"error": ...}``,
one short log line without the body, nothing done, and the bot serving on. And a slash command Slack sends
twice runs once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from core.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, app_mention, event_callback, signed_headers, slash_command_form
from tests.test_slack import ALICE, CHANNEL, SECRET, SLACK_ASSISTANTS, Harness, chat_script

SECRET_TEXT = "the launch code is 0000-DO-NOT-LOG"


@pytest.fixture
async def harness(
    tmp_path: Path, fake_model: FakeOpenAI, settings: Settings, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Harness]:
    # Before the bot starts, as in production (core/logs.py sets INFO): Bolt's loggers take the root's level when
    # the app is built, and would otherwise stay quiet in a test whatever they log in production.
    caplog.set_level(logging.INFO)
    assistants = tmp_path / "slack-assistants.toml"
    assistants.write_text(SLACK_ASSISTANTS)
    fake_model.script = chat_script
    async with FakeSlack(members={CHANNEL: [ALICE]}) as slack:
        h = Harness(slack, fake_model, replace(settings, assistants_file=assistants), tmp_path)
        await h.start()
        yield h
        await h.stop()
        await h.http.close()


async def post(harness: Harness, body: bytes, headers: dict[str, str] | list[tuple[str, str]]) -> tuple[int, object]:
    """(status, body: parsed when it is JSON)."""
    async with harness.http.post(harness.url, data=body, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


def adapter_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the Slack front door (Bolt, aiohttp, the adapter) logged."""
    return [r for r in caplog.records if r.name.startswith(("slack_bolt", "slack_sdk", "aiohttp", "bots.slack"))]


def assert_refused_quietly(caplog: pytest.LogCaptureFixture, body: object) -> None:
    """A short error body, and one short line in the log: no traceback, no body."""
    assert isinstance(body, dict)
    assert isinstance(body["error"], str)
    assert len(body["error"]) < 120
    assert SECRET_TEXT not in caplog.text
    [line] = adapter_lines(caplog)
    assert line.name == "bots.slack.guard"
    assert line.levelno == logging.INFO
    assert line.exc_info is None
    assert len(line.getMessage()) < 250


async def assert_serves_on(harness: Harness, ts: str) -> None:
    """Nothing was done for the bad request, and the next good one is answered."""
    assert {c.method for c in harness.slack.calls} == {"auth.test"}
    assert harness.model.chat_requests == []
    assert await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> still there?", ts)) == 200
    assert await harness.answer(CHANNEL, ts) == ["Answer to: still there?"]


def signed_bytes(body: bytes, content_type: str) -> dict[str, str]:
    """Slack's headers for any body, UTF-8 or not (slack_sdk's signer takes only UTF-8): v0= HMAC-SHA256 of
    ``v0:{timestamp}:{body}``."""
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


def mention_body() -> bytes:
    event = app_mention(CHANNEL, ALICE, f"<@U_BOT> {SECRET_TEXT}", "1700000300.000100")
    return json.dumps(event_callback(event, "EvINPUT")).encode()


@pytest.mark.parametrize(
    "timestamp", ["abc", "1700000000.5", "", "9" * 5000], ids=["word", "fraction", "empty", "huge"]
)
async def test_a_timestamp_that_is_not_a_number_is_a_401(
    harness: Harness, caplog: pytest.LogCaptureFixture, timestamp: str
) -> None:
    """Signed correctly over the odd timestamp, so that only the timestamp is wrong (Bolt's int() raised: a 500)."""
    body = mention_body()
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }
    status, answer = await post(harness, body, headers)
    assert status == 401
    assert_refused_quietly(caplog, answer)
    assert "X-Slack-Request-Timestamp" in answer["error"]  # type: ignore[index]
    await assert_serves_on(harness, "1700000301.000100")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[]", "application/json"),
        (b'"x"', "application/json"),
        (b"1", "application/json"),
        (b"null", "application/json"),
        (b'{"type": "event_callback", "event": ', "application/json"),
        (b'{"type": "event_callback", "n": ' + b"1" * 5000 + b"}", "application/json"),
        (b'{"type": "event_callback", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
        (b'{"type": "event_callback", "authorizations": 5}', "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b'{"text": "caf\xe9"}', "application/json"),
        (b"payload=%5B%5D", "application/x-www-form-urlencoded"),
        (b"payload=%22x%22", "application/x-www-form-urlencoded"),
        (b"payload=not-json", "application/x-www-form-urlencoded"),
        (b'{"type": "url_verification", "challenge": "c"}', "application/json; charset=klingon"),
    ],
    ids=[
        "array",
        "string",
        "number",
        "null",
        "cut-off",
        "5000-digits",
        "nested-100000-deep",
        "field-of-a-wrong-type",
        "not-utf8",
        "latin-1-text",
        "form-payload-array",
        "form-payload-string",
        "form-payload-not-json",
        "unknown-charset",
    ],
)
async def test_a_signed_body_that_is_not_a_slack_payload_is_a_400(
    harness: Harness, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    status, answer = await post(harness, body, signed_bytes(body, content_type))
    assert status == 400
    assert_refused_quietly(caplog, answer)
    await assert_serves_on(harness, "1700000302.000100")


@pytest.mark.parametrize(
    "refusal",
    ["wrong-secret", "five-minutes-old", "no-signature", "two-signatures", "not-a-v0-signature"],
)
async def test_a_request_refused_for_its_signature_is_logged_in_one_line_without_its_body(
    harness: Harness, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    body = mention_body()
    headers = signed_headers("not-the-secret" if refusal == "wrong-secret" else SECRET, body)
    if refusal == "five-minutes-old":
        headers = signed_headers(SECRET, body, timestamp=int(time.time()) - 301)
    elif refusal == "no-signature":
        del headers["X-Slack-Signature"]
    elif refusal == "not-a-v0-signature":
        headers["X-Slack-Signature"] = "v1=" + headers["X-Slack-Signature"][3:]
    if refusal == "two-signatures":  # a replayed request, its signature kept and a second one added
        status, answer = await post(harness, body, [*headers.items(), ("X-Slack-Signature", "v0=" + "0" * 64)])
    else:
        status, answer = await post(harness, body, headers)
    assert status == 401
    assert_refused_quietly(caplog, answer)
    assert SECRET_TEXT not in json.dumps(answer)
    await assert_serves_on(harness, "1700000303.000100")


async def test_a_signed_request_just_inside_the_five_minutes_is_taken(harness: Harness) -> None:
    """The guard's freshness margin is seconds, not the window: a request four minutes old is Slack's."""
    event = app_mention(CHANNEL, ALICE, "<@U_BOT> a little late", "1700000304.000100")
    body = json.dumps(event_callback(event, "EvLATE")).encode()
    headers = signed_headers(SECRET, body, timestamp=int(time.time()) - 240)
    async with harness.http.post(harness.url, data=body, headers=headers) as response:
        assert response.status == 200
    assert await harness.answer(CHANNEL, "1700000304.000100") == ["Answer to: a little late"]


async def test_a_slash_command_slack_sends_twice_runs_once(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """The same invocation (its trigger_id and response_url) again, newly signed as Slack would: acknowledged,
    not run. The same command typed again is a new invocation, and runs."""
    once = slash_command_form(
        "/reset", "", CHANNEL, ALICE, harness.slack.response_url("r-once"), trigger_id="1700000305.1.aaa"
    )
    assert await harness.send(once) == 200
    await harness.slack.wait_for_response("r-once")
    assert await harness.send(once) == 200  # the listener decides before it acknowledges: it has decided now
    again = slash_command_form(
        "/reset", "", CHANNEL, ALICE, harness.slack.response_url("r-again"), trigger_id="1700000306.1.bbb"
    )
    assert await harness.send(again) == 200
    [answer] = await harness.slack.wait_for_response("r-again")
    assert "Started a new conversation" in answer["text"]
    # The repeat was handled before the new invocation was even sent; had it run, it would have answered by now.
    assert len(harness.slack.responses_to("r-once")) == 1
    assert "Slack sent it again" in caplog.text


async def test_a_slash_command_sent_again_to_a_restarted_bot_runs_once(harness: Harness) -> None:
    """Slack sends a late-acknowledged invocation again to whichever process is behind the app now: a
    restarted one, or another on the same database. It is remembered in the database, not in the process;
    and not the response_url itself (it lets whoever has it post into the channel), only its digest."""
    once = slash_command_form(
        "/reset", "", CHANNEL, ALICE, harness.slack.response_url("r-first"), trigger_id="1700000307.1.ccc"
    )
    assert await harness.send(once) == 200
    await harness.slack.wait_for_response("r-first")
    await harness.stop()
    await harness.start()  # a new process on the same database
    assert await harness.send(once) == 200
    again = slash_command_form(
        "/reset", "", CHANNEL, ALICE, harness.slack.response_url("r-second"), trigger_id="1700000308.1.ddd"
    )
    assert await harness.send(again) == 200
    await harness.slack.wait_for_response("r-second")
    assert len(harness.slack.responses_to("r-first")) == 1
    stored = sqlite3.connect(harness.settings.db_path).execute("SELECT key FROM deliveries").fetchall()
    assert len(stored) == 2
    assert all("r-first" not in key and "r-second" not in key and len(key) == 64 for (key,) in stored)


async def test_with_a_command_prefix_the_bot_answers_the_prefixed_names_only(harness: Harness) -> None:
    """SLACK_COMMAND_PREFIX=tl- for a workspace where another app has /reset: /tl-reset is Threadline's."""
    await harness.stop()
    await harness.start(command_prefix="tl-")
    prefixed = slash_command_form(
        "/tl-reset", "", CHANNEL, ALICE, harness.slack.response_url("r-prefixed"), trigger_id="1700000309.1.eee"
    )
    assert await harness.send(prefixed) == 200
    [answer] = await harness.slack.wait_for_response("r-prefixed")
    assert "Started a new conversation" in answer["text"]
    plain = slash_command_form(
        "/reset", "", CHANNEL, ALICE, harness.slack.response_url("r-plain"), trigger_id="1700000310.1.fff"
    )
    assert await harness.send(plain) == 404  # another app's command: Bolt finds no listener for it
