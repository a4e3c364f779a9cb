"""The model endpoint: the one module that imports ``openai``.

Any OpenAI-compatible server works (OpenAI, Azure, vLLM, Ollama, llama.cpp, LM Studio, ...):
requests go through ``openai.AsyncOpenAI`` with the Chat Completions API, which the
openai SDK retries with exponential backoff on 429, 5xx, timeouts and dropped connections
(honouring ``Retry-After``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import openai
from agents import OpenAIChatCompletionsModel

from core.settings import Settings

__all__ = ["Completion", "ModelClient", "describe_model_error", "endpoint_unusable", "is_model_error"]

_log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0


class ModelClient:
    def __init__(self, settings: Settings) -> None:
        self._client = openai.AsyncOpenAI(
            # A local server needs no key, but the SDK insists on one.
            api_key=settings.openai_api_key or "no-key-needed",
            # Explicit, so that an empty OPENAI_BASE_URL in .env means "the default", not "".
            base_url=settings.openai_base_url or DEFAULT_BASE_URL,
            max_retries=settings.model_max_retries,
            timeout=settings.model_timeout,
        )

    def chat_model(self, model: str) -> OpenAIChatCompletionsModel:
        return OpenAIChatCompletionsModel(model=model, openai_client=self._client)

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
        response = await self._client.embeddings.create(model=model, input=texts)
        ordered = sorted(response.data, key=lambda d: d.index)
        return [list(d.embedding) for d in ordered]

    async def close(self) -> None:
        await self._client.close()


def is_model_error(exc: BaseException) -> bool:
    return isinstance(exc, openai.OpenAIError)


def endpoint_unusable(exc: BaseException) -> bool:
    """True when the error says the endpoint cannot serve runs at all (readiness), not that one request was bad."""
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def describe_model_error(exc: BaseException) -> str:
    """A short message a person in the channel can act on (details stay in the log)."""
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
