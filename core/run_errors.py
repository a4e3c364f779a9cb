"""Why a run failed, as the old Assistants API told its clients: a code and a short message for people.

A failed run keeps the detail in ``runs.last_error`` (an exception's name and text, or the reason
Threadline stopped it) for whoever runs Threadline. Clients get the old API's ``last_error``:
one of its codes (``server_error``, ``rate_limit_exceeded``, ``invalid_prompt``) and a message that
says what happened and what to do next, never the detail itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.service import RESTART_REASON, SHUTDOWN_REASON

__all__ = ["RunError", "run_error"]

ErrorCode = Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]


@dataclass(frozen=True)
class RunError:
    code: ErrorCode
    message: str


_RETRY = "Create a new run to try again."
_GENERIC = RunError(
    "server_error",
    "Something went wrong on Threadline's side while answering; its log has the details. " + _RETRY,
)
# The model client's exceptions, by class name (the detail starts with it).
_MODEL_ERRORS: dict[str, RunError] = {
    "RateLimitError": RunError(
        "rate_limit_exceeded", "The model endpoint is rate-limiting Threadline right now. Try again in a minute."
    ),
    "BadRequestError": RunError(
        "invalid_prompt",
        "The model endpoint rejected the request: the conversation may be too long for the model, or use a "
        "feature it lacks. Try a shorter thread, a truncation_strategy, or another model.",
    ),
    "UnprocessableEntityError": RunError(
        "invalid_prompt", "The model endpoint could not process the request. Check the run's settings and tools."
    ),
    "APITimeoutError": RunError("server_error", "The model did not answer in time, even after retrying. " + _RETRY),
    "APIConnectionError": RunError(
        "server_error",
        "The model endpoint could not be reached. " + _RETRY + " If it persists, tell whoever runs this Threadline.",
    ),
    "AuthenticationError": RunError(
        "server_error",
        "The model endpoint refused Threadline's credentials; whoever runs this Threadline should check "
        "OPENAI_API_KEY.",
    ),
    "InternalServerError": RunError(
        "server_error", "The model endpoint returned an error, even after retrying. " + _RETRY
    ),
    # core/model_client.py's judgements of what the endpoint sent
    "ModelSilent": RunError(
        "server_error",
        "The model said nothing for too long (THREADLINE_MODEL_TIMEOUT), so the run was stopped. " + _RETRY,
    ),
    "NotAModelAnswer": RunError(
        "server_error",
        "The model endpoint answered with something that is not a model's answer; whoever runs this Threadline "
        "should check OPENAI_BASE_URL.",
    ),
    "AnswerCutOff": RunError("server_error", "The model endpoint ended its answer before it was finished. " + _RETRY),
}
_MODEL_ERRORS["PermissionDeniedError"] = _MODEL_ERRORS["AuthenticationError"]
_MODEL_ERRORS["APIStatusError"] = _MODEL_ERRORS["InternalServerError"]


def run_error(status: str, detail: str | None, model: str | None) -> RunError | None:
    """The ``last_error`` a client sees for a run (None unless it failed); ``detail``: its ``runs.last_error``."""
    if status != "failed":
        return None
    detail = detail or ""
    name = detail.split(":", 1)[0].strip()
    if name == "NotFoundError":
        return RunError(
            "invalid_prompt",
            f"The model endpoint does not know the model {model!r}. Use a model it serves (set 'model' on the "
            "assistant or the run).",
        )
    if name == "ToolsRefused":  # core/model_client.py: the endpoint takes no tools for this model
        return RunError(
            "invalid_prompt",
            f"The model endpoint refused tool calling for model {model!r}. Create the run without tools, or use a "
            "model that supports tools.",
        )
    if name in _MODEL_ERRORS:
        return _MODEL_ERRORS[name]
    if detail == "no model endpoint configured":
        return RunError(
            "server_error",
            "Threadline has no model endpoint configured; whoever runs it should set OPENAI_API_KEY or "
            "OPENAI_BASE_URL and restart it.",
        )
    if detail in (RESTART_REASON, SHUTDOWN_REASON):
        return RunError("server_error", "Threadline stopped while this run was in progress. " + _RETRY)
    if detail.startswith("Max turns"):  # openai-agents' MaxTurnsExceeded
        return RunError(
            "server_error",
            "The assistant kept calling tools without reaching an answer, so the run was stopped. "
            "Try a narrower request.",
        )
    if detail.startswith("restore failed"):
        return RunError(
            "server_error", "The paused run could not be resumed (Threadline's configuration changed). " + _RETRY
        )
    return _GENERIC
