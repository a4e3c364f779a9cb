"""The code interpreter end to end: the scripted model calls it; Python runs in the real sandbox on channel files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bots.console.app import _save_output
from core.events import FileOutput, RunCompleted
from core.knowledge.base import Upload
from core.service import Threadline
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, last_user_text, offered_tools, tool_results
from tests.helpers import CHANNEL, collect, post

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PYTHON = ROOT / ".sandbox" / "bin" / "python"

SALES = b"month,revenue\n2026-01,120\n2026-02,80\n2026-03,200\n"

CODE = {
    "total": "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint('total', df.revenue.sum())",
    "chart": "import matplotlib.pyplot as plt\nplt.bar(df.month, df.revenue)\nplt.title('Revenue by month')",
    "remember": "x = 41",
    "recall": "x + 1",
}


def script(req: dict[str, Any]) -> Reply:
    """Runs the code named by the question's last word, then answers with what the tool returned."""
    if results := tool_results(req):
        return Reply(text=f"Result: {results[-1]['content']}")
    word = last_user_text(req).split()[-1]
    if word in CODE and "code_interpreter" in offered_tools(req):
        return Reply(tool_calls=(ToolCall("code_interpreter", {"code": CODE[word]}),))
    return Reply(text="no tool for that")


@pytest.fixture
async def interpreter(open_service, fake_model: FakeOpenAI) -> Threadline:
    assert SANDBOX_PYTHON.exists(), "the sandbox's Python is missing: run `make sandbox` (make test does)"
    fake_model.script = script
    service: Threadline = await open_service(
        assistants_file=None, code_interpreter=True, sandbox_python=SANDBOX_PYTHON, sandbox_call_seconds=10
    )
    assert service._sessions is not None, "no sandbox works on this machine; see the start-up warning"
    return service


async def test_the_default_assistant_offers_it_when_the_sandbox_works(interpreter: Threadline, fake_model) -> None:
    await collect(await post(interpreter, "hello"))
    assert "code_interpreter" in offered_tools(fake_model.chat_requests[-1])


async def test_csv_to_pandas_to_an_answer(interpreter: Threadline) -> None:
    await interpreter.knowledge.add(CHANNEL, Upload(name="sales.csv", data=SALES, mime="text/csv"))
    events = await collect(await post(interpreter, "sum the sales: total"))
    assert isinstance(events[-1], RunCompleted)
    assert "total 400" in events[-1].text


async def test_a_chart_comes_back_as_a_png_file(interpreter: Threadline) -> None:
    await interpreter.knowledge.add(CHANNEL, Upload(name="sales.csv", data=SALES, mime="text/csv"))
    await collect(await post(interpreter, "load it: total"))
    events = await collect(await post(interpreter, "plot revenue by month: chart"))
    files = [e for e in events if isinstance(e, FileOutput)]
    assert [f.name for f in files] == ["figure-1.png"]
    assert files[0].data.startswith(b"\x89PNG")
    assert files[0].mime == "image/png"
    final = events[-1]
    assert isinstance(final, RunCompleted)
    assert "/mnt/data/figure-1.png" in final.text  # the model was told the file was posted


async def test_state_persists_between_calls_and_channels_are_apart(interpreter: Threadline) -> None:
    await collect(await post(interpreter, "remember"))
    events = await collect(await post(interpreter, "recall"))
    assert isinstance(events[-1], RunCompleted)
    assert "42" in events[-1].text
    other = await collect(await post(interpreter, "recall", channel="console:local:elsewhere"))
    assert isinstance(other[-1], RunCompleted)
    assert "NameError" in other[-1].text  # another channel, another session


async def test_it_is_off_when_no_sandbox_works_and_start_up_says_why(
    open_service, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    service = await open_service(assistants_file=None, code_interpreter=True, sandbox_python=tmp_path / "no-python")
    assert "code_interpreter" not in service.tools.names()
    assert "the code interpreter is off" in caplog.text
    assert "make sandbox" in caplog.text


def test_the_console_saves_files_and_says_where(tmp_path: Path) -> None:
    path = _save_output(tmp_path, FileOutput("run_1", "../../chart.png", b"\x89PNG..."))
    assert path == (tmp_path / "run_1" / "chart.png").resolve()  # never outside its folder
    assert path.read_bytes() == b"\x89PNG..."
