"""What the core can say about its own readiness: the database answers, the model endpoint worked last time.

The model endpoint is judged by the outcome of the last run that called it (no periodic probe: a probe
would spend tokens or need an endpoint-specific cheap call, and the last real call is the better signal).
Before any run has called it, it counts as ready when one is configured.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from core.settings import Settings
from core.store import Store

__all__ = ["ModelStatus", "core_problems"]

DB_CHECK_SECONDS = 2.0


@dataclass
class ModelStatus:
    """The model endpoint as the last run found it: ``error`` is empty when it answered."""

    error: str = ""
    checked_at: float | None = None

    def record(self, error: str) -> None:
        self.error, self.checked_at = error, time.time()


async def core_problems(settings: Settings, store: Store, model: ModelStatus) -> dict[str, str]:
    """What keeps the core from serving, by component (``database``, ``model``); empty when ready."""
    problems: dict[str, str] = {}
    try:
        async with asyncio.timeout(DB_CHECK_SECONDS):
            await store.call(lambda db: db.execute("SELECT 1").fetchone())
    except TimeoutError:
        problems["database"] = f"the database did not answer within {DB_CHECK_SECONDS:g} s"
    except Exception as exc:
        problems["database"] = f"the database cannot be queried: {type(exc).__name__}: {exc}"
    if not settings.model_configured:
        problems["model"] = "no model endpoint is configured (set OPENAI_API_KEY or OPENAI_BASE_URL)"
    elif model.error:
        problems["model"] = f"the model endpoint failed at its last call: {model.error}"[:500]
    return problems
