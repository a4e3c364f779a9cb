"""``/upload`` of an image in the console (``python -m bots.console`` over pipes, the scripted model behind it):
a message of its own for an assistant with vision, one short line otherwise; never one of the channel's files."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tests.fakes.files import png_image
from tests.fakes.openai_server import FakeOpenAI, Reply, image_urls, last_user_text
from tests.test_console import console_env, run_console

ASSISTANTS = """
default = "{name}"

[[assistants]]
name = "{name}"
instructions = "You look at what people share."
model = "fake-model"
vision = {vision}
"""
PNG = png_image(3, 3)


def seeing(request: dict[str, Any]) -> Reply:
    return Reply(text=f"I see {len(image_urls(request))} image(s) after: {last_user_text(request) or '-'}")


async def test_an_uploaded_image_is_shown_to_an_assistant_with_vision(tmp_path: Path) -> None:
    (tmp_path / "assistants.toml").write_text(ASSISTANTS.format(name="looker", vision="true"))
    (tmp_path / "shot.png").write_bytes(PNG)
    async with FakeOpenAI(seeing) as fake:
        env = console_env(
            tmp_path, OPENAI_BASE_URL=fake.base_url, THREADLINE_ASSISTANTS=str(tmp_path / "assistants.toml")
        )
        code, out, err = await run_console(env, f"/upload {tmp_path / 'shot.png'}\nwhat was it?\n/files\n", tmp_path)
    assert code == 0, err
    first, second = fake.chat_requests
    assert image_urls(first) == [f"data:image/png;base64,{base64.b64encode(PNG).decode()}"]
    assert image_urls(second, last=False) == []  # the next message gets a placeholder
    assert "[image shot.png: shown to you with this message, not shown again]" in str(second["messages"])
    assert "I see 1 image(s) after:" in out
    assert "I see 0 image(s) after:" in out
    assert "not a kind of file" not in out
    assert "This channel has no files yet." in out  # /files: an image is no document


async def test_without_vision_an_uploaded_image_gets_one_line_and_no_model_call(tmp_path: Path) -> None:
    (tmp_path / "assistants.toml").write_text(ASSISTANTS.format(name="reader", vision="false"))
    (tmp_path / "shot.png").write_bytes(PNG)
    async with FakeOpenAI(seeing) as fake:
        env = console_env(
            tmp_path, OPENAI_BASE_URL=fake.base_url, THREADLINE_ASSISTANTS=str(tmp_path / "assistants.toml")
        )
        code, out, err = await run_console(env, f"/upload {tmp_path / 'shot.png'}\n", tmp_path)
    assert code == 0, err
    assert out.strip().splitlines() == [
        "This assistant (reader) cannot see images, so I did not look at shot.png. If its model takes images, "
        "set `vision = true` for it in the assistants file."
    ]
    assert fake.chat_requests == []


async def test_an_image_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "assistants.toml").write_text(ASSISTANTS.format(name="looker", vision="true"))
    (tmp_path / "big.png").write_bytes(png_image(2, 2, padding=300_000))
    async with FakeOpenAI(seeing) as fake:
        env = console_env(
            tmp_path,
            OPENAI_BASE_URL=fake.base_url,
            THREADLINE_ASSISTANTS=str(tmp_path / "assistants.toml"),
            THREADLINE_MAX_IMAGE_MB="0.1",
        )
        code, out, err = await run_console(env, f"/upload {tmp_path / 'big.png'}\n", tmp_path)
    assert code == 0, err
    assert out.strip() == (
        "big.png is 0.3 MB, over the 0.1 MB limit for images here, so I did not look at it. Share a smaller one."
    )
    assert fake.chat_requests == []
