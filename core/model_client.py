"""The model endpoint: the one module that imports ``openai``.

Any OpenAI-compatible server works (OpenAI, Azure, vLLM, Ollama, llama.cpp, LM Studio, ...):
requests go through ``openai.AsyncOpenAI`` with the Chat Completions API, which the
openai SDK retries with exponential backoff on 429, 5xx and dropped connections
(honouring ``Retry-After``).

Two faults the SDK lets through are judged here, on the bytes, by the HTTP client the SDK is given:

- Silence. ``THREADLINE_MODEL_TIMEOUT`` seconds without a byte, before the answer starts or between two
  of its chunks, ends the call with :class:`ModelSilent`, which the SDK does not retry: an endpoint
  that took the request and went quiet is asked again only to go quiet again, while a person waits.
- Answers that are not a model's. A ``200`` carrying an HTML page, an empty body, or JSON that is not a
  chat completion (a proxy's error page, a wrong ``OPENAI_BASE_URL``) ends with :class:`NotAModelAnswer`
  instead of an empty answer; a stream that stops before its end ends with :class:`AnswerCutOff`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from agents import ModelSettings, OpenAIChatCompletionsModel
from openai.types.shared import Reasoning

from core.settings import Settings

__all__ = [
    "AnswerCutOff",
    "Completion",
    "ModelClient",
    "ModelSilent",
    "NotAModelAnswer",
    "ReasoningTolerantModel",
    "ToolsRefused",
    "describe_model_error",
    "endpoint_problem",
    "endpoint_unusable",
    "is_model_error",
    "reasoning",
    "refuses_reasoning",
    "refuses_tools",
]

_log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
CONNECT_SECONDS = 10.0  # a TCP/TLS connection that takes longer is not coming (connects are retried)
HEAD_KEPT = 2048  # bytes of a body kept to describe it in the log, after secrets are taken out
HEAD_SHOWN = 160  # characters of it the log shows


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0


class ModelSilent(openai.APITimeoutError):
    """The endpoint said nothing for ``seconds``: before answering, or in the middle of its answer."""

    def __init__(self, request: httpx2.Request, seconds: float, *, answering: bool) -> None:
        where = "in the middle of its answer" if answering else "before it started answering"
        message = f"the model endpoint said nothing for {seconds:g} s {where} (THREADLINE_MODEL_TIMEOUT)"
        openai.APIConnectionError.__init__(self, message=message, request=request)
        self.seconds, self.answering = seconds, answering


class NotAModelAnswer(openai.APIResponseValidationError):
    """A successful status with a body that is not a chat completion (or embeddings) answer."""

    def __init__(self, response: httpx2.Response, what: str, head: bytes) -> None:
        self.content_type = response.headers.get("content-type", "") or "no content type"
        message = (
            f"the model endpoint answered {response.status_code} ({self.content_type}) with {what}, "
            f"not a model's answer; {_excerpt(head, response.request)}"
        )
        super().__init__(response, None, message=message)


class AnswerCutOff(openai.APIConnectionError):
    """The endpoint ended a streamed answer before its finish (no ``finish_reason``, no ``[DONE]``)."""

    def __init__(self, request: httpx2.Request) -> None:
        message = "the model endpoint ended the stream before the answer was finished (no finish_reason, no [DONE])"
        super().__init__(message=message, request=request)


class ToolsRefused(openai.BadRequestError):
    """The endpoint refused a request because it carried tools: the model (or the server as started) has no
    tool calling. Not a fault of the endpoint: the same model answers requests without tools."""

    def __init__(self, model: str, cause: openai.APIStatusError) -> None:
        message = (
            f"the model endpoint refused tool calling for model {model!r} (HTTP {cause.status_code}): {cause.message}; "
            "set tool_calling = false for the assistant, or serve a model with tools (Ollama: a model with the "
            "tools capability; llama.cpp: llama-server --jinja; vLLM: --enable-auto-tool-choice --tool-call-parser)"
        )
        openai.APIStatusError.__init__(self, message, response=cause.response, body=cause.body)
        self.model = model


class ModelClient:
    """The chat model's endpoint, and the embeddings' (the same one unless ``THREADLINE_EMBEDDING_BASE_URL`` or
    ``THREADLINE_EMBEDDING_API_KEY`` is set)."""

    def __init__(self, settings: Settings) -> None:
        # Explicit, so that an empty OPENAI_BASE_URL in .env means "the default", not "".
        chat_url = settings.openai_base_url or DEFAULT_BASE_URL
        self._client = _client(settings, settings.openai_api_key, chat_url)
        self._embeddings = self._client
        if settings.embeddings_endpoint:
            key = settings.embedding_api_key or settings.openai_api_key
            self._embeddings = _client(settings, key, settings.embedding_base_url or chat_url)
        self._refusing_reasoning: set[str] = set()  # models of the endpoint that refuse reasoning_effort

    def chat_model(self, model: str) -> OpenAIChatCompletionsModel:
        return ReasoningTolerantModel(model=model, openai_client=self._client, refusing=self._refusing_reasoning)

    async def complete(self, model: str, system: str, user: str, *, max_tokens: int | None = None) -> Completion:
        """One plain, non-streamed completion (used for the rolling summary), with the tokens it used."""
        response = await self._client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            max_tokens=max_tokens,
        )
        text = (response.choices[0].message.content or "").strip() if response.choices else ""
        usage = response.usage
        return Completion(text, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Embeddings for ``texts`` (one request), in order."""
        response = await self._embeddings.embeddings.create(model=model, input=texts)
        ordered = sorted(response.data, key=lambda d: d.index)
        return [list(d.embedding) for d in ordered]

    async def close(self) -> None:
        await self._client.close()
        if self._embeddings is not self._client:
            await self._embeddings.close()


def _client(settings: Settings, key: str | None, base_url: str) -> openai.AsyncOpenAI:
    silence = settings.model_timeout
    return openai.AsyncOpenAI(
        api_key=key or "no-key-needed",  # a local server needs no key, but the SDK insists on one
        base_url=base_url,
        max_retries=settings.model_max_retries,
        # httpx's read timeout is the silence allowed between two reads: before the first byte and between chunks.
        timeout=openai.Timeout(silence, connect=min(silence, CONNECT_SECONDS)),
        http_client=_JudgingHttpClient(silence),
    )


def is_model_error(exc: BaseException) -> bool:
    return isinstance(exc, openai.OpenAIError)


def endpoint_unusable(exc: BaseException) -> bool:
    """True when the error says the endpoint cannot serve runs at all (readiness), not that one request was bad."""
    if isinstance(exc, ToolsRefused):  # llama.cpp says so with a 500, yet answers requests without tools
        return False
    if isinstance(exc, openai.APIConnectionError | NotAModelAnswer):  # timeouts and silences included
        return True
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def endpoint_problem(exc: BaseException) -> str:
    """What readiness reports about the endpoint after ``exc`` ('' when it says nothing about the endpoint).

    Short and free of bodies, which may echo what was sent."""
    if not endpoint_unusable(exc):
        return ""
    if isinstance(exc, NotAModelAnswer):
        return (
            f"it answered with something that is not a model's answer ({exc.content_type[:60]}); check OPENAI_BASE_URL"
        )
    if isinstance(exc, ModelSilent):
        return f"it said nothing for {exc.seconds:g} s (THREADLINE_MODEL_TIMEOUT)"
    if isinstance(exc, AnswerCutOff):
        return "it ended an answer before it was finished"
    return type(exc).__name__


def describe_model_error(exc: BaseException) -> str:
    """A short message a person in the channel can act on (details stay in the log)."""
    if isinstance(exc, NotAModelAnswer):
        return (
            "The model endpoint answered with something that is not a model's answer, "
            "so whoever runs the bot should check OPENAI_BASE_URL."
        )
    if isinstance(exc, ToolsRefused):
        return (
            f"The model endpoint refused tool calling for model {exc.model}. Whoever runs the bot should set "
            "`tool_calling = false` for this assistant in the assistants file, or use a model that supports tools."
        )
    if isinstance(exc, ModelSilent):
        waited = f"{exc.seconds:g} second{'' if exc.seconds == 1 else 's'}"
        if exc.answering:
            what = f"went silent for {waited} in the middle of its answer"
        else:
            what = f"did not answer in time (nothing came for {waited})"
        return f"The model is slow right now: it {what}, so I stopped waiting. Please try again in a moment."
    if isinstance(exc, AnswerCutOff):
        return "The model endpoint ended its answer before it was finished. Please try again."
    if isinstance(exc, openai.APITimeoutError):
        return "The model did not answer in time, even after retrying. Please try again in a moment."
    if isinstance(exc, openai.APIConnectionError):
        return (
            "The model endpoint could not be reached. Please try again later; "
            "if it persists, tell whoever runs the bot."
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "The model endpoint refused the bot's credentials. Whoever runs the bot should check OPENAI_API_KEY."
    if isinstance(exc, openai.RateLimitError):
        return "The model endpoint is rate-limiting the bot right now. Please try again in a minute."
    if isinstance(exc, openai.NotFoundError):
        return (
            "The model endpoint does not know the configured model. Whoever runs the bot should check THREADLINE_MODEL."
        )
    if isinstance(exc, openai.BadRequestError):
        return (
            "The model endpoint rejected the request (it may be too long, or use a feature the model lacks). "
            "Try a shorter message, or /reset."
        )
    if isinstance(exc, openai.InternalServerError | openai.APIStatusError):
        return (
            "The model endpoint is having trouble (it returned an error, even after retrying). Please try again later."
        )
    return "The model call failed. Please try again later."


# -- judging what the endpoint sends ------------------------------------------------------------------


class _JudgingHttpClient(openai.DefaultAsyncHttpxClient):
    """The SDK's HTTP client, judging the model's answers on the way in (see the module's docstring)."""

    def __init__(self, silence: float) -> None:
        super().__init__()
        self._silence = silence

    async def send(self, request: httpx2.Request, *, stream: bool = False, **kwargs: Any) -> httpx2.Response:
        path = request.url.path
        chat_stream = stream and path.endswith("/chat/completions")
        if chat_stream:
            request.headers["Accept-Encoding"] = "identity"  # its bytes are judged as they arrive
        try:
            response = await super().send(request, stream=stream, **kwargs)
        except httpx2.ReadTimeout as exc:  # raised as an OpenAIError, the SDK does not retry it
            raise ModelSilent(request, self._read_timeout(request), answering=False) from exc
        if not response.is_success:
            return response
        if chat_stream:
            response.stream = _JudgedStream(response, self._read_timeout(request))
        elif not stream:
            _judge_body(response, path)
        return response

    def _read_timeout(self, request: httpx2.Request) -> float:
        read = (request.extensions.get("timeout") or {}).get("read")
        return float(read) if isinstance(read, int | float) else self._silence


def _judge_body(response: httpx2.Response, path: str) -> None:
    """A read, non-streamed answer: chat completions carry ``choices``, embeddings ``data``."""
    key = "choices" if path.endswith("/chat/completions") else "data" if path.endswith("/embeddings") else None
    if key is None:
        return
    body = response.content
    if not body.strip():
        raise NotAModelAnswer(response, "an empty body", b"")
    try:
        answer = json.loads(body)
    except ValueError:
        raise NotAModelAnswer(response, "a body that is not JSON", body[:HEAD_KEPT]) from None
    if not isinstance(answer, dict) or not isinstance(answer.get(key), list):
        raise NotAModelAnswer(response, f"JSON without {key!r}", body[:HEAD_KEPT])


class _JudgedStream(httpx2.AsyncByteStream):
    """A streamed chat completion's body, passed on as it arrives and judged on the way."""

    def __init__(self, response: httpx2.Response, silence: float) -> None:
        self._inner = response.stream
        self._response, self._silence = response, silence
        # Encoded bytes (a server that compressed despite ``identity``) cannot be judged line by line.
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        self._events = _EventCheck() if encoding in {"", "identity"} else None
        self._head = bytearray()

    @property
    def elapsed(self) -> Any:  # httpx reads it from the response's stream
        return getattr(self._inner, "elapsed", None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._inner, httpx2.AsyncByteStream)
        try:
            async for chunk in self._inner:
                if len(self._head) < HEAD_KEPT:
                    self._head += chunk[: HEAD_KEPT - len(self._head)]
                if self._events is not None and (problem := self._events.feed(chunk)):
                    raise NotAModelAnswer(self._response, problem, bytes(self._head))
                yield chunk
        except httpx2.ReadTimeout as exc:
            raise ModelSilent(self._response.request, self._silence, answering=bool(self._head)) from exc
        if self._events is None:
            return
        if not self._events.choices:
            what = "an empty body" if not self._head else "no chat completion chunks"
            raise NotAModelAnswer(self._response, what, bytes(self._head))
        if not (self._events.finished or self._events.done):
            raise AnswerCutOff(self._response.request)

    async def aclose(self) -> None:
        assert isinstance(self._inner, httpx2.AsyncByteStream)
        await self._inner.aclose()


_LINE_END = re.compile(rb"\r\n|\r|\n")


class _EventCheck:
    """Server-sent events, assembled from bytes as the SDK's decoder does, and judged one by one.

    Lenient on purpose: comments, other fields and JSON objects that are not chunks (a provider's pings)
    pass; what cannot be a chat completion chunk at all (data that is not a JSON object, ``[DONE]`` before
    any choice) is a problem at once, and an end without any choice is one at the end."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []
        self.choices = False  # a chunk with a choice arrived
        self.finished = False  # a choice carried a finish_reason
        self.done = False  # data: [DONE] arrived

    def feed(self, chunk: bytes) -> str:
        """Take the next bytes; returns what is wrong with them ('' when nothing is, so far)."""
        text = self._pending + chunk
        held = b""
        if text.endswith(b"\r"):  # perhaps the first half of a CRLF
            text, held = text[:-1], b"\r"
        *lines, rest = _LINE_END.split(text)
        self._pending = rest + held
        for line in lines:
            if not line:
                if problem := self._dispatch():
                    return problem
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return ""

    def _dispatch(self) -> str:
        if not self._data:
            return ""
        data, self._data = b"\n".join(self._data), []
        if data.startswith(b"[DONE]"):
            self.done = True
            return "" if self.choices else "a stream that ended before any answer"
        try:
            event = json.loads(data)
        except ValueError:
            return "stream data that is not JSON"
        if not isinstance(event, dict):
            return "stream data that is not a JSON object"
        choices = event.get("choices")
        if isinstance(choices, list) and choices:
            self.choices = True
            self.finished = self.finished or any(isinstance(c, dict) and c.get("finish_reason") for c in choices)
        return ""


_SECRET = re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"'<>&,;]+|\bsk-[A-Za-z0-9_\-]{8,}")


def _excerpt(head: bytes, request: httpx2.Request) -> str:
    """The start of a body for the log: decoded, secrets taken out (a page may echo what it was sent), cut short."""
    if not head:
        return "the body is empty"
    text = head.decode("utf-8", "replace")
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme and len(credential) >= 4:
        text = text.replace(credential, "[secret]")
    text = _SECRET.sub("[secret]", text)
    shown = text[:HEAD_SHOWN]
    return "the body begins " + repr(shown) + ("..." if len(text) > HEAD_SHOWN else "")


# -- reasoning_effort, for endpoints that may not take it -------------------------------------------------
#
# ``reasoning_effort`` for endpoints that may not take it.
#
# The old API passed a run's (or its assistant's) ``reasoning_effort`` to reasoning models. Threadline sends
# it on every OpenAI-compatible endpoint; one that refuses the parameter (a 400 naming it: many local servers
# and older models) is asked again without it, with a debug line, and this process stops sending it to that
# model. Knowing which models refuse it is a cache of the endpoint's behaviour, not state: a restart asks again.


def reasoning(effort: str | None) -> Reasoning | None:
    """The model settings' ``reasoning`` for a run's ``reasoning_effort`` (None: the model's own)."""
    return Reasoning(effort=effort) if effort else None  # type: ignore[arg-type]


def refuses_reasoning(exc: BaseException) -> bool:
    """Whether a model call failed because the endpoint does not take ``reasoning_effort``."""
    return isinstance(exc, openai.BadRequestError) and "reasoning" in str(exc).lower()


# What endpoints answer a request with tools when the model, or the server as started, has none:
# Ollama (400 "registry.ollama.ai/library/gemma:2b does not support tools"), vLLM (400 '"auto" tool choice
# requires --enable-auto-tool-choice and --tool-call-parser to be set'), llama.cpp (500 "tools param requires
# --jinja flag"; before it had --jinja, "Unsupported param: tools").
_TOOLS_REFUSED = re.compile(
    r"does not support tools|--enable-auto-tool-choice|tools param requires|unsupported param: tools", re.IGNORECASE
)


def refuses_tools(exc: BaseException) -> bool:
    """Whether a model call failed because the endpoint takes no tools (for this model, or at all)."""
    return isinstance(exc, openai.APIStatusError) and bool(_TOOLS_REFUSED.search(str(exc)))


class ReasoningTolerantModel(OpenAIChatCompletionsModel):
    """A Chat Completions model that drops ``reasoning_effort`` where its endpoint refuses it, and names a
    refusal of tools as such (:class:`ToolsRefused`)."""

    def __init__(self, *args: Any, refusing: set[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusing = refusing  # models of this endpoint known to refuse it (shared by the client's models)

    def _settings(self, settings: ModelSettings) -> ModelSettings:
        if settings.reasoning is not None and str(self.model) in self._refusing:
            return dataclasses.replace(settings, reasoning=None)
        return settings

    def _refused(self, settings: ModelSettings, exc: BaseException) -> bool:
        if settings.reasoning is None or not refuses_reasoning(exc):
            return False
        _log.debug("model %s refused reasoning_effort (%s); asking again without it", self.model, exc)
        self._refusing.add(str(self.model))
        return True

    def _named(self, exc: openai.APIStatusError) -> openai.APIStatusError:
        return ToolsRefused(str(self.model), exc) if refuses_tools(exc) else exc

    async def get_response(
        self, system_instructions: Any, input: Any, model_settings: ModelSettings, *args: Any, **kwargs: Any
    ) -> Any:
        try:
            return await self._get_response(system_instructions, input, model_settings, *args, **kwargs)
        except openai.APIStatusError as exc:
            named = self._named(exc)
            if named is exc:
                raise
            raise named from exc

    async def stream_response(  # type: ignore[override]
        self, system_instructions: Any, input: Any, model_settings: ModelSettings, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        try:
            async for event in self._stream_response(system_instructions, input, model_settings, *args, **kwargs):
                yield event
        except openai.APIStatusError as exc:
            named = self._named(exc)
            if named is exc:
                raise
            raise named from exc

    async def _get_response(
        self, system_instructions: Any, input: Any, model_settings: ModelSettings, *args: Any, **kwargs: Any
    ) -> Any:
        settings = self._settings(model_settings)
        try:
            return await super().get_response(system_instructions, input, settings, *args, **kwargs)
        except openai.BadRequestError as exc:
            if not self._refused(settings, exc):
                raise
        return await super().get_response(system_instructions, input, self._settings(settings), *args, **kwargs)

    async def _stream_response(
        self, system_instructions: Any, input: Any, model_settings: ModelSettings, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        settings = self._settings(model_settings)
        started = False
        try:
            async for event in super().stream_response(system_instructions, input, settings, *args, **kwargs):
                started = True
                yield event
            return
        except openai.BadRequestError as exc:
            if started or not self._refused(settings, exc):
                raise
        async for event in super().stream_response(
            system_instructions, input, self._settings(settings), *args, **kwargs
        ):
            yield event
