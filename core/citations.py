"""Citations as the Assistants API annotated them: where an answer cites a file, and which file.

File search numbers the passages it returns ([1], [2], ...) and the model cites them in its
answer. The old API attached a ``file_citation`` annotation to each citation in the text; this
finds them: every ``[n]`` of a passage the run's file search returned, with its place in the
text (character offsets) and the id of the file the passage came from. :func:`citations` reads a
whole answer; :func:`completed_by` the citations the last words of a streamed one completed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from core.events import Citation, Source

__all__ = ["Citation", "citations", "completed_by"]

_MARKER = re.compile(r"\[(\d{1,3})\]")
_LONGEST = len("[999]")


def citations(text: str, sources: Sequence[Source], file_ids: Mapping[str, str] | None = None) -> list[Citation]:
    """Every marker in ``text`` that names one of ``sources``; ``file_ids`` maps knowledge-base file ids
    to the ids to show (files without an entry keep theirs)."""
    return _found(text, 0, sources, file_ids)


def completed_by(text: str, start: int, sources: Sequence[Source]) -> list[Citation]:
    """The markers of ``text`` naming one of ``sources`` that end after ``start``: those the words from
    ``start`` on completed (a marker may have begun in earlier words)."""
    return [c for c in _found(text, max(start - _LONGEST + 1, 0), sources, None) if c.end_index > start]


def _found(text: str, start: int, sources: Sequence[Source], file_ids: Mapping[str, str] | None) -> list[Citation]:
    by_number = {source.number: source for source in sources if source.file_id}
    found = []
    for match in _MARKER.finditer(text, start):
        source = by_number.get(int(match.group(1)))
        if source is None or source.file_id is None:
            continue
        file_id = (file_ids or {}).get(source.file_id, source.file_id)
        found.append(Citation(match.group(0), match.start(), match.end(), file_id))
    return found
