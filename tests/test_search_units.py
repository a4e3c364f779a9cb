"""Pure ranking and chunking logic."""

from __future__ import annotations

import numpy as np
import pytest

from core.knowledge.chunking import chunk_sections
from core.knowledge.extract import Section
from core.knowledge.search import VectorMatrix, reciprocal_rank_fusion, to_blob
from core.store.files import fts_query
from core.tokens import TokenCounter


def test_rrf_rewards_agreement_between_rankings() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])
    assert [i for i, _ in fused][:2] == [1, 3]
    assert {i for i, _ in fused} == {1, 2, 3, 4}
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_vector_matrix_finds_the_nearest_rows() -> None:
    rows = {10: [1.0, 0.0, 0.0], 20: [0.0, 1.0, 0.0], 30: [0.7, 0.7, 0.0]}
    matrix = VectorMatrix.from_blobs(list(rows), [to_blob(v) for v in rows.values()], 3)
    assert matrix.top([1.0, 0.1, 0.0], 2) == [10, 30]
    assert matrix.top([0.0, 0.0, 5.0], 1)  # no crash on an orthogonal query
    assert matrix.top([1.0, 0.0], 2) == []  # wrong dimension: no semantic results rather than an error
    assert VectorMatrix.from_blobs([], [], 0).top([1.0], 3) == []
    assert matrix.matrix.dtype == np.float32


def test_fts_query_quotes_every_word_and_drops_function_words() -> None:
    assert fts_query('how many holiday "days" OR NEAR(x)?') == '"many" OR "holiday" OR "days" OR "near" OR "x"'
    assert fts_query("holiday days", every_word=True) == '"holiday" AND "days"'
    assert fts_query("what is it") == '"what" OR "is" OR "it"'  # nothing else left: keep them
    assert fts_query("  ;; ") is None


def test_chunks_overlap_and_keep_their_section() -> None:
    counter = TokenCounter()
    text = " ".join(f"w{n:04d}" for n in range(2000))  # 10,000 characters, about 2,500 tokens by estimate
    chunks = chunk_sections(
        [Section(text, "page 2"), Section("short", "page 3")], size=800, overlap=400, counter=counter
    )
    assert {c.location for c in chunks[:-1]} == {"page 2"}
    assert chunks[-1].location == "page 3"
    assert chunks[-1].text == "short"
    assert all(c.tokens <= 800 for c in chunks)
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert set(first) & set(second)  # consecutive chunks overlap
    covered = set().union(*(c.text.split() for c in chunks[:-1]))
    assert covered == set(text.split())  # nothing is lost between chunks


def test_chunk_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_sections([Section("x", "")], size=100, overlap=100, counter=TokenCounter())
