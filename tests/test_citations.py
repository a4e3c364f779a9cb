"""Finding an answer's file citations (pure logic)."""

from __future__ import annotations

from core.citations import Citation, citations, completed_by
from core.events import Source


def test_each_marker_of_a_returned_passage_becomes_a_citation_with_its_place_and_file() -> None:
    sources = [Source(1, "a.md", "", None, "kb_a"), Source(2, "b.md", "", None, "kb_b")]
    text = "Twenty-seven [1]. Booked with the manager [2][1]. Not a source [3]."
    found = citations(text, sources, {"kb_a": "file-upload-a"})
    assert found == [
        Citation("[1]", 13, 16, "file-upload-a"),
        Citation("[2]", 42, 45, "kb_b"),  # no upload id known: the knowledge base's
        Citation("[1]", 45, 48, "file-upload-a"),
    ]
    assert all(text[c.start_index : c.end_index] == c.text for c in found)


def test_no_sources_or_no_file_ids_give_no_citations() -> None:
    assert citations("See [1].", []) == []
    assert citations("See [1].", [Source(1, "a.md", "", None)]) == []


def test_streamed_words_carry_the_citations_they_complete_once_each() -> None:
    sources = [Source(1, "a.md", "", None, "kb_a"), Source(12, "b.md", "", None, "kb_b")]
    text = "Yes [1], and [12]. Not [3]."
    seen: list[Citation] = []
    for end in range(1, len(text) + 1):  # one character at a time: every marker split every way
        seen += completed_by(text[:end], end - 1, sources)
    assert seen == [Citation("[1]", 4, 7, "kb_a"), Citation("[12]", 13, 17, "kb_b")]
    assert completed_by(text, 6, sources) == [Citation("[1]", 4, 7, "kb_a"), Citation("[12]", 13, 17, "kb_b")]
    assert completed_by(text, 7, sources) == [Citation("[12]", 13, 17, "kb_b")]  # [1] ended before these words
