"""Images shared with the bot in Slack, over signed Events API requests, the fake Slack Web API (files served
to the bot token) and the scripted model: shown to an assistant with vision, told of once otherwise, never
indexed, and left alone when nobody asked the bot."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.settings import Settings
from tests.fakes.files import png_image
from tests.fakes.openai_server import FakeOpenAI, image_urls, last_user_text
from tests.fakes.slack_server import TEAM_ID, app_mention, file_share_message
from tests.test_slack import ALICE, CHANNEL, SLACK_ASSISTANTS, Harness, running_harness

VISION_ASSISTANTS = (
    SLACK_ASSISTANTS.replace('model = "fake-model"', 'model = "fake-model"\nvision = true')
    + """
[[assistants]]
name = "blind"
instructions = "You read text."
model = "fake-model"
"""
)
PNG = png_image(8, 6)
KEY = f"slack:{TEAM_ID}:{CHANNEL}"
INDEXED_NOTES = "Indexed notes.txt (1 chunk)."


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    """The Slack harness with an assistant that can see images, which it shows up to 0.02 MB each."""
    vision = replace(settings, max_image_mb=0.02)
    async with running_harness(tmp_path, fake_model, vision, assistants=VISION_ASSISTANTS) as h:
        yield h


def data_url(data: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


async def mention_with_files(harness: Harness, text: str, files: list[dict[str, object]], ts: str) -> None:
    """What Slack sends for a message that mentions the bot and shares files: the message, and the mention."""
    await harness.event(file_share_message(CHANNEL, ALICE, files, ts, text=text))
    await harness.event(app_mention(CHANNEL, ALICE, text, ts, files=files))


def posted(harness: Harness) -> list[str]:
    return [str(c.get("text") or "") for c in harness.slack.calls_to("chat.postMessage")]


async def test_an_image_in_a_mention_reaches_the_model_with_its_text_and_is_not_indexed(harness: Harness) -> None:
    info = harness.slack.add_file("F_GRAPH", "graph.png", PNG, "image/png", channel=CHANNEL)
    ts = "1700000300.000100"
    await mention_with_files(harness, "<@U_BOT> what does this graph say?", [info], ts)
    assert await harness.answer(CHANNEL, ts) == ["Answer to: what does this graph say?"]
    [request] = harness.model.chat_requests
    assert image_urls(request) == [data_url(PNG)]
    assert [(d.file_id, d.authorized) for d in harness.slack.downloads] == [("F_GRAPH", True)]
    assert harness.bot is not None
    assert await harness.bot.service.knowledge.files(KEY) == []
    assert posted(harness) == []  # no note about the file: an image is no document
    assert harness.slack.calls_to("chat.postEphemeral") == []


async def test_an_image_alone_in_a_direct_message_is_answered(harness: Harness) -> None:
    info = harness.slack.add_file("F_DM", "screenshot.png", PNG, "image/png", channel="D_ALICE")
    ts = "1700000301.000100"
    await harness.event(file_share_message("D_ALICE", ALICE, [info], ts))
    [answer] = await harness.answer("D_ALICE", ts)
    assert answer.startswith("Answer to:")
    assert image_urls(harness.model.chat_requests[-1]) == [data_url(PNG)]


async def test_a_reply_in_the_thread_of_the_answer_gets_a_placeholder_not_the_image(harness: Harness) -> None:
    info = harness.slack.add_file("F_PLAN", "plan.png", PNG, "image/png", channel=CHANNEL)
    top = "1700000302.000100"
    await mention_with_files(harness, "<@U_BOT> read this plan", [info], top)
    await harness.answer(CHANNEL, top)
    reply = "1700000302.000200"
    await harness.event(app_mention(CHANNEL, ALICE, "<@U_BOT> and the deadline", reply, thread_ts=top))
    await harness.answer(CHANNEL, top, count=2, asked=reply)
    later = harness.model.chat_requests[-1]
    assert image_urls(later, last=False) == []
    first = next(m for m in later["messages"] if m["role"] == "user")
    assert "read this plan\n[image plan.png: shown to you with this message, not shown again]" in first["content"]
    assert last_user_text(later).endswith("and the deadline")
    assert len(harness.slack.downloads) == 1


async def test_an_image_over_the_limit_gets_a_private_note_and_the_text_its_answer(harness: Harness) -> None:
    large = png_image(2, 2, padding=200_000)  # over the harness's 0.02 MB
    info = harness.slack.add_file("F_BIG", "photo.png", large, "image/png", channel=CHANNEL)
    ts = "1700000303.000100"
    await mention_with_files(harness, "<@U_BOT> is this sharp?", [info], ts)
    assert await harness.answer(CHANNEL, ts) == ["Answer to: is this sharp?\n[image photo.png: not shown to you]"]
    [note] = harness.slack.calls_to("chat.postEphemeral")
    assert note["user"] == ALICE
    assert note["thread_ts"] == ts
    assert note["text"] == (
        "photo.png is 0.2 MB, over the 0.02 MB limit for images here, so I did not look at it. Share a smaller one."
    )
    assert harness.slack.downloads == []  # Slack said how large it is: not fetched


async def test_without_vision_an_image_alone_gets_one_private_note_and_nothing_else(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.service")
    assert harness.bot is not None
    await harness.bot.service.set_channel_assistant(KEY, "blind")
    info = harness.slack.add_file("F_PIC", "photo.png", PNG, "image/png", channel=CHANNEL)
    ts = "1700000304.000100"
    event = app_mention(CHANNEL, ALICE, "<@U_BOT>", ts, files=[info])
    await harness.event(file_share_message(CHANNEL, ALICE, [info], ts, text="<@U_BOT>"))
    await harness.event(event, event_id="EvPIC")
    [note] = await harness.slack.wait_for("chat.postEphemeral")
    assert note["text"] == (
        "This assistant (blind) cannot see images, so I did not look at photo.png. If its model takes images, "
        "set `vision = true` for it in the assistants file."
    )
    await harness.event(event, event_id="EvPIC", retry_num=1)  # Slack sends it again
    async with asyncio.timeout(10):
        while not any("were told of before" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
    await harness.bot.service.wait_idle()
    assert len(harness.slack.calls_to("chat.postEphemeral")) == 1
    assert harness.model.chat_requests == []
    assert harness.slack.downloads == []
    assert posted(harness) == []  # no "not a kind of file the knowledge base can read"
    assert await harness.bot.service.knowledge.files(KEY) == []


async def test_an_image_shared_in_a_channel_without_a_mention_is_left_alone_and_a_document_still_indexed(
    harness: Harness,
) -> None:
    image = harness.slack.add_file("F_MEME", "meme.gif", b"GIF89a" + bytes(40), "image/gif", channel=CHANNEL)
    notes = harness.slack.add_file("F_NOTES", "notes.txt", b"Deploys happen on Tuesdays.", channel=CHANNEL)
    ts = "1700000305.000100"
    await harness.event(file_share_message(CHANNEL, ALICE, [image, notes], ts, text="for the team"))
    assert await harness.answer(CHANNEL, ts, run=False) == [INDEXED_NOTES]  # the files are handled in order
    assert [d.file_id for d in harness.slack.downloads] == ["F_NOTES"]
    assert harness.bot is not None
    assert [f.name for f in await harness.bot.service.knowledge.files(KEY)] == ["notes.txt"]
    assert harness.model.chat_requests == []
    assert harness.slack.calls_to("chat.postEphemeral") == []
