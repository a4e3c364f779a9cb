"""Platform-neutral text helpers shared by every chat adapter.

``split_message`` cuts a long Markdown answer into pieces that each fit one
platform message. Each adapter passes its own size limit (Slack, Discord, e-mail),
so the splitting rules live here once.

How a piece's end is chosen, best first:

1. a paragraph break outside code, then a line break outside code;
2. a line break inside a fenced code block (the block is closed at the end of
   the piece and reopened, with the same info string, at the start of the next);
3. a space outside code, then a space inside a code block;
4. any character, as a last resort.

A better kind of break wins if it fills at least half of the piece, or if it is
a paragraph or line break and what follows it (the next paragraph, line, or a
whole code block) then fits in the next piece. Otherwise the next kind is tried,
and failing all, the latest break of any kind is used: pieces are not needlessly
short, and a short one is followed by a block kept whole.
Breaks inside a ``[link](url)``, an inline `` `code` `` span, an ``<...>`` token
(autolinks, mentions) or a bare URL are used only when nothing else fits, and a
last-resort cut avoids the middle of a character sequence such as an emoji with
modifiers or a letter with combining accents.

The whitespace at a break (the blank line, the newline, the space) is dropped,
so no piece starts or ends with the separator it was cut at. Apart from that and
the added fence lines, the pieces are the original text in order. The added
fence lines count toward the limit.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["split_message"]

# Kinds of break, best first.
_PARAGRAPH, _LINE, _CODE_LINE, _SPACE, _CODE_SPACE, _HARD = range(6)
_WHITESPACE_KINDS = (_PARAGRAPH, _LINE, _CODE_LINE, _SPACE, _CODE_SPACE)

_LINE_BREAK = re.compile(r"[ \t\r]*\n(?:[ \t\r]*\n)*")
_SPACES = re.compile(r"(?<=\S)[ \t]+(?=\S)")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t\r]*")
_ATOMS = re.compile(
    r"""
    (?<!`)(`+)(?!`)(?:[^\n]|\n(?![ \t]*\n))+?(?<!`)\1(?!`)    # inline code, not across a blank line
    | !?\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]                      # [link text] or ![image alt] ...
      (?:\((?:[^()\s]|\([^()\s]*\))*(?:[ \t]+"[^"\n]*")?\)     # ... followed by (url "title")
        | \[[^\[\]\n]*\])                                      # ... or by [reference]
    | <[^<>\s][^<>\n]*>                                        # <https://autolink>, <@U123> mentions
    | https?://\S+                                             # a bare URL
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Fence:
    """A fenced code block, by character offsets into the text."""

    start: int  # first character of the opening line
    body_start: int  # just after the opening line's newline
    body_end: int  # the newline before the closing line, or len(text) if never closed
    end: int  # just after the closing fence characters, or len(text) if never closed
    opener: str  # the opening line, repeated to reopen the block in the next piece
    closer: str  # the fence characters that close it
    overhead: int  # characters a piece spends to close and reopen this block


@dataclass(frozen=True, slots=True)
class _Cut:
    """Where a piece ends (``start``) and the next one begins (``end``); the text between is dropped."""

    start: int
    end: int
    kind: int
    closing: str  # the fence line appended to the piece, when the cut falls inside a code block
    in_atom: bool = False  # falls inside a link, inline code span, <token> or URL


def split_message(text: str, limit: int) -> list[str]:
    """Split Markdown into pieces of at most ``limit`` characters, for platforms with a message size limit.

    Text that fits is returned unchanged as one piece; empty or blank text gives no pieces.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not text.strip():
        return []
    if len(text) <= limit:
        return [text]
    return _Splitter(text, limit).split()


class _Splitter:
    def __init__(self, text: str, limit: int) -> None:
        self.text = text
        self.limit = limit
        # A block too big to close and reopen within the limit is split as plain text.
        self.fences = [f for f in _find_fences(text) if f.overhead + 1 <= limit]
        self.fence_starts = [f.start for f in self.fences]
        # An atom longer than a whole piece is cut anyway, so it protects nothing.
        self.atoms = [(a, b) for a, b in _merge(self._find_atoms()) if b - a <= limit]
        self.atom_starts = [a for a, _ in self.atoms]
        self.cuts = self._find_cuts()
        self.cut_starts = [c.start for c in self.cuts]

    def split(self) -> list[str]:
        text, pos = self.text, 0
        pieces: list[str] = []
        while pos < len(text):
            fence = self._body_around(pos)
            prefix = fence.opener + "\n" if fence is not None else ""
            if len(prefix) + len(text) - pos <= self.limit:
                rest = prefix + text[pos:]
                if rest.strip():
                    pieces.append(rest)
                break
            cut = self._choose(pos, len(prefix))
            piece = prefix + text[pos : cut.start] + cut.closing
            if piece.strip():
                pieces.append(piece)
            pos = cut.end
        return pieces

    # --- choosing a cut -------------------------------------------------------------

    def _choose(self, pos: int, prefix_len: int) -> _Cut:
        budget = self.limit - prefix_len
        low = bisect.bisect_right(self.cut_starts, pos)
        high = bisect.bisect_right(self.cut_starts, pos + budget)
        window = [
            c for c in self.cuts[low:high] if prefix_len + c.start - pos + len(c.closing) <= self.limit and c.end > pos
        ]
        min_fill = max(1, budget // 2)
        for strict in (True, False):
            usable = [c for c in window if not (strict and c.in_atom)]
            for kind in _WHITESPACE_KINDS:
                latest = max((c for c in usable if c.kind == kind), key=lambda c: c.start, default=None)
                if latest is not None and (latest.start - pos >= min_fill or self._next_block_fits(latest)):
                    return latest
            if usable:
                return max(usable, key=lambda c: (c.start, -c.kind))
            hard = self._hard_cut(pos, prefix_len, strict=strict)
            if hard is not None:
                return hard
        # Not reached: a one-character cut, or one just past a small code block, always fits.
        end = min(len(self.text), pos + max(1, budget))
        return _Cut(end, end, _HARD, "")

    def _next_block_fits(self, cut: _Cut) -> bool:
        """Whether the paragraph, line or whole code block after a short piece's break fits in the next piece."""
        if cut.kind not in (_PARAGRAPH, _LINE):
            return False
        index = bisect.bisect_left(self.cut_starts, cut.end)
        while index < len(self.cuts) and self.cuts[index].start - cut.end <= self.limit:
            if self.cuts[index].kind <= cut.kind:  # breaks inside code blocks rank below, so a block counts whole
                return True
            index += 1
        return len(self.text) - cut.end <= self.limit

    def _hard_cut(self, pos: int, prefix_len: int, *, strict: bool) -> _Cut | None:
        text = self.text
        top = min(len(text) - 1, pos + self.limit - prefix_len)
        for i in range(top, pos, -1):
            closing = ""
            fence = self._fence_around(i)
            if fence is not None:
                if not fence.body_start < i < fence.body_end:
                    continue  # never inside a fence line, and never leave an empty block
                closing = "\n" + fence.closer
                if prefix_len + i - pos + len(closing) > self.limit:
                    continue
            if strict and (self._inside_atom(i) or _splits_character(text, i)):
                continue
            return _Cut(i, i, _HARD, closing)
        return None

    # --- the text's structure -------------------------------------------------------------

    def _find_cuts(self) -> list[_Cut]:
        cuts: list[_Cut] = []
        for pattern, outside, inside in ((_LINE_BREAK, _LINE, _CODE_LINE), (_SPACES, _SPACE, _CODE_SPACE)):
            for m in pattern.finditer(self.text):
                start, end = m.span()
                kind = _PARAGRAPH if outside == _LINE and m[0].count("\n") > 1 else outside
                fence = self._fence_around(start)
                if fence is None:
                    in_atom = bool(self.atoms) and (self._inside_atom(start) or self._inside_atom(end))
                    cuts.append(_Cut(start, end, kind, "", in_atom))
                elif fence.body_start < start and end < fence.body_end:
                    # Inside a code block, with code left on both sides.
                    cuts.append(_Cut(start, end, inside, "\n" + fence.closer))
        cuts.sort(key=lambda c: c.start)
        return cuts

    def _find_atoms(self) -> list[tuple[int, int]]:
        """Spans that a cut should not fall inside: links, inline code, <tokens>, URLs (outside code blocks)."""
        spans: list[tuple[int, int]] = []
        pos = 0
        for segment_end, next_pos in [(f.start, f.end) for f in self.fences] + [(len(self.text), len(self.text))]:
            spans.extend((pos + m.start(), pos + m.end()) for m in _ATOMS.finditer(self.text[pos:segment_end]))
            pos = next_pos
        return spans

    def _fence_around(self, i: int) -> _Fence | None:
        """The code block whose lines contain position ``i`` (start < i < end), if any."""
        index = bisect.bisect_left(self.fence_starts, i) - 1
        if index >= 0 and i < self.fences[index].end:
            return self.fences[index]
        return None

    def _body_around(self, i: int) -> _Fence | None:
        fence = self._fence_around(i)
        return fence if fence is not None and fence.body_start < i < fence.body_end else None

    def _inside_atom(self, i: int) -> bool:
        index = bisect.bisect_left(self.atom_starts, i) - 1
        return index >= 0 and i < self.atoms[index][1]


def _find_fences(text: str) -> list[_Fence]:
    """Fenced code blocks, as CommonMark reads them at the top level (not inside lists or quotes)."""
    fences: list[_Fence] = []
    opened: tuple[int, int, str, str] | None = None  # start, body_start, opening line, fence characters
    pos = 0
    while pos < len(text):
        newline = text.find("\n", pos)
        line_end = len(text) if newline < 0 else newline
        line = text[pos:line_end]
        if opened is None:
            m = _FENCE_OPEN.fullmatch(line)
            if m is not None and not (m[1][0] == "`" and "`" in m[2]):
                opened = (pos, min(line_end + 1, len(text)), line.rstrip(), m[1])
        else:
            start, body_start, opener, chars = opened
            m = _FENCE_CLOSE.fullmatch(line)
            if m is not None and m[1][0] == chars[0] and len(m[1]) >= len(chars):
                end = pos + m.end(1)
                overhead = len(opener) + 2 + max(len(chars), end - pos)
                fences.append(_Fence(start, body_start, pos - 1, end, opener, chars, overhead))
                opened = None
        pos = line_end + 1
    if opened is not None:  # never closed: the block runs to the end of the text
        start, body_start, opener, chars = opened
        fences.append(_Fence(start, body_start, len(text), len(text), opener, chars, len(opener) + 2 + len(chars)))
    return fences


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _splits_character(text: str, i: int) -> bool:
    """Whether cutting before ``text[i]`` would break what a reader sees as one character."""
    before, after = text[i - 1], text[i]
    if (before, after) == ("\r", "\n") or "\u200d" in (before, after):
        return True
    if unicodedata.category(after) in ("Mn", "Mc", "Me"):
        return True
    code = ord(after)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True  # variation selectors, skin tones, tag sequences
    if _is_regional_indicator(after) and _is_regional_indicator(before):
        run = 0
        while i - 1 - run >= 0 and _is_regional_indicator(text[i - 1 - run]):
            run += 1
        return run % 2 == 1  # inside a flag (pairs of regional indicators)
    return False


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
