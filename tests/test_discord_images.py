"""Images shared with the bot in Discord, over the fake gateway, REST API and CDN with the scripted model:
shown to an assistant with vision, told of once otherwise, and never indexed as files."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.settings import Settings
from tests.fakes.discord_server import CHANNEL_ID, DM_CHANNEL_ID, GUILD_ID
from tests.fakes.files import png_image
from tests.fakes.openai_server import FakeOpenAI, image_urls
from tests.test_discord import DISCORD_ASSISTANTS, Harness, running_harness

VISION_ASSISTANTS = (
    DISCORD_ASSISTANTS.replace('model = "fake-model"', 'model = "fake-model"\nvision = true')
    + """
[[assistants]]
name = "blind"
instructions = "You read text."
model = "fake-model"
"""
)
PNG = png_image(5, 5)
KEY = f"discord:{GUILD_ID}:{CHANNEL_ID}"


@pytest.fixture
async def harness(tmp_path: Path, fake_model: FakeOpenAI, settings: Settings) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, fake_model, settings, assistants=VISION_ASSISTANTS) as h:
        yield h


def data_url(data: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


async def test_an_image_on_a_mention_reaches_the_model_with_its_text_and_is_not_indexed(harness: Harness) -> None:
    fake = harness.fake
    png = fake.attachment("screen.png", PNG, content_type="image/png")
    question = await fake.send_message("what does this screen say", attachments=[png])
    (reply,) = await harness.answer(question, ending="what does this screen say")
    assert reply["content"] == "Answer to: what does this screen say"
    assert image_urls(harness.model.chat_requests[-1]) == [data_url(PNG)]
    assert fake.downloads == [png.url]
    assert harness.bot is not None
    assert await harness.bot.service.knowledge.files(KEY) == []
    assert [m["content"] for m in harness.replies_to(question)] == [reply["content"]]  # no note about a file
    assert not [r for r in fake.reactions if r[1] == int(question["id"])]


async def test_an_image_alone_in_a_direct_message_is_answered(harness: Harness) -> None:
    fake = harness.fake
    png = fake.attachment("photo.png", PNG, content_type="image/png")
    sent = await fake.send_message("", channel_id=DM_CHANNEL_ID, mention_bot=False, attachments=[png])
    (reply,) = await harness.answer(sent, ending="Alice:")
    assert reply["content"] == "Answer to: Alice:"
    assert image_urls(harness.model.chat_requests[-1]) == [data_url(PNG)]


async def test_without_vision_an_image_alone_gets_one_short_reply_and_no_model_call(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.service")
    assert harness.bot is not None
    await harness.bot.service.set_channel_assistant(KEY, "blind")
    fake = harness.fake
    png = fake.attachment("photo.png", PNG, content_type="image/png")
    sent = await fake.send_message("", attachments=[png])
    await fake.wait_until(lambda: bool(harness.replies_to(sent)), what="the note about the image")
    await fake.dispatch("MESSAGE_CREATE", sent)  # a replay after a resume
    async with asyncio.timeout(10):
        while not any("were told of before" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
    await harness.bot.service.wait_idle()
    assert [m["content"] for m in harness.replies_to(sent)] == [
        "This assistant (blind) cannot see images, so I did not look at photo.png. If its model takes images, "
        "set `vision = true` for it in the assistants file."
    ]
    assert harness.model.chat_requests == []
    assert fake.downloads == []
    assert await harness.bot.service.knowledge.files(KEY) == []


async def test_an_image_in_a_message_not_for_the_bot_is_not_indexed_and_a_document_beside_it_is(
    harness: Harness,
) -> None:
    fake = harness.fake
    png = fake.attachment("meme.png", PNG, content_type="image/png")
    notes = fake.attachment("notes.txt", b"Deploys happen on Tuesdays.", content_type="text/plain")
    shared = await fake.send_message("fyi", mention_bot=False, attachments=[png, notes])
    await fake.wait_until(lambda: bool(harness.replies_to(shared)), what="the note about the files")
    assert [m["content"] for m in harness.replies_to(shared)] == ["Indexed notes.txt (1 chunk)."]
    assert fake.downloads == [notes.url]
    assert harness.bot is not None
    assert [f.name for f in await harness.bot.service.knowledge.files(KEY)] == ["notes.txt"]
    assert harness.model.chat_requests == []
