"""Citations as the Assistants API annotated them: where an answer cites a file, and which file.

File search numbers the passages it returns ([1], [2], ...) and the model cites them in its
answer. The old API attached a ``file_citation`` annotation to each citation in the text; this
finds them: every ``[n]`` of a passage the run's file search returned, with its place in the
text (character offsets) and the id of the file the passage came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.events import Source

__all__ = ["Citation", "citations"]

_MARKER = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class Citation:
    text: str  # "[2]"
    start_index: int
    end_index: int
    file_id: str  # the file's id as its owner knows it (an API upload's id), else the knowledge base's


def citations(text: str, sources: Sequence[Source], file_ids: Mapping[str, str] | None = None) -> list[Citation]:
    """Every marker in ``text`` that names one of ``sources``; ``file_ids`` maps knowledge-base file ids
    to the ids to show (files without an entry keep theirs)."""
    by_number = {source.number: source for source in sources if source.file_id}
    found = []
    for match in _MARKER.finditer(text):
        source = by_number.get(int(match.group(1)))
        if source is None or source.file_id is None:
            continue
        file_id = (file_ids or {}).get(source.file_id, source.file_id)
        found.append(Citation(match.group(0), match.start(), match.end(), file_id))
    return found
