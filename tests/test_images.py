"""Images shared with the assistant, through the core: shown to a model that takes them, refused in one short
message otherwise, and kept in a thread as a placeholder once answered (core/images.py)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from core.assistants import load_assistants
from core.errors import ConfigError
from core.images import IMAGE_TOKENS, SharedImage, declared_kind, is_picture, sniff
from core.knowledge.base import DownloadFailed
from core.models import Incoming
from core.service import Received, Threadline
from core.settings import Settings
from core.store import Store
from core.store.images import ImageRow
from core.tokens import TokenCounter
from tests.conftest import ServiceFactory
from tests.fakes.files import png_image
from tests.fakes.openai_server import FakeOpenAI, Reply, image_urls, last_user_text
from tests.helpers import ALICE, CHANNEL, collect
from tests.test_processes import HeldModel, Told, _told, graceful, until

VISION_ASSISTANTS = """
default = "looker"

[[assistants]]
name = "looker"
instructions = "You look at what people share."
model = "fake-model"
tools = []
vision = true

[[assistants]]
name = "blind"
instructions = "You read text only."
model = "fake-model"
tools = []
"""

PNG = png_image(4, 3)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
async def looker(open_service: ServiceFactory, tmp_path: Path, fake_model: FakeOpenAI) -> Threadline:
    path = tmp_path / "vision.toml"
    path.write_text(VISION_ASSISTANTS)
    fake_model.script = lambda request: Reply(text=f"seen {len(image_urls(request))}: {last_user_text(request)}")
    return await open_service(assistants_file=path, max_image_mb=0.05)


async def share(service: Threadline, text: str, *images: SharedImage, msg_id: str | None = None) -> Received:
    return await service.receive(Incoming(CHANNEL, ALICE, text, platform_msg_id=msg_id, images=images))


async def stored_images(store: Store) -> list[tuple[Any, ...]]:
    return await store.call(lambda db: db.execute("SELECT id, name, mime, bytes FROM images").fetchall())


async def test_an_image_reaches_the_model_as_an_image_part_with_its_message(
    looker: Threadline, fake_model: FakeOpenAI
) -> None:
    received = await share(looker, "what is on this chart?", SharedImage("chart.png", "image/png", len(PNG), PNG))
    assert received.notice is None
    assert received.handle is not None
    events = await collect(received.handle)
    assert events[-1].type == "run_completed"
    [request] = fake_model.chat_requests
    [message] = [m for m in request["messages"] if m["role"] == "user"]
    assert message["content"][0] == {"type": "text", "text": "alice: what is on this chart?"}
    assert message["content"][1]["image_url"]["url"] == data_url(PNG)
    assert image_urls(request) == [data_url(PNG)]


async def test_later_runs_get_a_placeholder_and_the_bytes_and_their_tokens_go(
    looker: Threadline, fake_model: FakeOpenAI
) -> None:
    received = await share(looker, "look", SharedImage("chart.png", "image/png", data=PNG))
    assert received.handle is not None
    [row] = await stored_images(looker.store)
    assert row[1:] == ("chart.png", "image/png", len(PNG))
    thread_id = await looker.store.current_thread(CHANNEL)
    [(_, _, tokens_before, _)] = [r for r in await looker.store.history_index(thread_id, None) if r[3] == "user"]
    await collect(received.handle)
    await looker.wait_idle()

    assert await stored_images(looker.store) == []  # the run that was shown it has ended: the bytes are gone
    [(_, _, tokens_after, _)] = [r for r in await looker.store.history_index(thread_id, None) if r[3] == "user"]
    assert tokens_before - tokens_after > IMAGE_TOKENS - 30  # what it costs now is its placeholder's

    follow_up = await share(looker, "and what colour was it?")
    assert follow_up.handle is not None
    await collect(follow_up.handle)
    later = fake_model.chat_requests[-1]
    assert image_urls(later, last=False) == []
    first_user = next(m for m in later["messages"] if m["role"] == "user")
    assert "[image chart.png: shown to you with this message, not shown again]" in str(first_user["content"])
    # The thread's text (summaries, exports) names the image.
    messages = await looker.store.thread_messages(thread_id)
    assert messages[0].text == "look\n[image chart.png]"


async def test_without_vision_the_person_is_told_once_and_an_image_alone_runs_nothing(
    looker: Threadline, fake_model: FakeOpenAI
) -> None:
    await looker.set_channel_assistant(CHANNEL, "blind")
    downloads: list[int] = []

    async def download(limit: int) -> bytes:
        downloads.append(limit)
        return PNG

    image = SharedImage("photo.png", "image/png", len(PNG), download=download)
    first = await share(looker, "", image, msg_id="m1")
    assert first.handle is None
    assert first.notice == (
        "This assistant (blind) cannot see images, so I did not look at photo.png. If its model takes images, "
        "set `vision = true` for it in the assistants file."
    )
    again = await share(looker, "", image, msg_id="m1")  # the platform delivers it again
    assert again == Received(None, None)
    await looker.wait_idle()
    assert fake_model.chat_requests == []
    assert downloads == []  # nothing fetched for a model that would not be shown it
    assert await looker.store.thread_messages(await looker.store.current_thread(CHANNEL)) == []
    assert await looker.knowledge.files(CHANNEL) == []


async def test_without_vision_the_text_is_answered_and_the_model_knows_an_image_was_not_shown(
    looker: Threadline, fake_model: FakeOpenAI
) -> None:
    await looker.set_channel_assistant(CHANNEL, "blind")
    image = SharedImage("photo.png", "image/png", len(PNG), PNG)
    received = await share(looker, "what do you think?", image, image, msg_id="m2")
    assert received.notice is not None
    assert "these 2 images" in received.notice
    assert received.handle is not None
    await collect(received.handle)
    [request] = fake_model.chat_requests
    assert image_urls(request) == []
    assert last_user_text(request) == (
        "alice: what do you think?\n[image photo.png: not shown to you]\n[image photo.png: not shown to you]"
    )


async def test_an_image_too_large_or_of_another_kind_is_left_out_with_one_short_message(
    looker: Threadline, fake_model: FakeOpenAI
) -> None:
    large = png_image(2, 2, padding=60_000)  # over the 0.05 MB this service shows
    downloads: list[str] = []

    async def download(limit: int) -> bytes:
        downloads.append("fetched")
        return large

    received = await share(
        looker,
        "three pictures",
        SharedImage("big.png", "image/png", len(large), download=download),  # declared over the limit
        SharedImage("quiet.png", "image/png", None, download=download),  # found over the limit once fetched
        SharedImage("phone.heic", "image/heic", 100, b"\x00\x00\x00\x18ftypheic"),
        SharedImage("fake.png", "image/png", 10, b"not a png!"),
        SharedImage("ok.png", "image/png", len(PNG), PNG),
    )
    assert received.notice is not None
    lines = received.notice.splitlines()
    assert lines == [
        "big.png is 0.1 MB, over the 0.05 MB limit for images here, so I did not look at it. Share a smaller one.",
        "quiet.png is 0.1 MB, over the 0.05 MB limit for images here, so I did not look at it. Share a smaller one.",
        "I can look at PNG, JPEG, GIF and WebP images; phone.heic is not one of them, so I did not look at it.",
        "fake.png is not a PNG, JPEG, GIF or WebP image, so I did not look at it.",
    ]
    assert downloads == ["fetched"]  # the one declared too large was never fetched
    assert received.handle is not None
    await collect(received.handle)
    assert image_urls(fake_model.chat_requests[-1]) == [data_url(PNG)]


async def test_a_failed_download_is_said_and_the_text_still_answered(
    looker: Threadline, fake_model: FakeOpenAI
) -> None:
    async def download(limit: int) -> bytes:
        raise DownloadFailed("the platform said no")

    received = await share(looker, "see this", SharedImage("gone.png", "image/png", 10, download=download))
    assert received.notice == "I could not download gone.png, so I did not look at it. Share it again."
    assert received.handle is not None
    await collect(received.handle)
    assert last_user_text(fake_model.chat_requests[-1]) == "alice: see this\n[image gone.png: not shown to you]"


async def test_an_image_waits_in_the_database_for_an_answer_the_next_start_writes(
    open_service: ServiceFactory, settings: Settings, tmp_path: Path, fake_model: FakeOpenAI
) -> None:
    """A stop cuts the answer off before it is written: the image is kept with its question, and the next
    process shows it to the model when it answers."""
    path = tmp_path / "vision.toml"
    path.write_text(VISION_ASSISTANTS)
    model = HeldModel()
    fake_model.script = model
    stopping = await open_service(assistants_file=path, **graceful(settings, 0.2))
    received = await share(stopping, "after the restart", SharedImage("chart.png", "image/png", data=PNG))
    assert received.handle is not None
    await model.wait_asked("after the restart")
    await stopping.close()
    store = await Store.open(settings.db_path)
    try:
        assert [row[1] for row in await stored_images(store)] == ["chart.png"]  # left queued, with its image
    finally:
        await store.close()
    model.release.set()
    told = Told()
    again = await open_service(notify=told, assistants_file=path)
    await until(lambda: _told(told, 1), "the answer posted at the next start")
    await again.wait_idle()
    assert [image_urls(r) for r in fake_model.chat_requests] == [[data_url(PNG)], [data_url(PNG)]]
    assert await stored_images(again.store) == []


def test_image_kinds_come_from_the_bytes_and_pictures_are_never_documents() -> None:
    assert sniff(PNG) == "png"
    assert sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff(b"GIF89a....") == "gif"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff(b"%PDF-1.7") is None
    assert declared_kind("a.JPG", None) == "jpeg"
    assert declared_kind("a.bin", "image/webp") == "webp"
    assert declared_kind("a.png", "image/heic") is None
    assert declared_kind("a.png", "application/octet-stream") == "png"
    assert is_picture("scan.heic", None)
    assert is_picture("x", "image/svg+xml")
    assert is_picture("shot.PNG", None)
    assert not is_picture("notes.txt", "text/plain")
    assert not is_picture("report.pdf", "application/pdf")


def test_an_image_part_counts_as_an_image_not_as_its_base64() -> None:
    tokens = TokenCounter()
    text = {"role": "user", "content": [{"type": "input_text", "text": "alice: look"}]}
    url = "data:image/png;base64," + "A" * 400_000
    shown = {"role": "user", "content": [*text["content"], {"type": "input_image", "image_url": url}]}
    stored = {"role": "user", "content": [*text["content"], {"type": "input_image", "image_id": "img_1", "name": "a"}]}
    assert tokens.count_item(shown) - tokens.count_item(text) == IMAGE_TOKENS
    assert tokens.count_item(stored) - tokens.count_item(text) == IMAGE_TOKENS


def test_vision_is_a_yes_or_no_setting_of_an_assistant(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(VISION_ASSISTANTS)
    config = load_assistants(path, default_model="m")
    assert config.get("looker").vision is True
    assert config.get("blind").vision is False
    assert config.get(None).name == "looker"
    path.write_text('[[assistants]]\nname = "x"\nvision = "yes"\n')
    with pytest.raises(ConfigError, match="key 'vision' must be true or false"):
        load_assistants(path, default_model="m")


async def test_the_database_lets_go_of_an_image_when_its_run_ends_or_its_message_goes(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "images.db")
    try:
        kept: list[int] = []
        for n in (1, 2):
            posted = await store.post_user_message(
                channel=CHANNEL, author_id="U1", author_name="alice", text=f"look {n}",
                item={"role": "user", "content": f"look {n}"}, tokens=1000, platform_msg_id=f"m{n}",
                images=[ImageRow(f"img_{n}", f"{n}.png", "image/png", PNG, 700)],
            )  # fmt: skip
            assert posted is not None
            kept.append(posted[0])
            run = posted[1]
        assert len(await stored_images(store)) == 2
        await store.update_run(run.id, status="in_progress")  # not ended: the image stays
        assert len(await stored_images(store)) == 2
        await store.update_run(run.id, status="cancelled")
        assert [row[0] for row in await stored_images(store)] == ["img_1"]
        [second] = await store.messages_by_id([kept[1]])
        assert second.tokens == 300
        await store.delete_message(kept[0])
        assert await stored_images(store) == []
    finally:
        await store.close()


async def test_an_upgraded_database_keeps_images_with_their_messages(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = await Store.open(path, stop_before="m020_images")
    assert "m020_images" not in await old.applied_migrations()
    await old.close()
    store = await Store.open(path)
    try:
        assert "m020_images" in await store.applied_migrations()
        assert await stored_images(store) == []
    finally:
        await store.close()
