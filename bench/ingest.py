"""Ingest throughput: files through ``KnowledgeBase.add``, with and without embeddings, side by side.

    .venv/bin/python -m bench.ingest [--text-files 4] [--text-mb 3] [--pdf-pages 50,100,200] [--repeats 3]

Two services are open at once, each with its own database: K (keywords only: no embedding model)
and E (``THREADLINE_EMBEDDING_MODEL`` set, embeddings from :class:`FakeOpenAI` with 384 dimensions,
run in a child process on 127.0.0.1 like :mod:`bench.fake_server`). Every file goes through
``service.knowledge.add(channel, Upload(...))`` exactly as an adapter hands it over: hashing,
extraction and chunking in the extraction worker process, embeddings, storing chunks, FTS index
and vectors in one transaction.

* Plain text: ``--text-files`` generated ``.txt`` files of ``--text-mb`` MB each (English-like
  text: function words and a Zipf-distributed vocabulary, sentences and paragraphs). Figure: MB/s.
* PDF: one generated PDF per ``--pdf-pages`` entry (fpdf2, A4, 11 pt Helvetica, headings and
  paragraphs, about 4 KB of text a page), built before the timing. Figure: pages/s.

Each file is added once per repetition to each service, in a fresh channel (so the same bytes are
never a duplicate), K and E in a random order for each file. Each add is checked afterwards
(untimed): status ``completed``, chunks stored, and on E one stored vector per chunk. Reported:
the median throughput of each side, the ratio of median times E/K and the median of per-file
ratios, and where an add spends its time (extraction worker, embedding requests, store
transaction), measured by wrapping those three calls on the instances. During every add a probe
makes a trivial store call (``SELECT 1``) every 10 ms and records how long it waited: the store is
one connection on one thread, so this is how long any other channel's store call can stall
while a file is being stored.

The child-process embedding server, and the English-like text generator, live here and are used
by the other knowledge benchmarks too (``python -m bench.ingest --serve-embeddings 384`` starts
only the server: it prints one JSON line with its base URL and answers ``stats`` and ``reset`` on
stdin until end of input).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO,
    ModelServer,
    bench_settings,
    child_server,
    forbid_non_loopback,
    machine,
    summary,
    write_result,
)
from core.knowledge.base import KnowledgeBase, Upload
from core.service import Threadline
from core.store.files import FileStore

__all__ = ["EMBEDDING_MODEL", "Corpus", "core_version", "embedding_server", "serve_embeddings"]

EMBEDDING_MODEL = "fake-bag-of-words-384"
EMBEDDING_DIM = 384


def core_version() -> dict[str, Any]:
    """Which core was measured: the git commit, whether core/ had changes, and a digest of core/**/*.py.

    core/ is being worked on while these benchmarks are written and run: the digest tells results apart.
    """
    digest = hashlib.sha256()
    for path in sorted((REPO / "core").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "core"], cwd=REPO, capture_output=True, text=True)
        changed = bool(dirty.stdout.strip())
    except OSError:
        head, changed = "", True
    return {"git_head": head, "core_changed_since_head": changed, "core_py_sha256": digest.hexdigest()[:16]}


# -- English-like text ---------------------------------------------------------------------------

_FUNCTION_TEXT = """
the of and to a in is that for it as was with be by on not this are or from at which but have an
they you were there been one all we their has would when if so no will more what can about out who
them into do my also than its some could these two may then first any like now only over other new
such should how where after most between each made used many must before through both under while
same does because without against during since very every our your here those just well why whether
until
"""
FUNCTION_WORDS = _FUNCTION_TEXT.split()
_SYLLABLES = (
    "b c d f g h j k l m n p r s t v w z br cr dr fr gr pr st tr ch sh th pl cl sl",
    "a e i o u ai ea ee io ou",
)
_ONSETS, _VOWELS = (part.split() for part in _SYLLABLES)
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rk", "ng"]


class Corpus:
    """Seeded English-like text: words drawn by a Zipf–Mandelbrot law, p(rank) ∝ 1 / (rank + 2.7).

    The function words hold the first ranks (about 40 % of the text; in English about half); the rest of
    the ``vocabulary`` are made-up content words, the most common of them in about 0.1 % of all
    words (English's "time" is at about 0.2 %). ``seed`` makes the vocabulary; ``stream`` (``seed``
    when not given) the sequence of words drawn, so two corpora with the same seed and different
    streams share their words.
    """

    def __init__(self, seed: int = 1, vocabulary: int = 30_000, stream: int | None = None) -> None:
        rng = random.Random(seed)
        words: dict[str, None] = {}
        while len(words) < vocabulary - len(FUNCTION_WORDS):
            syllables = rng.choice((1, 2, 2, 2, 3, 3, 4))
            word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
            if word not in FUNCTION_WORDS:
                words[word] = None
        self.content = list(words)
        self.words = np.array(FUNCTION_WORDS + self.content, dtype=object)
        p = 1 / (np.arange(1, len(self.words) + 1, dtype=np.float64) + 2.7)
        self._p = p / p.sum()
        self.rng = np.random.default_rng(seed if stream is None else stream)

    def indices(self, n: int) -> np.ndarray:
        """``n`` word indices into :attr:`words`."""
        return self.rng.choice(len(self.words), n, p=self._p)

    def content_words(self, n: int, top: int | None = None) -> list[str]:
        """``n`` content words drawn by frequency (from the ``top`` most frequent, when given)."""
        p = self._p[len(FUNCTION_WORDS) :][:top]
        return [self.content[i] for i in self.rng.choice(len(p), n, p=p / p.sum())]

    def paragraphs(self, chars: int) -> list[str]:
        """Paragraphs of 3–8 sentences of 6–24 words, about ``chars`` characters in all."""
        out: list[str] = []
        total = 0
        words = self.words
        while total < chars:
            sentences = []
            for _ in range(int(self.rng.integers(3, 9))):
                picked = words[self.indices(int(self.rng.integers(6, 25)))]
                sentence = " ".join(picked)
                sentences.append(sentence[0].upper() + sentence[1:] + ".")
            paragraph = " ".join(sentences)
            out.append(paragraph)
            total += len(paragraph) + 2
        return out

    def heading(self) -> str:
        return " ".join(self.content_words(int(self.rng.integers(2, 5)), top=3000)).capitalize()

    def text_document(self, chars: int) -> str:
        """Plain text with a title line every ~12 paragraphs, about ``chars`` characters."""
        parts: list[str] = []
        for i, paragraph in enumerate(self.paragraphs(chars)):
            if i % 12 == 0:
                parts.append(self.heading())
            parts.append(paragraph)
        return "\n\n".join(parts) + "\n"


def pdf_document(pages: int, seed: int) -> bytes:
    """A PDF of about ``pages`` A4 pages of English-like text with headings (fpdf2; Helvetica is latin-1)."""
    from fpdf import FPDF

    corpus = Corpus(seed)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    for i, paragraph in enumerate(corpus.paragraphs(pages * 6000)):
        if pdf.page_no() >= pages and pdf.get_y() > 200:
            break
        if i % 6 == 0:
            pdf.set_font("Helvetica", style="B", size=14)
            pdf.multi_cell(0, 8, corpus.heading(), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 5.5, paragraph, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    return bytes(pdf.output())


# -- the embedding server in a child process ---------------------------------------------------------


async def serve_embeddings(dim: int) -> None:
    """FakeOpenAI with ``dim``-dimensional bag-of-words embeddings; commands on stdin (see the module doc)."""
    from tests.fakes.openai_server import FakeOpenAI

    async with FakeOpenAI(embedding_dim=dim) as fake:
        print(json.dumps({"base_url": fake.base_url}), flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = line.strip()
            bodies = [r for r in fake.requests if "input" in r]
            answer: dict[str, Any]
            if command == "stats":
                inputs = sum(len(b["input"]) if isinstance(b["input"], list) else 1 for b in bodies)
                answer = {"embedding_requests": len(bodies), "inputs": inputs}
            elif command == "reset":
                fake.requests.clear()
                answer = {"ok": True}
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


@contextlib.asynccontextmanager
async def embedding_server(
    dim: int = EMBEDDING_DIM, argv: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[ModelServer]:
    """An embeddings server in a child process on 127.0.0.1: FakeOpenAI, or ``argv`` speaking the same protocol."""
    command = list(argv or [sys.executable, "-m", "bench.ingest", "--serve-embeddings", str(dim)])
    async with child_server(command, what="embedding server", start_timeout=300, env=env) as (hello, process):
        yield ModelServer(process, base_url=hello["base_url"])


# -- timing one add -----------------------------------------------------------------------------------

PHASES = {"extract+chunk (worker)": ("_pool", "prepare"), "embed": (None, "_embed"), "store": ("_files", "complete")}


@dataclass
class Phases:
    """Seconds spent in the wrapped calls during the current add."""

    spent: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def instrument(self, kb: KnowledgeBase) -> None:
        """Wrap (on the instances, never the classes) the three steps of an add; a missing one is skipped."""
        for phase, (holder, name) in PHASES.items():
            owner: Any = kb if holder is None else getattr(kb, holder, None)
            real = getattr(owner, name, None)
            if real is None:
                self.skipped.append(phase)
                continue
            setattr(owner, name, self._timed(phase, real))

    def _timed(self, phase: str, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await real(*args, **kwargs)
            finally:
                self.spent[phase] = self.spent.get(phase, 0.0) + time.perf_counter() - start

        return timed


class StoreProbe:
    """During an add: a trivial store call every 10 ms, and how long each waited (the store is one thread)."""

    def __init__(self, service: Threadline, interval: float = 0.010) -> None:
        self._service = service
        self._interval = interval
        self.waits: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.waits = []
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="store probe")

    async def stop(self) -> None:
        """Stop after the call in flight, if any, has returned (so its wait is counted)."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)
            start = time.perf_counter()
            await self._service.store.call(lambda db: db.execute("SELECT 1").fetchone())
            self.waits.append(time.perf_counter() - start)


@dataclass
class Side:
    name: str
    service: Threadline
    phases: Phases

    @property
    def kb(self) -> KnowledgeBase:
        return self.service.knowledge


@dataclass(frozen=True)
class Source:
    kind: str  # "text" or "pdf"
    name: str
    data: bytes
    mime: str


async def add_once(side: Side, channel: str, source: Source) -> dict[str, Any]:
    """Add one file to a fresh channel, timed; then check what was stored (untimed)."""
    side.phases.spent = {}
    upload = Upload(name=source.name, data=source.data, mime=source.mime, uploader_id="U_BENCH")
    probe = StoreProbe(side.service)
    probe.start()
    start = time.perf_counter()
    try:
        result = await side.kb.add(channel, upload)
    finally:
        seconds = time.perf_counter() - start
        await probe.stop()
    record = result.file
    if record.status != "completed" or record.chunk_count == 0:
        raise AssertionError(f"{side.name}: {source.name} was not indexed: {record.status} {record.error}")
    vectors = 0
    if side.kb.embedding_model:
        ids, _, dim = await FileStore(side.service.store).vectors(channel, side.kb.embedding_model)
        vectors = len(ids)
        if vectors != record.chunk_count or dim != EMBEDDING_DIM:
            raise AssertionError(f"{side.name}: {vectors} vectors of dim {dim} for {record.chunk_count} chunks")
    return {
        "side": side.name,
        "file": source.name,
        "kind": source.kind,
        "bytes": len(source.data),
        "pages": record.pages,
        "chunks": record.chunk_count,
        "vectors": vectors,
        "seconds": seconds,
        "phases_s": dict(side.phases.spent),
        "store_probe_max_ms": max(probe.waits, default=0.0) * 1000,
    }


def throughput(row: dict[str, Any]) -> float:
    """MB/s for text, pages/s for PDF."""
    if row["kind"] == "pdf":
        return float(row["pages"]) / float(row["seconds"])
    return float(row["bytes"]) / 1e6 / float(row["seconds"])


def side_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    phases = sorted({p for r in rows for p in r["phases_s"]})
    return {
        "adds": len(rows),
        "throughput": summary([throughput(r) for r in rows]),
        "seconds": summary([r["seconds"] for r in rows]),
        "chunks_per_s_median": statistics.median(r["chunks"] / r["seconds"] for r in rows),
        "phases_share_median": {
            p: statistics.median(r["phases_s"].get(p, 0.0) / r["seconds"] for r in rows) for p in phases
        },
        "phases_s_median": {p: statistics.median(r["phases_s"].get(p, 0.0) for r in rows) for p in phases},
        "store_probe_max_ms": summary([r["store_probe_max_ms"] for r in rows]),
    }


# -- main -----------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    rng = random.Random(args.seed)
    pdf_pages = [int(p) for p in args.pdf_pages.split(",") if p.strip()]
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "command": ".venv/bin/python -m bench.ingest " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "core": core_version(),
        "config": {
            "text_files": args.text_files,
            "text_mb": args.text_mb,
            "pdf_pages": pdf_pages,
            "repeats": args.repeats,
            "seed": args.seed,
            "embedding": f"FakeOpenAI bag-of-words, dim {EMBEDDING_DIM}, child process on 127.0.0.1",
            "settings": "tokenizer=estimate, chunk_tokens=800, chunk_overlap=400, extraction_workers=1 (defaults)",
            "sides": {"K": "keywords only (no embedding model)", "E": f"embeddings ({EMBEDDING_MODEL})"},
        },
    }

    started = time.perf_counter()
    sources: list[Source] = []
    for i in range(args.text_files):
        text = Corpus(args.seed + i).text_document(int(args.text_mb * 1e6))
        sources.append(Source("text", f"notes-{i + 1}.txt", text.encode(), "text/plain"))
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        pdfs = list(pool.map(pdf_document, pdf_pages, [args.seed + 100 + i for i in range(len(pdf_pages))]))
    for pages, data in zip(pdf_pages, pdfs, strict=True):
        sources.append(Source("pdf", f"report-{pages}p.pdf", data, "application/pdf"))
    warmups = [
        Source("text", "warmup.txt", Corpus(0).text_document(50_000).encode(), "text/plain"),
        Source("pdf", "warmup.pdf", pdf_document(3, 0), "application/pdf"),
    ]
    result["inputs"] = [{"name": s.name, "kind": s.kind, "bytes": len(s.data)} for s in sources]
    result["build_inputs_s"] = time.perf_counter() - started
    print(f"built {len(sources)} input files in {result['build_inputs_s']:.1f} s", flush=True)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp:
        async with embedding_server(EMBEDDING_DIM) as server:
            keyword = await Threadline.open(bench_settings(server.base_url, Path(tmp) / "k.db"))
            embedded = await Threadline.open(
                bench_settings(server.base_url, Path(tmp) / "e.db", embedding_model=EMBEDDING_MODEL)
            )
            try:
                sides = {"K": Side("K", keyword, Phases()), "E": Side("E", embedded, Phases())}
                for side in sides.values():
                    side.phases.instrument(side.kb)
                    # Untimed warm-up: starts the extraction worker process and loads its modules.
                    for warm in warmups:
                        await add_once(side, f"bench:warmup:{warm.kind}", warm)
                await server.command("reset")
                for repeat in range(args.repeats):
                    for index, source in enumerate(sources):
                        order = list(sides)
                        rng.shuffle(order)
                        for name in order:
                            row = await add_once(sides[name], f"bench:ingest:{repeat}:{index}:{name}", source)
                            row["repeat"] = repeat
                            row["order"] = "".join(order)
                            rows.append(row)
                            print(
                                f"  {name} {source.name:18} {row['seconds']:7.3f} s  {row['chunks']:5d} chunks  "
                                f"{throughput(row):8.2f} {'pages/s' if source.kind == 'pdf' else 'MB/s'}",
                                flush=True,
                            )
                result["server_check"] = stats = await server.command("stats")
                embedded_chunks = sum(r["chunks"] for r in rows if r["side"] == "E")
                stats["inputs_expected"] = embedded_chunks
                if stats["inputs"] != embedded_chunks:
                    raise AssertionError(f"the server embedded {stats['inputs']} texts for {embedded_chunks} chunks")
                result["phases_skipped"] = sorted({p for s in sides.values() for p in s.phases.skipped})
            finally:
                await keyword.close()
                await embedded.close()

    result["rows"] = rows
    result["kinds"] = {}
    for kind in ("text", "pdf"):
        of_kind = [r for r in rows if r["kind"] == kind]
        if not of_kind:
            continue
        by_side = {name: [r for r in of_kind if r["side"] == name] for name in ("K", "E")}
        pairs = [
            (k, e) for k in by_side["K"] for e in by_side["E"] if (k["file"], k["repeat"]) == (e["file"], e["repeat"])
        ]
        result["kinds"][kind] = {
            "unit": "pages/s" if kind == "pdf" else "MB/s",
            "sides": {name: side_summary(side_rows) for name, side_rows in by_side.items()},
            "ratio_E/K_median_time": statistics.median(r["seconds"] for r in by_side["E"])
            / statistics.median(r["seconds"] for r in by_side["K"]),
            "ratio_E/K_median_of_pairs": statistics.median(e["seconds"] / k["seconds"] for k, e in pairs),
            "pairs": len(pairs),
        }
    result["loadavg_at_end"] = os.getloadavg()
    path = write_result("ingest", result)
    report(result, path)
    return 0


def report(result: dict[str, Any], path: Path) -> None:
    cfg = result["config"]
    print(
        f"ingest through KnowledgeBase.add: {cfg['repeats']} repetitions; K = keywords only, "
        f"E = with embeddings ({cfg['embedding']})"
    )
    for kind, data in result["kinds"].items():
        unit = data["unit"]
        print(f"{kind}: median {unit} (min-max), median s per file, chunks/s, share of the add's time by phase")
        for name, side in data["sides"].items():
            t = side["throughput"]
            shares = ", ".join(f"{p} {v * 100:.0f} %" for p, v in side["phases_share_median"].items())
            print(
                f"  {name}  {t['median']:8.2f} {unit} ({t['min']:.2f}-{t['max']:.2f})  "
                f"{side['seconds']['median']:7.3f} s  {side['chunks_per_s_median']:8.0f} chunks/s   {shares}; "
                f"longest wait of another store call {side['store_probe_max_ms']['median']:.0f} ms (median of adds)"
            )
        print(
            f"  ratio E/K of median times {data['ratio_E/K_median_time']:.2f}; "
            f"median of per-file ratios {data['ratio_E/K_median_of_pairs']:.2f} ({data['pairs']} pairs)"
        )
    print(f"server check: {result['server_check']}")
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Ingest throughput through KnowledgeBase.add.")
    parser.add_argument("--text-files", type=int, default=4, help="generated .txt files (4)")
    parser.add_argument("--text-mb", type=float, default=3.0, help="size of each, MB (3)")
    parser.add_argument("--pdf-pages", default="50,100,200", help="one PDF per entry, pages (50,100,200)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve-embeddings", type=int, metavar="DIM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_embeddings:
        asyncio.run(serve_embeddings(args.serve_embeddings))
        return
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
