"""Embeddings from another endpoint than the chat model's: ``THREADLINE_EMBEDDING_BASE_URL`` and
``THREADLINE_EMBEDDING_API_KEY``, through the console channel against two scripted servers on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.fakes.openai_server import Answer, FakeOpenAI, Raw, Reply, ToolCall, offered_tools
from tests.test_console import console_env, run_console

HANDBOOK = """# Handbook

## Holidays
Every employee has 27 days of paid holiday a year; unused days expire on 31 March.
"""

CHAT_KEY = "sk-chat-key-not-real"
EMBED_KEY = "sk-embed-key-not-real-either"


def search_then_answer(req: dict[str, Any]) -> Answer:
    if any(m.get("role") == "tool" for m in req["messages"]):
        return Reply(text="27 days [1].")
    if "file_search" in offered_tools(req):
        return Reply(tool_calls=(ToolCall("file_search", {"query": "paid holiday days"}),))
    return Reply(text="no files")


@pytest.mark.parametrize("own_key", [True, False], ids=["own key", "chat key"])
async def test_embeddings_come_from_their_own_endpoint(tmp_path: Path, own_key: bool) -> None:
    (tmp_path / "handbook.md").write_text(HANDBOOK)
    async with FakeOpenAI(search_then_answer) as chat, FakeOpenAI() as embeddings:
        env = console_env(
            tmp_path,
            OPENAI_BASE_URL=chat.base_url,
            OPENAI_API_KEY=CHAT_KEY,
            THREADLINE_EMBEDDING_MODEL="nomic-embed-text",
            THREADLINE_EMBEDDING_BASE_URL=embeddings.base_url,
            **({"THREADLINE_EMBEDDING_API_KEY": EMBED_KEY} if own_key else {}),
        )
        stdin = f"/upload {tmp_path / 'handbook.md'}\nhow many holiday days?\n"
        code, out, err = await run_console(env, stdin, tmp_path)
    assert code == 0, err
    assert "27 days [1]." in out
    assert "[1] handbook.md, Handbook > Holidays" in out
    # The chat endpoint was asked for answers only; every embedding (the file's, the query's) came from the other.
    assert chat.chat_requests
    assert not chat.embedding_requests
    assert {path for path, _ in chat.authorizations} == {"/v1/chat/completions"}
    assert len(embeddings.embedding_requests) >= 2
    assert not embeddings.chat_requests
    assert {r["model"] for r in embeddings.embedding_requests} == {"nomic-embed-text"}
    key = EMBED_KEY if own_key else CHAT_KEY
    assert {auth for _, auth in embeddings.authorizations} == {f"Bearer {key}"}
    assert {auth for _, auth in chat.authorizations} == {f"Bearer {CHAT_KEY}"}
    assert EMBED_KEY not in out + err


async def test_embedding_endpoint_failure_is_logged_without_its_key(tmp_path: Path) -> None:
    (tmp_path / "handbook.md").write_text(HANDBOOK)
    async with FakeOpenAI(search_then_answer) as chat, FakeOpenAI() as embeddings:
        embeddings.embeddings_error = Raw(
            f"<html>401: Authorization: Bearer {EMBED_KEY} is not valid</html>".encode(), status=401
        )
        env = console_env(
            tmp_path,
            OPENAI_BASE_URL=chat.base_url,
            THREADLINE_EMBEDDING_MODEL="nomic-embed-text",
            THREADLINE_EMBEDDING_BASE_URL=embeddings.base_url,
            THREADLINE_EMBEDDING_API_KEY=EMBED_KEY,
        )
        code, out, err = await run_console(env, f"/upload {tmp_path / 'handbook.md'}\nhow many days?\n", tmp_path)
    assert code == 0, err
    assert "embedding failed" in err  # the file is indexed for keyword search, and the log says why
    assert "27 days [1]." in out
    assert EMBED_KEY not in out + err
    assert not chat.embedding_requests


def test_the_embedding_endpoint_is_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"THREADLINE_EMBEDDING_BASE_URL": "http://127.0.0.1:11434/v1", "THREADLINE_EMBEDDING_API_KEY": EMBED_KEY}
    )
    assert settings.embedding_base_url == "http://127.0.0.1:11434/v1"
    assert settings.embedding_api_key == EMBED_KEY
    assert settings.embeddings_configured
    assert not settings.model_configured
    assert EMBED_KEY not in repr(settings)
    assert not Settings.from_env({}).embeddings_endpoint
