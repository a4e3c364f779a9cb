"""Slack Web API retry handlers that count each retry in the metrics (``threadline_platform_retries``)."""

from __future__ import annotations

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from core.metrics import Metrics

__all__ = ["CountedRetries"]


class CountedRetries(AsyncRetryHandler):
    """``inner``'s decisions and waits, with each retry counted as ``kind`` (``ratelimited``, ``connection``)."""

    def __init__(self, inner: AsyncRetryHandler, metrics: Metrics, kind: str) -> None:
        super().__init__(max_retry_count=inner.max_retry_count, interval_calculator=inner.interval_calculator)
        self._inner = inner
        self._metrics = metrics
        self._kind = kind

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return await self._inner._can_retry_async(state=state, request=request, response=response, error=error)

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        self._metrics.platform_retry("slack", self._kind)
        await self._inner.prepare_for_next_attempt_async(state=state, request=request, response=response, error=error)
