"""split_message: pieces fit the limit, keep code blocks renderable, and lose nothing but the whitespace cut at."""

from __future__ import annotations

import random
import re

import pytest

from bots.text import split_message

_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")


def open_fence_at_end(piece: str) -> str | None:
    """The fence characters of a code block still open at the end of ``piece`` (a simple CommonMark reading)."""
    opened: str | None = None
    for line in piece.split("\n"):
        m = _FENCE_LINE.fullmatch(line)
        if m is None:
            continue
        if opened is None:
            opened = m[1]
        elif m[1][0] == opened[0] and len(m[1]) >= len(opened) and not m[2].strip():
            opened = None
    return opened


def assert_pieces_are_the_original(original: str, pieces: list[str]) -> None:
    """Pieces, once the added fence lines are removed, are the original's text in order, apart from
    whitespace at the cuts."""
    pos = 0
    for index, piece in enumerate(pieces):
        first_newline, last_newline = piece.find("\n"), piece.rfind("\n")
        variants = [piece]
        if index > 0 and first_newline > 0:
            variants.append(piece[first_newline + 1 :])  # a reopened fence line removed
        if index < len(pieces) - 1 and last_newline > 0:
            variants += [v[: v.rfind("\n")] for v in list(variants) if "\n" in v]  # an added closing line removed
        for variant in variants:
            start = pos
            while start < len(original) and not original.startswith(variant, start) and original[start].isspace():
                start += 1
            if variant and original.startswith(variant, start):
                pos = start + len(variant)
                break
        else:
            raise AssertionError(f"piece {index} is not the original's next text: {piece!r} at {original[pos:]!r}")
    assert not original[pos:].strip(), f"text lost at the end: {original[pos:]!r}"


def assert_well_formed(original: str, pieces: list[str], limit: int) -> None:
    assert pieces, "a non-blank text gives at least one piece"
    for piece in pieces:
        assert len(piece) <= limit, (len(piece), limit, piece)
        assert piece.strip(), "no blank pieces"
        assert open_fence_at_end(piece) is None, f"unbalanced fence in {piece!r}"
    assert_pieces_are_the_original(original, pieces)


# --- generated Markdown -------------------------------------------------------------------------------------

WORDS = [
    "the",
    "a",
    "model",
    "thread",
    "channel",
    "answer",
    "löng",
    "naïve",
    "東京",
    "data",
    "quick",
    "brown",
    "fox",
    "café",
    "über",
    "🙂",
    "👍🏽",
]
LANGS = ["python", "", "js", "sql", "text"]


def random_words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def random_paragraph(rng: random.Random, atoms: list[str]) -> str:
    parts = []
    for _ in range(rng.randint(1, 12)):
        roll = rng.random()
        if roll < 0.1:
            atom = f"[{random_words(rng, rng.randint(1, 4))}](https://example.com/{rng.randint(1, 999)}/page)"
        elif roll < 0.2:
            atom = f"`{random_words(rng, rng.randint(1, 3))}`"
        elif roll < 0.25:
            atom = f"<@U{rng.randint(100, 999)}>"
        elif roll < 0.28:
            atom = "x" * rng.randint(20, 120)  # a long word
        else:
            parts.append(random_words(rng, rng.randint(1, 15)))
            continue
        atoms.append(atom)
        parts.append(atom)
    text = " ".join(parts)
    if rng.random() < 0.3:
        text = "\n".join(f"- {line}" for line in text.split(" . "))
    return text


def random_code(rng: random.Random) -> str:
    fence = rng.choice(["```", "```", "~~~", "````"])
    lines = []
    for _ in range(rng.randint(1, 25)):
        indent = " " * rng.choice([0, 0, 4, 8])
        lines.append(indent + rng.choice(["x = 1", "return f(a, b)", "# comment " + random_words(rng, 5), "", "}"]))
    return f"{fence}{rng.choice(LANGS)}\n" + "\n".join(lines) + f"\n{fence}"


def random_markdown(rng: random.Random) -> tuple[str, list[str]]:
    atoms: list[str] = []
    blocks = []
    for _ in range(rng.randint(1, 10)):
        blocks.append(random_code(rng) if rng.random() < 0.35 else random_paragraph(rng, atoms))
    separators = ["\n\n", "\n", "\n\n\n"]
    text = blocks[0]
    for block in blocks[1:]:
        text += rng.choice(separators) + block
    return text, atoms


@pytest.mark.parametrize("seed", range(300))
def test_generated_markdown(seed: int) -> None:
    rng = random.Random(seed)
    text, atoms = random_markdown(rng)
    for limit in (24, 40, 77, 160, 500, 3000):
        pieces = split_message(text, limit)
        assert_well_formed(text, pieces, limit)
        for atom in atoms:
            if len(atom) <= limit:
                assert any(atom in piece for piece in pieces), f"{atom!r} was split (limit {limit})"


def test_random_characters_including_backticks_and_newlines() -> None:
    rng = random.Random(7)
    alphabet = "ab `~[]()<>\n\n  \t" + "é🙂"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400)))
        for limit in (1, 2, 7, 30, 100):
            pieces = split_message(text, limit)
            if not text.strip():
                assert pieces == []
                continue
            assert all(len(p) <= limit and p.strip() for p in pieces)
            # Fences here can be unclosed or odd; when none is, the content check applies fully.
            if "```" not in text and "~~~" not in text:
                assert_pieces_are_the_original(text, pieces)


# --- specific cases -----------------------------------------------------------------------------------


def test_text_that_fits_is_returned_unchanged() -> None:
    assert split_message("  hello\n\n", 100) == ["  hello\n\n"]
    assert split_message("x" * 10, 10) == ["x" * 10]


def test_blank_text_gives_no_pieces() -> None:
    assert split_message("", 10) == []
    assert split_message(" \n\n ", 10) == []


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("hello", 0)


def test_prefers_paragraph_then_line_then_space() -> None:
    para = "a" * 30 + "\n" + "b" * 10 + "\n\n" + "c" * 10 + "\n" + "d" * 10 + " " + "e" * 10
    assert split_message(para, 60)[0] == "a" * 30 + "\n" + "b" * 10

    lines = "a" * 30 + " " + "b" * 10 + "\n" + "c" * 10 + " " + "d" * 20
    assert split_message(lines, 60)[0] == "a" * 30 + " " + "b" * 10

    words = "word " * 30
    assert split_message(words, 22) == ["word word word word"] * 7 + ["word word "]  # the end is kept as is


def test_a_better_break_early_in_the_piece_does_not_make_it_tiny() -> None:
    text = "Hi.\n\n" + "word " * 40
    pieces = split_message(text, 50)
    assert len(pieces[0]) > 25
    assert pieces[0].startswith("Hi.\n\nword")


def test_long_word_is_cut_hard() -> None:
    assert split_message("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})" for i in range(12))
    text = f"Here is the script:\n\n```python\n{code}\n```\n\nThat is all."
    pieces = split_message(text, 60)

    # The block is too long for one piece anyway, so the first piece is filled with its start.
    assert pieces[0] == "Here is the script:\n\n```python\nprint(0)\nprint(1)\n```"
    assert all(len(p) <= 60 for p in pieces)
    code_pieces = [p for p in pieces if "print" in p]
    assert len(code_pieces) > 2
    for piece in code_pieces[1:]:
        assert piece.startswith("```python\nprint(")
    for piece in code_pieces[:-1]:
        assert piece.endswith(")\n```")
    assert pieces[-1].endswith("That is all.")
    assert_well_formed(text, pieces, 60)


def test_added_fence_lines_count_toward_the_limit() -> None:
    code = "\n".join("0123456789" for _ in range(10))
    text = f"```sql\n{code}\n```"
    for limit in range(22, 60):
        pieces = split_message(text, limit)
        assert all(len(p) <= limit for p in pieces), limit
        assert sum(p.count("0123456789") for p in pieces) == 10
        assert_well_formed(text, pieces, limit)


def test_tilde_and_long_fences_are_closed_with_their_own_characters() -> None:
    body = "\n".join("line with ``` inside" for _ in range(8))
    for fence in ("~~~", "````"):
        text = f"{fence}md\n{body}\n{fence}"
        pieces = split_message(text, 70)
        assert len(pieces) > 1
        assert all(p.startswith(f"{fence}md\n") and p.endswith(f"\n{fence}") for p in pieces)
        assert_well_formed(text, pieces, 70)


def test_splits_before_a_code_block_rather_than_inside_it() -> None:
    text = "Intro words here.\n\n```\n" + "x = 1\n" * 5 + "```\nAfter."
    pieces = split_message(text, 50)
    assert pieces[0] == "Intro words here."
    assert pieces[1].startswith("```\nx = 1")
    assert_well_formed(text, pieces, 50)


def test_a_split_never_leaves_an_empty_code_block() -> None:
    text = "```js\n" + "a" * 40 + "\n```"
    for limit in range(12, 60):
        for piece in split_message(text, limit):
            assert "```js\n```" not in piece
            assert not piece.startswith("```js\n\n```")


def test_unclosed_fence_is_closed_in_every_piece_but_the_last() -> None:
    text = "```python\n" + "\n".join(f"step_{i}()" for i in range(10))
    pieces = split_message(text, 40)
    assert len(pieces) > 1
    assert all(p.endswith("\n```") for p in pieces[:-1])
    assert all(p.startswith("```python\n") for p in pieces)
    assert not pieces[-1].endswith("```")


def test_fence_too_long_to_reopen_is_split_as_plain_text() -> None:
    text = "```" + "x" * 30 + "\ncode line\n```"
    pieces = split_message(text, 20)
    assert all(len(p) <= 20 for p in pieces)
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")


def test_link_and_inline_code_are_kept_whole() -> None:
    link = "[the documentation](https://example.com/docs/page)"
    text = f"Please read {link} before you start."
    pieces = split_message(text, 60)
    assert any(link in p for p in pieces)
    assert_well_formed(text, pieces, 60)

    code = "`git rebase --onto main feature`"
    text = f"Then run {code} and push."
    pieces = split_message(text, 40)
    assert any(code in p for p in pieces)
    assert_well_formed(text, pieces, 40)


def test_an_atom_longer_than_the_limit_is_split_anyway() -> None:
    link = "[" + "word " * 10 + "](https://example.com/x)"
    pieces = split_message(link, 20)
    assert all(len(p) <= 20 for p in pieces)
    assert_pieces_are_the_original(link, pieces)


def test_mentions_and_urls_are_not_cut() -> None:
    text = "ping <@U12345678> and see https://example.com/a/very/long/path?with=query"
    for limit in range(20, 60):
        pieces = split_message(text, limit)
        assert any("<@U12345678>" in p for p in pieces)
        if limit >= 47:
            assert any("https://example.com/a/very/long/path?with=query" in p for p in pieces)


def test_emoji_sequences_and_accents_are_not_cut() -> None:
    family = "👨‍👩‍👧‍👦"
    thumbs = "👍🏽"
    flag = "🇫🇷"
    accent = "e\u0301"
    for grapheme in (family, thumbs, flag, accent):
        text = grapheme * 12
        for limit in (len(grapheme), len(grapheme) + 1, 2 * len(grapheme) + 1, 10):
            pieces = split_message(text, limit)
            assert "".join(pieces) == text
            assert all(p.replace(grapheme, "") == "" for p in pieces), (grapheme, limit, pieces)


def test_slack_sized_answer() -> None:
    rng = random.Random(42)
    text = "\n\n".join(random_markdown(rng)[0] for _ in range(60))
    pieces = split_message(text, 3000)
    assert len(pieces) >= 2
    assert all(len(p) > 1500 for p in pieces[:-1]), "pieces are filled, not needlessly short"
    assert_well_formed(text, pieces, 3000)
