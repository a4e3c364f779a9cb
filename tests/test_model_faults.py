"""Model endpoints that misbehave, over the real protocol: what the person is told, what the log and readiness say.

A ``200`` that is not a model's answer (a proxy's error page, a wrong OPENAI_BASE_URL) fails the run instead of
completing it empty; a model that goes silent is given up on after one THREADLINE_MODEL_TIMEOUT, not after
every retry, and the words it had already streamed stay in the thread.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import aiohttp
import openai
import pytest

from bots.api.app import ApiServer
from core.events import RunFailed, TextDelta
from core.model_client import ModelClient
from core.service import Threadline
from core.settings import Settings
from tests.conftest import ServiceFactory
from tests.fakes.openai_server import FakeOpenAI, Hang, Raw, Reply, last_user_text
from tests.helpers import CHANNEL, collect, post

KEY = "sk-test-not-a-real-key"  # the settings fixture's
SILENCE = 0.5  # THREADLINE_MODEL_TIMEOUT in the silence tests


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


NOT_ANSWERS = {
    "html page": (
        Raw(b"<html><body><h1>502 Bad Gateway</h1><p>Authorization: Bearer " + KEY.encode() + b"</p></body></html>"),
        "text/html",
        "<html><body><h1>502 Bad Gateway",
    ),
    "empty body": (Raw(b"", content_type=""), "no content type", "the body is empty"),
    "json, not a stream": (
        Raw(
            json.dumps({"object": "chat.completion", "choices": [], "detail": "stream ignored"}).encode(),
            content_type="application/json",
        ),
        "application/json",
        '{"object": "chat.completion"',
    ),
    "stream without a choice": (
        Raw(b'data: {"id": "x", "choices": [], "usage": {"total_tokens": 1}}\n\ndata: [DONE]\n\n', "text/event-stream"),
        "text/event-stream",
        '"choices": []',
    ),
    "stream of no json": (Raw(b"data: upstream timed out\n\n", "text/event-stream"), "text/event-stream", "upstream"),
}


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("answer", "content_type", "start"), NOT_ANSWERS.values(), ids=NOT_ANSWERS.keys())
async def test_a_200_that_is_not_a_models_answer_fails_the_run_and_readiness(
    service: Threadline,
    fake_model: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    answer: Raw,
    content_type: str,
    start: str,
) -> None:
    fake_model.script = lambda req: answer
    with caplog.at_level(logging.INFO):
        handle = await post(service, "hello")
        events = await collect(handle)

    result = events[-1]
    assert isinstance(result, RunFailed)
    assert result.status == "failed"
    # One sentence the person can act on; the detail is not theirs.
    assert result.message == (
        "The model endpoint answered with something that is not a model's answer, "
        "so whoever runs the bot should check OPENAI_BASE_URL."
    )
    assert not [e for e in events if isinstance(e, TextDelta)]
    run = await service.store.get_run(handle.run_id)
    assert run.status == "failed"
    assert "NotAModelAnswer" in (run.last_error or "")
    assert content_type in (run.last_error or "")
    # One log line, with the content type and the first bytes; never the key, even when the page echoes it.
    (line,) = warnings(caplog)
    assert line.name == "core.runner"
    assert content_type in line.getMessage()
    assert start in line.getMessage()
    assert not [r for r in caplog.records if KEY in r.getMessage()]
    assert KEY not in (run.last_error or "")
    # A wrong address does not fix itself: asked once, and readiness says what to check.
    assert len(fake_model.chat_requests) == 1
    problems = await service.problems()
    assert set(problems) == {"model"}
    assert "not a model's answer" in problems["model"]
    assert "OPENAI_BASE_URL" in problems["model"]


async def get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json()


async def test_readyz_reports_the_model_until_it_answers_like_a_model_again(
    api_server: ApiServer, service: Threadline, fake_model: FakeOpenAI
) -> None:
    readyz = f"http://{api_server.host}:{api_server.port}/readyz"
    fake_model.script = lambda req: Raw(b"<!doctype html><title>Sign in</title>")
    assert isinstance((await collect(await post(service, "hello")))[-1], RunFailed)
    status, body = await get(readyz)
    assert status == 503
    assert body["failed"] == ["model"]
    assert "text/html" in body["checks"]["model"]
    assert "<title>" not in body["checks"]["model"]  # bodies stay in the log

    # A real stream with a provider's keep-alive comments, pings and CRLF line ends is a model's answer.
    healthy = b"".join(
        [
            b": keep-alive\n\n",
            chunk({"role": "assistant", "content": ""}),
            b'data: {"type": "ping"}\n\n',
            chunk({"content": "back "}),
            chunk({"content": "again"}),
            chunk({}, "stop"),
            b"data: [DONE]\n\n",
        ]
    ).replace(b"\n", b"\r\n")
    fake_model.script = lambda req: Raw(healthy, "text/event-stream")
    result = await (await post(service, "again")).result()
    assert not isinstance(result, RunFailed), result
    assert result.text == "back again"
    status, body = await get(readyz)
    assert status == 200, body


@pytest.mark.parametrize("silence", [Hang(), Hang(headers=True)], ids=["no headers", "headers, then nothing"])
async def test_a_model_that_says_nothing_ends_the_run_after_one_timeout_not_one_per_retry(
    open_service: ServiceFactory, fake_model: FakeOpenAI, caplog: pytest.LogCaptureFixture, silence: Hang
) -> None:
    service = await open_service(model_timeout=SILENCE, model_max_retries=3)  # retries stay on for 429 and 5xx
    fake_model.script = lambda req: silence
    began = time.monotonic()
    with caplog.at_level(logging.INFO):
        handle = await post(service, "hello")
        events = await collect(handle)
    ended = time.monotonic()

    # A bound, not a wait: with every retry waiting its own timeout this is 4x SILENCE plus backoff.
    assert ended - fake_model.stalls[0] < 2 * SILENCE
    assert ended - began < 2 * SILENCE + 1.0
    assert len(fake_model.chat_requests) == 1
    result = events[-1]
    assert isinstance(result, RunFailed)
    assert result.status == "failed"
    assert [e.type for e in events].count("run_failed") == 1  # told once
    assert "slow" in result.message
    assert "did not answer in time" in result.message
    assert "retrying" not in result.message
    run = await service.store.get_run(handle.run_id)
    assert run.status == "failed"
    assert "said nothing for 0.5 s" in (run.last_error or "")
    (line,) = warnings(caplog)
    assert "THREADLINE_MODEL_TIMEOUT" in line.getMessage()
    assert "THREADLINE_MODEL_TIMEOUT" in (await service.problems())["model"]


async def test_text_streamed_before_a_stall_is_kept_and_marked_cut_off(
    open_service: ServiceFactory, fake_model: FakeOpenAI
) -> None:
    service = await open_service(model_timeout=SILENCE, model_max_retries=3)
    partial = "The capital of France is Paris, and its"
    fake_model.script = lambda req: Reply(text=partial, stall=True)
    handle = await post(service, "capital of France?")
    events = await collect(handle)
    ended = time.monotonic()

    assert ended - fake_model.stalls[0] < 2 * SILENCE
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == partial  # shown as it came
    result = events[-1]
    assert isinstance(result, RunFailed)
    assert result.status == "failed"
    assert "slow" in result.message
    assert "cut off" in result.message
    run = await service.store.get_run(handle.run_id)
    assert run.status == "failed"
    assert "in the middle of its answer" in (run.last_error or "")
    stored = await service.store.thread_messages(await service.store.current_thread(CHANNEL))
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].text.startswith(partial)
    assert "cut off" in stored[1].text
    assert stored[1].run_id == handle.run_id

    # The next question's history carries the cut-off answer, so the model knows where it stopped.
    fake_model.script = lambda req: Reply(text=f"echo: {last_user_text(req)}")
    assert not isinstance(await (await post(service, "go on")).result(), RunFailed)
    sent = [m["content"] for m in fake_model.chat_requests[-1]["messages"][1:]]
    assert sent[1].startswith(partial)
    assert "cut off" in sent[1]


async def test_a_stream_that_ends_before_its_finish_is_an_incomplete_answer_not_a_complete_one(
    service: Threadline, fake_model: FakeOpenAI
) -> None:
    body = chunk({"role": "assistant", "content": ""}) + chunk({"content": "Half an ans"})  # no finish, no [DONE]
    fake_model.script = lambda req: Raw(body, "text/event-stream")
    handle = await post(service, "hello")
    result = await handle.result()
    assert isinstance(result, RunFailed)
    assert result.status == "failed"
    assert "before it was finished" in result.message
    assert "cut off" in result.message
    stored = await service.store.thread_messages(await service.store.current_thread(CHANNEL))
    assert stored[-1].role == "assistant"
    assert stored[-1].text.startswith("Half an ans")
    assert "cut off" in stored[-1].text


async def test_plain_completions_and_embeddings_refuse_a_page_that_is_not_an_answer(
    settings: Settings, fake_model: FakeOpenAI
) -> None:
    """The rolling summary and file search call the endpoint without streaming: same judgement."""
    models = ModelClient(settings)
    try:
        fake_model.script = lambda req: Raw(b"<html>Log in to continue</html>")
        with pytest.raises(openai.APIError, match=r"text/html.*not a model's answer.*Log in to continue"):
            await models.complete("fake-model", "Summarise.", "text")
        fake_model.script = lambda req: Raw(b'{"status": "ok"}', content_type="application/json")
        with pytest.raises(openai.APIError, match="not a model's answer"):
            await models.complete("fake-model", "Summarise.", "text")
        fake_model.embeddings_error = Raw(b"", content_type="")
        with pytest.raises(openai.APIError, match="empty"):
            await models.embed("fake-embedding", ["some text"])
        assert len(fake_model.requests) == 3  # none retried
    finally:
        await models.close()
