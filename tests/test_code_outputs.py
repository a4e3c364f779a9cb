"""Where the code interpreter's files show in a run's messages (pure logic: core/code_outputs.py)."""

from __future__ import annotations

from core.code_outputs import file_paths, images_by_message
from core.store.api_outputs import OutputRecord, RunMessage


def _output(file_id: str, call_id: str, name: str, mime: str) -> OutputRecord:
    return OutputRecord(file_id, "run_1", call_id, f"/mnt/data/{name}", mime)


def _message(row_id: int, role: str, call_id: str = "") -> RunMessage:
    item = {"type": "function_call_output", "call_id": call_id} if role == "tool_result" else {"content": "x"}
    return RunMessage(row_id, role, item, ())


def test_an_image_shows_in_the_first_message_after_its_call_and_leftovers_in_the_last() -> None:
    messages = [
        _message(1, "tool_call"),
        _message(2, "tool_result", "call_a"),
        _message(3, "assistant"),  # after call_a
        _message(4, "tool_call"),
        _message(5, "tool_result", "call_b"),
        _message(6, "tool_result", "call_c"),
        _message(7, "assistant"),  # after call_b and call_c
    ]
    outputs = [
        _output("file-a", "call_a", "a.png", "image/png"),
        _output("file-csv", "call_a", "a.csv", "text/csv"),  # not an image: a link, not a part
        _output("file-b", "call_b", "b.png", "image/png"),
        _output("file-c", "call_c", "c.png", "image/png"),
        _output("file-x", "call_gone", "x.png", "image/png"),  # its call is not among the messages
    ]
    assert images_by_message(messages, outputs) == {3: ["file-a"], 7: ["file-b", "file-c", "file-x"]}
    assert images_by_message(messages, outputs[1:2]) == {}
    assert images_by_message([_message(1, "tool_result", "call_a")], outputs) == {}  # no message to show them


def test_sandbox_links_become_file_path_annotations_at_their_offsets() -> None:
    files = {"report.csv": "file-r", "report.csv.bak": "file-b", "my data.xlsx": "file-x"}
    text = (
        "See [the report](sandbox:/mnt/data/report.csv). The backup is sandbox:/mnt/data/report.csv.bak, "
        "the sheet sandbox:/mnt/data/my%20data.xlsx and sandbox:/mnt/data/my data.xlsx; "
        "sandbox:/mnt/data/other.csv is not one of them, nor is sandbox:/mnt/data/report.csvx."
    )
    found = file_paths(text, files)
    assert [(a["text"], a["file_id"]) for a in found] == [
        ("sandbox:/mnt/data/report.csv", "file-r"),
        ("sandbox:/mnt/data/report.csv.bak", "file-b"),
        ("sandbox:/mnt/data/my%20data.xlsx", "file-x"),
        ("sandbox:/mnt/data/my data.xlsx", "file-x"),
    ]
    for annotation in found:
        assert annotation["type"] == "file_path"
        assert text[annotation["start_index"] : annotation["end_index"]] == annotation["text"]
    assert file_paths("no links here", files) == []
