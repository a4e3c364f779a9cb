"""A string field of a JSON object decoded while the object streams (pure logic): how a code_interpreter call's
code is shown as the model writes it."""

from __future__ import annotations

import json

import pytest

from core.streamed_json import StreamedString

CODE = 'import pandas as pd\nprint("total:\\t", 1 + 1)  # \\ é ✓ 😀'


def decoded(text: str, size: int, name: str = "code") -> list[str]:
    field = StreamedString(name)
    return [field.feed(text[i : i + size]) for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_the_field_comes_out_decoded_however_the_text_is_cut(size: int, ascii_only: bool) -> None:
    text = json.dumps({"code": CODE}, ensure_ascii=ascii_only)  # escapes, \\u escapes and surrogate pairs
    assert "".join(decoded(text, size)) == CODE


def test_characters_come_out_as_they_arrive() -> None:
    pieces = decoded(json.dumps({"code": "print(1)"}), 4)
    assert pieces == ["", "", "pr", "int(", "1)"]  # from '{"co', 'de":', ' "pr', 'int(', '1)"}'


def test_only_the_top_level_field_of_that_name_is_read() -> None:
    text = json.dumps({"a": {"code": "nested"}, "b": ["code", {"x": 'y"z'}], "note": "code", "code": "this"})
    assert "".join(decoded(text, 3)) == "this"
    assert "".join(decoded(json.dumps({"query": "x"}), 2)) == ""
