"""Local models that behave: a model without tools, and an endpoint that refuses them.

The tests run the console channel (``python -m bots.console``; one, the API) against scripted servers on
127.0.0.1 that answer what Ollama, vLLM and llama.cpp really answer, and reads what the person is shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from core.assistants import load_assistants
from core.errors import ConfigError
from core.knowledge.passages import PROMPT_SHARE, in_prompt
from core.models import ChunkHit
from core.tokens import TokenCounter
from tests.fakes.openai_server import Answer, FakeOpenAI, Raw, Reply, last_user_text, offered_tools
from tests.test_console import console_env, run_console

MODEL = "gemma:2b"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SHORTER = "Try a shorter message, or /reset."


def refusal(status: int, body: dict[str, Any]) -> Raw:
    return Raw(json.dumps(body).encode(), content_type="application/json", status=status)


# What the servers answer a request with tools when the model, or the server as started, has no tool calling.
TOOL_REFUSALS = {
    "ollama": refusal(
        400,
        {
            "error": {
                "message": f"registry.ollama.ai/library/{MODEL} does not support tools",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    ),
    "vllm": refusal(
        400,
        {
            "object": "error",
            "message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    "llama.cpp": refusal(
        500, {"error": {"code": 500, "message": "tools param requires --jinja flag", "type": "server_error"}}
    ),
}

# What they answer a prompt longer than the model's window (Ollama cuts it silently instead).
CONTEXT_REFUSALS = {
    "openai/vllm": refusal(
        400,
        {
            "error": {
                "message": "This model's maximum context length is 4096 tokens. However, you requested 5120 "
                "tokens (4608 in the messages, 512 in the completion). Please reduce the length of the messages "
                "or completion.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
    ),
    "llama.cpp": refusal(
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5120,
                "n_ctx": 4096,
            }
        },
    ),
}


@pytest.mark.parametrize("answer", TOOL_REFUSALS.values(), ids=TOOL_REFUSALS.keys())
async def test_an_endpoint_refusing_tools_is_named_as_the_cause(tmp_path: Path, answer: Raw) -> None:
    async with FakeOpenAI(lambda req: answer) as fake:
        env = console_env(
            tmp_path, OPENAI_BASE_URL=fake.base_url, THREADLINE_MODEL=MODEL, THREADLINE_MODEL_MAX_RETRIES="0"
        )
        code, out, err = await run_console(env, "what is the weather in Lisbon?\n", tmp_path)
    assert code == 0, err
    assert offered_tools(fake.chat_requests[0])  # tools were sent: that is what the endpoint refused
    assert (
        f"The model endpoint refused tool calling for model {MODEL}. Whoever runs the bot should set "
        "`tool_calling = false` for this assistant in the assistants file, or use a model that supports tools."
    ) in out
    assert SHORTER not in out
    assert "tool_calling = false" in err  # the log line says what to change, and keeps the endpoint's words
    assert "Traceback" not in out + err


@pytest.mark.parametrize("answer", CONTEXT_REFUSALS.values(), ids=CONTEXT_REFUSALS.keys())
async def test_a_prompt_too_long_for_the_model_still_says_to_shorten_it(tmp_path: Path, answer: Raw) -> None:
    async with FakeOpenAI(lambda req: answer) as fake:
        env = console_env(tmp_path, OPENAI_BASE_URL=fake.base_url, THREADLINE_MODEL=MODEL)
        code, out, err = await run_console(env, "summarise everything\n", tmp_path)
    assert code == 0, err
    assert SHORTER in out
    assert "refused tool calling" not in out
    assert len(fake.chat_requests) == 1  # a 400 is not asked again


HANDBOOK = """# Handbook

## Holidays
Every employee has 27 days of paid holiday a year; unused days expire on 31 March.
"""
EXPENSES = """# Expenses

Travel costs are reimbursed monthly through the finance portal.
"""

NO_TOOLS = f"""
default = "local"

[[assistants]]
name = "local"
instructions = "You help the team."
model = "{MODEL}"
context_tokens = 4000
tool_calling = false
"""


def system_prompt(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content")) for m in request["messages"] if m.get("role") == "system")


async def test_a_model_without_tools_gets_the_best_passages_in_its_prompt_and_cites_them(tmp_path: Path) -> None:
    (tmp_path / "handbook.md").write_text(HANDBOOK)
    (tmp_path / "expenses.md").write_text(EXPENSES)
    (tmp_path / "assistants.toml").write_text(NO_TOOLS)

    def script(req: dict[str, Any]) -> Answer:
        if "[1] handbook.md" in system_prompt(req):
            return Reply(text="Everyone has 27 days [1].")
        return Reply(text=f"No passages for: {last_user_text(req)}")

    async with FakeOpenAI(script) as fake:
        env = console_env(
            tmp_path, OPENAI_BASE_URL=fake.base_url, THREADLINE_ASSISTANTS=str(tmp_path / "assistants.toml")
        )
        stdin = (
            f"/upload {tmp_path / 'handbook.md'}\n/upload {tmp_path / 'expenses.md'}\n"
            "how many holiday days do we get?\nand what about the weather?\n"
        )
        code, out, err = await run_console(env, stdin, tmp_path)
    assert code == 0, err
    first, second = fake.chat_requests
    # No function tools at all: no tools, no tool_choice, nothing that needs tool calling.
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(first)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(second)
    prompt = system_prompt(first)
    assert "[1] handbook.md, Handbook > Holidays\n" in prompt
    assert "Every employee has 27 days of paid holiday" in prompt
    assert "like [1] or [2][3]" in prompt  # how to cite them
    assert "Travel costs" not in prompt  # searched with the question: the other file does not match it
    # The answer's citation resolves to the passage, as with the file_search tool.
    assert "Everyone has 27 days [1]." in out
    assert "[1] handbook.md, Handbook > Holidays" in out
    # A question the files do not answer gets no passages (and the person sees the plain answer).
    assert "handbook.md" not in system_prompt(second)
    assert "No passages for:" in out
    assert "Traceback" not in out + err


def test_tool_calling_is_true_or_false(tmp_path: Path) -> None:
    path = tmp_path / "assistants.toml"
    path.write_text(NO_TOOLS)
    config = load_assistants(path, default_model="m")
    assert config.get("local").tool_calling is False
    assert config.get(None).tool_calling is False
    assert load_assistants(None, default_model="m").get(None).tool_calling is True
    path.write_text(NO_TOOLS.replace("tool_calling = false", 'tool_calling = "no"'))
    with pytest.raises(ConfigError, match="key 'tool_calling' must be true or false"):
        load_assistants(path, default_model="m")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated
async def test_an_api_run_refused_tools_says_so_in_its_last_error(
    client_a: openai.AsyncOpenAI, fake_model: FakeOpenAI
) -> None:
    """The Assistants-compatible API: the run's ``last_error`` in the old codes."""
    fake_model.script = lambda request: TOOL_REFUSALS["ollama"]
    helper = await client_a.beta.assistants.create(model=MODEL, instructions="You forecast.", tools=[WEATHER])
    on = await client_a.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
    run = await client_a.beta.threads.runs.create_and_poll(thread_id=on.id, assistant_id=helper.id, poll_interval_ms=20)
    assert offered_tools(fake_model.chat_requests[0]) == ["get_weather"]
    assert run.status == "failed"
    assert run.last_error is not None
    assert run.last_error.code == "invalid_prompt"
    assert run.last_error.message == (
        f"The model endpoint refused tool calling for model '{MODEL}'. Create the run without tools, or use a model "
        "that supports tools."
    )


def test_passages_in_the_prompt_keep_to_a_quarter_of_the_budget() -> None:
    tokens = TokenCounter()  # the estimate: 4 bytes a token
    hits = [ChunkHit(n, f"file-{n}", f"f{n}.md", "", f"passage {n} " + "word " * 150, None) for n in (1, 2, 3)]
    context: dict[str, Any] = {"sources": []}
    prompt = in_prompt(hits, context, tokens, budget=1000)  # 250 tokens: one passage of ~190 fits, not two
    assert "[1] f1.md\npassage 1" in prompt
    assert "[2] f2.md" not in prompt
    assert [s["file_name"] for s in context["sources"]] == ["f1.md"]
    # A passage larger than the share is cut to fit rather than left out; none found, nothing to add.
    long = [ChunkHit(9, "file-9", "big.md", "p. 3", "x" * 4000, None)]
    cut = in_prompt(long, {"sources": []}, tokens, budget=1000)
    assert "[1] big.md, p. 3\n" in cut
    assert cut.endswith(" [...]")
    assert tokens.count(cut) < 1000 // PROMPT_SHARE + 100
    assert in_prompt([], {"sources": []}, tokens, budget=1000) == ""
