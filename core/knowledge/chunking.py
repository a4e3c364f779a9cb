"""Cutting extracted sections into overlapping chunks of tokens, each keeping its file location."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.knowledge.extract import Section
from core.tokens import TokenCounter

__all__ = ["Chunk", "chunk_sections"]


@dataclass(frozen=True)
class Chunk:
    location: str
    text: str
    tokens: int


def chunk_sections(sections: Iterable[Section], *, size: int, overlap: int, counter: TokenCounter) -> list[Chunk]:
    """Chunks of at most ``size`` tokens overlapping by ``overlap``; a chunk never spans two sections."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunk size {size} and overlap {overlap}: need 0 <= overlap < size")
    chunks: list[Chunk] = []
    for section in sections:
        text = section.text.strip()
        if not text:
            continue
        for piece, tokens in counter.windows(text, size, overlap):
            chunks.append(Chunk(section.location, piece, tokens))
    return chunks
