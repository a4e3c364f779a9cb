"""Turning an uploaded file's bytes into text sections, each with where it came from.

    extracted = extract("handbook.pdf", data, mime="application/pdf")
    for section in extracted.sections:
        ...  # section.text, section.location == "page 3"

Everything here is pure and synchronous: the caller runs it in a worker process, never on the event loop.
A file that cannot be indexed raises :class:`ExtractionError`, whose message is written for the person who
uploaded it; the technical detail goes to the log. No library exception escapes :func:`extract`.

Office files are zip containers. Their declared sizes are checked before any library opens them, which is
enough: :mod:`zipfile`, which python-docx, python-pptx and openpyxl all read through, never inflates a member
past the size its directory entry declares. The parsing libraries are imported on first use, so importing
this module stays cheap for processes that never extract.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from itertools import chain
from typing import Any

from core.errors import ThreadlineError

__all__ = [
    "KINDS",
    "SUPPORTED",
    "ExtractLimits",
    "Extracted",
    "ExtractionError",
    "Section",
    "UnsupportedFile",
    "detect_kind",
    "extract",
]

_log = logging.getLogger(__name__)

KINDS = ("text", "markdown", "csv", "json", "html", "code", "pdf", "docx", "pptx", "xlsx")
SUPPORTED = "text, Markdown, CSV/TSV, JSON, HTML, source code, PDF, DOCX, PPTX, XLSX"


@dataclass(frozen=True)
class Section:
    """A stretch of a file's text and where it is: "page 3", "slide 4", "sheet Revenue", "Intro > Setup",
    "rows 1-200", or "" when the file has no structure to point into."""

    text: str
    location: str


@dataclass(frozen=True)
class Extracted:
    kind: str  # one of KINDS
    sections: list[Section]
    pages: int | None  # PDF pages, PPTX slides or XLSX sheets; None for the other kinds


@dataclass(frozen=True)
class ExtractLimits:
    """What one file may cost to extract. Beyond any of these the file is refused, never truncated."""

    max_unpacked_bytes: int = 200 * 1024 * 1024  # total uncompressed size inside a DOCX/PPTX/XLSX container
    max_ratio: float = 200.0  # uncompressed size / file size above which a container is a zip bomb
    max_pages: int = 5000  # PDF pages, slides or sheets
    max_chars: int = 20_000_000  # extracted text; also caps the cells scanned in a spreadsheet
    max_members: int = 10_000  # files inside a DOCX/PPTX/XLSX container


class ExtractionError(ThreadlineError):
    """Why a file cannot be indexed, written for the person who uploaded it: what happened and what to do."""


class UnsupportedFile(ExtractionError):
    """The file is of a kind Threadline does not read (the message names the kinds it does)."""


# --- kind detection ----------------------------------------------------------------------------------------

# fmt: off
_CODE_EXTENSIONS = (
    "py", "pyi", "js", "mjs", "cjs", "ts", "tsx", "jsx", "go", "rs", "java", "kt", "kts", "c", "h", "cc", "cpp",
    "cxx", "hpp", "hh", "cs", "rb", "php", "swift", "scala", "sh", "bash", "zsh", "fish", "ps1", "bat", "sql",
    "yaml", "yml", "toml", "ini", "cfg", "conf", "properties", "xml", "css", "scss", "sass", "less", "lua", "r",
    "m", "mm", "pl", "pm", "ex", "exs", "erl", "hrl", "hs", "clj", "cljs", "dart", "vue", "svelte", "tf", "hcl",
    "proto", "gradle", "groovy", "graphql", "gql", "jl", "nim", "zig", "vb", "fs", "fsx", "ml", "mli", "elm",
    "cmake", "mk", "dockerfile", "jsonl", "ndjson",
)
# fmt: on

_EXTENSIONS: dict[str, str] = {
    **dict.fromkeys(("txt", "text", "log", "rst", "adoc", "asciidoc", "org", "tex", "srt", "vtt"), "text"),
    **dict.fromkeys(("md", "markdown", "mdown", "mkd", "mdx"), "markdown"),
    **dict.fromkeys(("csv", "tsv"), "csv"),
    **dict.fromkeys(("json", "geojson", "ipynb"), "json"),
    **dict.fromkeys(("html", "htm", "xhtml"), "html"),
    "pdf": "pdf",
    "docx": "docx",
    "pptx": "pptx",
    **dict.fromkeys(("xlsx", "xlsm"), "xlsx"),
    **dict.fromkeys(_CODE_EXTENSIONS, "code"),
}

# fmt: off
_CODE_NAMES = frozenset({
    "dockerfile", "containerfile", "makefile", "gnumakefile", "jenkinsfile", "vagrantfile", "gemfile", "rakefile",
    "procfile", "brewfile", ".gitignore", ".dockerignore", ".editorconfig", ".bashrc", ".zshrc",
})
# fmt: on

_MIME_TYPES: dict[str, str] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/json": "json",
    "text/json": "json",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-excel.sheet.macroenabled.12": "xlsx",
    "application/javascript": "code",
    "application/x-javascript": "code",
    "application/typescript": "code",
    "application/x-sh": "code",
    "application/x-python": "code",
    "application/sql": "code",
    "application/xml": "code",
    "application/x-yaml": "code",
    "application/yaml": "code",
    "application/toml": "code",
}

# Formats people often try, and what to save them as instead.
_CONVERT_HINTS: dict[str, str] = {
    **dict.fromkeys(("doc", "rtf", "odt", "pages", "wpd"), "DOCX or PDF"),
    **dict.fromkeys(("xls", "ods", "numbers"), "XLSX or CSV"),
    **dict.fromkeys(("ppt", "odp", "key"), "PPTX or PDF"),
}

_ZIP_MARKERS = (("word/", "docx"), ("ppt/", "pptx"), ("xl/", "xlsx"))


def detect_kind(name: str, data: bytes, mime: str | None = None) -> str | None:
    """The kind of file this is, from its name, then its MIME type, then its first bytes; None if unsupported."""
    base = _basename(name).lower()
    extension = _extension(base)
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if base in _CODE_NAMES or base.startswith(("dockerfile.", "makefile.")):
        return "code"
    if mime:
        essence = mime.split(";", 1)[0].strip().lower()
        if essence in _MIME_TYPES:
            return _MIME_TYPES[essence]
        if essence.endswith("+json"):
            return "json"
        if essence.startswith("text/x-") or essence.startswith("text/javascript"):
            return "code"
        if essence.startswith("text/"):
            return "text"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    if not extension and data and _looks_like_text(data):
        return "text"  # README, LICENSE, notes: no extension, but plainly text
    return None


def _basename(name: str) -> str:
    return re.split(r"[\\/]", name)[-1]


def _extension(base: str) -> str:
    stem, dot, extension = base.rpartition(".")
    return extension.lower() if dot and stem else ""


def _zip_kind(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except Exception as exc:  # any damage means "not a container we know", never a crash here
        _log.debug("Not a readable zip: %r", exc)
        return None
    for prefix, kind in _ZIP_MARKERS:
        if any(member.startswith(prefix) for member in names):
            return kind
    return None


# --- the entry point ---------------------------------------------------------------------------------------

_DESCRIPTIONS = {
    "text": "text",
    "markdown": "Markdown",
    "csv": "CSV",
    "json": "JSON",
    "html": "HTML",
    "code": "source code",
    "pdf": "a PDF",
    "docx": "a Word document",
    "pptx": "a PowerPoint presentation",
    "xlsx": "an Excel workbook",
}

_FIXES = {
    "pdf": "Open it, export or print it to a new PDF, and upload that.",
    "docx": "Open it in Word (or another editor), save a fresh copy as .docx, and upload that.",
    "pptx": "Open it in PowerPoint (or another editor), save a fresh copy as .pptx, and upload that.",
    "xlsx": "Open it in Excel (or another editor), save a fresh copy as .xlsx, and upload that.",
}


def extract(name: str, data: bytes, mime: str | None = None, limits: ExtractLimits = ExtractLimits()) -> Extracted:
    """The text of an uploaded file, in sections with locations.

    Raises ExtractionError, with a message for the uploader, for any file that cannot be indexed: unsupported,
    damaged, password-protected, a zip bomb, over a limit, or with no text in it.
    """
    if not data:
        raise ExtractionError(f"{name} is empty (0 bytes), so there is nothing to search. Check it's the right file.")
    kind = detect_kind(name, data, mime)
    if kind is None:
        raise UnsupportedFile(_unsupported_message(name))
    try:
        extracted = _EXTRACTORS[kind](name, data, limits)
    except ExtractionError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        _log.info("Could not extract %s as %s", name, kind, exc_info=True)
        raise ExtractionError(_unreadable_message(name, kind)) from exc
    if not any(section.text.strip() for section in extracted.sections):
        raise ExtractionError(_no_text_message(name, kind))
    _log.debug("Extracted %s as %s: %d sections", name, kind, len(extracted.sections))
    return extracted


def _unsupported_message(name: str) -> str:
    extension = _extension(_basename(name).lower())
    if extension in _CONVERT_HINTS:
        return (
            f"{name} is a .{extension} file, which the knowledge base can't read. "
            f"Save it as {_CONVERT_HINTS[extension]} and upload that."
        )
    return f"{name} is not a kind of file the knowledge base can read. It can search: {SUPPORTED}."


def _unreadable_message(name: str, kind: str) -> str:
    if kind in _FIXES:
        return f"{name} could not be read as {_DESCRIPTIONS[kind]}; it may be damaged. {_FIXES[kind]}"
    return (
        f"{name} could not be read as {_DESCRIPTIONS[kind]}. Check the file, or save it as plain text and upload that."
    )


def _no_text_message(name: str, kind: str) -> str:
    if kind == "pdf":
        return (
            f"{name} has no text layer (it may be a scan); OCR is not supported. "
            "Upload a version with selectable text, for example after running it through OCR."
        )
    if kind == "xlsx":
        return f"{name} has no values in any sheet, so there is nothing to search."
    if kind == "pptx":
        return f"{name} has no text on any slide or in the speaker notes, so there is nothing to search."
    if kind == "csv":
        return f"{name} has no rows of data under its header, so there is nothing to search."
    return f"{name} contains no text, so there is nothing to search. Check it's the right file."


class _Budget:
    """Counts extracted characters and refuses the file once they pass ``max_chars``."""

    def __init__(self, name: str, limits: ExtractLimits) -> None:
        self._name = name
        self._limit = limits.max_chars
        self._used = 0

    def spend(self, text: str) -> None:
        self._used += len(text)
        if self._used > self._limit:
            raise ExtractionError(
                f"{self._name} holds more than {self._limit:,} characters of text, more than one file may have "
                "here. Split it into smaller files and upload those."
            )


def _check_pages(name: str, count: int, unit: str, limits: ExtractLimits) -> None:
    if count > limits.max_pages:
        raise ExtractionError(
            f"{name} has {count:,} {unit}, more than the {limits.max_pages:,} a file may have here. "
            "Split it into smaller files and upload those."
        )


# --- text-like formats -------------------------------------------------------------------------------------

# C0 and C1 control characters, except tab, newline, carriage return and form feed.
_CONTROL_CHARS = tuple(chr(c) for c in (*range(0x09), 0x0B, *range(0x0E, 0x20), *range(0x7F, 0xA0)))
_MAX_CONTROL_SHARE = 0.10
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode(data: bytes, declared: str | None = None) -> str | None:
    """The bytes as text, or None when they are not text: NUL bytes, or too many control characters.

    A byte-order mark decides the encoding; otherwise the declared one (an HTML page's charset), then UTF-8,
    then the best guess of charset-normalizer (Shift-JIS, EUC-JP, GB18030, Windows-1251, Windows-1252, ...).
    """
    text = _decode_with_bom(data)
    if text is None:
        if b"\x00" in data:
            return None
        text = _decode_without_bom(data, declared)
    if text is None or "\x00" in text:
        return None
    controls = sum(text.count(c) for c in _CONTROL_CHARS)
    if controls > _MAX_CONTROL_SHARE * len(text):
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode_with_bom(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    return None


def _decode_without_bom(data: bytes, declared: str | None) -> str | None:
    candidates = ["utf-8"]
    if declared and not declared.lower().startswith(("utf-16", "utf-32")):  # without a BOM those are mistakes
        candidates.insert(0, declared)
    for encoding in candidates:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    guess = _guess_encoding(data)
    if guess is None:
        return None
    _log.debug("Decoding as %s (a guess)", guess)
    return data.decode(guess, errors="replace")


# Where charset-normalizer finds several encodings equally likely (short texts often fit many), the more
# common one wins: Windows-1252 over Central European code pages, Japanese over Korean for EUC bytes, ...
# Each match names the encodings that decode its bytes alike (``could_be_from_charset``); the first of
# those in this list ranks it.
_COMMON_ENCODINGS = (
    "cp1252", "cp932", "shift_jis", "euc_jp", "gb18030", "gbk", "big5", "cp949", "euc_kr", "cp1251", "koi8_r",
    "cp1250",
)  # fmt: skip


def _guess_encoding(data: bytes) -> str | None:
    """The likeliest encoding of bytes that are not UTF-8, by charset-normalizer; None when nothing decodes
    them into plausible text (binary data)."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return None
    least = min(match.chaos for match in matches)
    tied = [match for match in matches if match.chaos <= least + 1e-9]
    most = max(match.coherence for match in tied)
    tied = [match for match in tied if match.coherence >= most - 1e-9]

    def rank(match: Any) -> int:
        return min(
            (_COMMON_ENCODINGS.index(name) for name in match.could_be_from_charset if name in _COMMON_ENCODINGS),
            default=len(_COMMON_ENCODINGS),
        )

    return str(min(tied, key=rank).encoding)


def _looks_like_text(data: bytes) -> bool:
    return _decode(data[:65536]) is not None


def _text_of(name: str, data: bytes, limits: ExtractLimits, declared: str | None = None) -> str:
    text = _decode(data, declared)
    if text is None:
        raise ExtractionError(
            f"{name} doesn't look like text (it contains binary data), so it can't be searched. "
            f"If it's a document, upload it in a supported format: {SUPPORTED}."
        )
    _Budget(name, limits).spend(text)
    return text


def _extract_text(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    return Extracted("text", [Section(_text_of(name, data, limits).strip(), "")], None)


def _extract_code(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    return Extracted("code", [Section(_text_of(name, data, limits).strip("\n"), "")], None)


class _Outline:
    """Text filed under a heading path: one Section per heading, located by the path ("Install > Linux").

    A heading with nothing under it before the next heading makes no section of its own (its title is still in
    the location of any subheading); a document made of headings alone becomes one section of those headings.
    """

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []
        self._heading = ""
        self._lines: list[str] = []
        self._sections: list[Section] = []
        self._bare_headings: list[str] = []

    def heading(self, level: int, title: str, line: str | None = None) -> None:
        self._flush()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))
        self._heading = line if line is not None else title

    def add(self, text: str) -> None:
        self._lines.append(text)

    def pop_line(self) -> str | None:
        return self._lines.pop() if self._lines else None

    def last_line(self) -> str:
        return self._lines[-1] if self._lines else ""

    def sections(self) -> list[Section]:
        self._flush()
        if not self._sections and self._bare_headings:
            return [Section("\n".join(self._bare_headings), "")]
        return self._sections

    def _flush(self) -> None:
        body = _tidy("\n".join(self._lines))
        self._lines = []
        location = " > ".join(title for _, title in self._path)
        if body:
            text = f"{self._heading}\n\n{body}" if self._heading else body
            self._sections.append(Section(text, location))
        elif self._heading:
            self._bare_headings.append(self._heading)


def _tidy(text: str) -> str:
    """Trailing spaces gone, runs of blank lines cut to one, no blank lines at either end."""
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


_ATX_OPENING = re.compile(r" {0,3}(#{1,6})(?:[ \t]|$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_NOT_A_SETEXT_TITLE = re.compile(r"^\s*(?:[-*+>|]|\d+[.)])")  # list items, quotes and table rows stay text


def _extract_markdown(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    lines = _text_of(name, data, limits).split("\n")
    outline = _Outline()
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter is text, not headings
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                for line in lines[: index + 1]:
                    outline.add(line)
                start = index + 1
                break
    fence = ""
    previous_blank = True
    for line in lines[start:]:
        opening = _FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
            outline.add(line)
        elif opening:
            fence = opening.group(1)
            outline.add(line)
        elif (atx := _ATX_OPENING.match(line)) and (title := _atx_title(line[atx.end() :])):
            outline.heading(len(atx.group(1)), title, line.strip())
            line = ""
        elif (
            _SETEXT_UNDERLINE.match(line)
            and not previous_blank
            and outline.last_line().strip()
            and not _NOT_A_SETEXT_TITLE.match(outline.last_line())
        ):
            title = (outline.pop_line() or "").strip()
            outline.heading(1 if line.strip().startswith("=") else 2, title)
            line = ""
        else:
            outline.add(line)
        previous_blank = not line.strip()
    return Extracted("markdown", outline.sections(), None)


def _atx_title(rest: str) -> str:
    """The title of an ATX heading from what follows its opening #s, without the optional closing #s."""
    rest = rest.strip()
    unclosed = rest.rstrip("#")
    if unclosed != rest and (not unclosed or unclosed[-1] in " \t"):
        return unclosed.strip()
    return rest  # "# C#" keeps its #


_ROWS_PER_SECTION = 200
_CSV_SAMPLE_CHARS = 4096  # the sniffer is quadratic on some lines; keep its sample small


def _extract_csv(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    """Rows as "column: value | column: value", so every chunk keeps the header's meaning; rows numbered from 1
    after the header."""
    text = _text_of(name, data, limits)
    delimiter = "\t" if _extension(_basename(name).lower()) == "tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    budget = _Budget(name, limits)  # the header repeats on every row, so the text can outgrow the file
    header: list[str] | None = None
    rows: list[tuple[int, str]] = []
    number = 0
    try:
        for row in reader:
            if header is None:
                if any(cell.strip() for cell in row):
                    header = [cell.strip() for cell in row]
                continue
            number += 1
            pairs = [f"{_column_name(header, i)}: {value.strip()}" for i, value in enumerate(row) if value.strip()]
            if pairs:
                line = " | ".join(pairs)
                budget.spend(line)
                rows.append((number, line))
    except csv.Error as exc:
        raise ExtractionError(
            f"{name} could not be read as CSV (line {reader.line_num}: {exc}). "
            "Check its quoting, or rename it to .txt to index it as plain text."
        ) from exc
    sections = [
        Section("\n".join(line for _, line in chunk), f"rows {chunk[0][0]}-{chunk[-1][0]}")
        for chunk in (rows[i : i + _ROWS_PER_SECTION] for i in range(0, len(rows), _ROWS_PER_SECTION))
    ]
    return Extracted("csv", sections, None)


def _column_name(header: list[str], index: int) -> str:
    return header[index] if index < len(header) and header[index] else f"column {index + 1}"


def _sniff_delimiter(text: str) -> str:
    sample = text[:_CSV_SAMPLE_CHARS]
    if len(text) > _CSV_SAMPLE_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


_JSON_SECTION_CHARS = 50_000


def _extract_json(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    text = _text_of(name, data, limits)
    try:
        return _json_sections(json.loads(text), name, limits)
    except json.JSONDecodeError as exc:
        raise ExtractionError(
            f"{name} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}. "
            "Fix it and upload it again, or rename it to .txt to index it as plain text."
        ) from exc
    except RecursionError as exc:
        raise ExtractionError(
            f"{name} is nested too deeply to read as JSON. Rename it to .txt to index it as plain text."
        ) from exc


def _json_sections(value: Any, name: str, limits: ExtractLimits) -> Extracted:
    """The value pretty-printed; a large top-level list or object is cut into sections of whole entries."""
    pretty = _pretty(value, _Budget(name, limits))
    if len(pretty) <= _JSON_SECTION_CHARS or not isinstance(value, list | dict) or len(value) < 2:
        return Extracted("json", [Section(pretty, "")], None)
    entries: list[tuple[str, str]]
    budget = _Budget(name, limits)  # the entries again: the same text, cut differently
    if isinstance(value, list):
        entries = [(str(i), _pretty(item, budget)) for i, item in enumerate(value, 1)]
    else:
        entries = [
            (str(key), f"{json.dumps(key, ensure_ascii=False)}: {_pretty(item, budget)}") for key, item in value.items()
        ]
    sections = []
    for group in _group_by_size(entries, _JSON_SECTION_CHARS):
        labels = [label for label, _ in group]
        if isinstance(value, list):
            location = f"item {labels[0]}" if len(group) == 1 else f"items {labels[0]}-{labels[-1]}"
        else:
            location = labels[0] if len(group) == 1 else f"{labels[0]} … {labels[-1]}"
        sections.append(Section("\n".join(text for _, text in group), location))
    return Extracted("json", sections, None)


def _pretty(value: Any, budget: _Budget) -> str:
    """JSON with an indent of 2, built piece by piece against the budget: indentation grows with depth, so a
    deeply nested file can pretty-print to many times its size."""
    parts = []
    for part in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(value):
        budget.spend(part)
        parts.append(part)
    return "".join(parts)


def _group_by_size(entries: Sequence[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    group: list[tuple[str, str]] = []
    used = 0
    for entry in entries:
        if group and used + len(entry[1]) > size:
            yield group
            group, used = [], 0
        group.append(entry)
        used += len(entry[1])
    if group:
        yield group


_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_DROPPED_TAGS = frozenset({"script", "style", "nav", "noscript", "template"})
# fmt: off
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "ol", "p", "pre", "section", "summary",
    "table", "tbody", "tfoot", "thead", "title", "tr", "ul",
})
# fmt: on
_CELL_TAGS = frozenset({"td", "th"})
# Page furniture around the content: navigation, sidebars, footers, permalink signs.
_FURNITURE_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "complementary"})
_FURNITURE_CLASS = re.compile(r"(^|[-_ ])(sidebar|sphinxsidebar|related|footer|breadcrumbs?|headerlink|toc)($|[-_ ])")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_END_OF_BLOCK = object()


def _is_furniture(node: Any) -> bool:
    if str(node.get("role") or "").lower() in _FURNITURE_ROLES:
        return True
    classes = node.get("class") or []
    return any(_FURNITURE_CLASS.search(str(c).lower()) for c in classes)


def _extract_html(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    from bs4 import BeautifulSoup
    from bs4.element import CData, NavigableString, Tag

    declared = _META_CHARSET.search(data[:4096])
    text = _text_of(name, data, limits, declared.group(1).decode("ascii") if declared else None)
    soup = BeautifulSoup(text, "html.parser")
    outline = _Outline()
    line: list[str] = []
    line_has_text = False

    def end_line() -> None:
        nonlocal line_has_text
        joined = re.sub(r"[ \t\f\v\xa0]+", " ", "".join(line)).strip()
        line.clear()
        line_has_text = False
        if joined:
            outline.add(joined)

    stack: list[Iterator[Any]] = [iter(soup.children)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif node is _END_OF_BLOCK:
            end_line()
        elif isinstance(node, Tag):
            if node.name in _DROPPED_TAGS or _is_furniture(node):
                continue
            if node.name in _HEADINGS:
                for permalink in node.find_all("a", class_="headerlink"):
                    permalink.decompose()
                title = re.sub(r"\s+", " ", node.get_text(" ")).strip().rstrip("¶").strip()
                if title:
                    end_line()
                    outline.heading(_HEADINGS[node.name], title)
                continue
            if node.name in _BLOCK_TAGS:
                end_line()
                stack.append(chain(node.children, (_END_OF_BLOCK,)))
            else:
                if node.name in _CELL_TAGS and line_has_text:
                    line.append(" | ")
                stack.append(iter(node.children))
        elif type(node) in (NavigableString, CData):  # not comments, doctypes or processing instructions
            piece = re.sub(r"\s+", " ", str(node))
            line.append(piece)
            line_has_text = line_has_text or bool(piece.strip())
    end_line()
    return Extracted("html", outline.sections(), None)


# --- PDF ---------------------------------------------------------------------------------------------------


def _extract_pdf(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            unlocked = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except DependencyError as exc:
            _log.info("Cannot decrypt %s: %s", name, exc)
            unlocked = False
        if not unlocked:
            raise ExtractionError(
                f"{name} is password-protected, so it can't be searched. Upload a copy without a password."
            )
    count = len(reader.pages)
    _check_pages(name, count, "pages", limits)
    budget = _Budget(name, limits)
    sections: list[Section] = []
    failed = 0
    for number, page in enumerate(reader.pages, 1):
        try:
            text = (page.extract_text() or "").replace("\x00", "").strip()
        except MemoryError:
            raise
        except Exception:
            _log.info("Could not read the text of page %d of %s", number, name, exc_info=True)
            failed += 1
            continue
        if text:
            budget.spend(text)
            sections.append(Section(text, f"page {number}"))
    if failed and not sections:
        raise ExtractionError(_unreadable_message(name, "pdf"))
    if failed:
        _log.info("Skipped %d unreadable pages of %s", failed, name)
    return Extracted("pdf", sections, count)


# --- Office (zip) containers -------------------------------------------------------------------------------


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Compound File: old Office formats and encrypted new ones


def _check_container(name: str, data: bytes, kind: str, limits: ExtractLimits) -> None:
    """Refuse a DOCX/PPTX/XLSX that is not a zip, or that would unpack to far more than it weighs.

    Reads only the zip's directory: no member is inflated.
    """
    if data.startswith(_OLE_MAGIC):
        raise ExtractionError(
            f"{name} is password-protected or saved in an old Office format, so it can't be searched. "
            f"Open it, remove any password, save it as .{kind}, and upload that."
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        _log.info("%s is not a zip container: %s", name, exc)
        raise ExtractionError(
            f"{name} could not be opened as {_DESCRIPTIONS[kind]}: it isn't really a .{kind} file, or it is damaged. "
            f"{_FIXES[kind]}"
        ) from exc
    if len(members) > limits.max_members:
        raise ExtractionError(
            f"{name} looks like a zip bomb: it packs {len(members):,} files, more than the {limits.max_members:,} "
            "a document may hold, so it was refused. If it's a genuine document, save it again and upload that."
        )
    unpacked = sum(member.file_size for member in members)
    ratio = unpacked / len(data)
    if ratio > limits.max_ratio or unpacked > limits.max_unpacked_bytes:
        _log.info("Refused %s: %d bytes unpack to %d (ratio %.0f)", name, len(data), unpacked, ratio)
    if ratio > limits.max_ratio:
        raise ExtractionError(
            f"{name} looks like a zip bomb: its {_size(len(data))} would unpack to {_size(unpacked)} "
            f"({ratio:,.0f} times its size), so it was refused. "
            "If it's a genuine document, save it again and upload that."
        )
    if unpacked > limits.max_unpacked_bytes:
        raise ExtractionError(
            f"{name} looks like a zip bomb: it would unpack to {_size(unpacked)}, more than the "
            f"{_size(limits.max_unpacked_bytes)} a document may, so it was refused. "
            "If it's a genuine document, split it or remove large embedded media, and upload that."
        )


def _size(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count} bytes"


_HEADING_STYLE = re.compile(r"^Heading\s*(\d)?", re.IGNORECASE)


def _extract_docx(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    _check_container(name, data, "docx", limits)
    import docx
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(data))
    budget = _Budget(name, limits)
    outline = _Outline()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            budget.spend(text)
            style = block.style.name if block.style is not None else None
            heading = _HEADING_STYLE.match(style or "")
            if heading:
                outline.heading(int(heading.group(1) or 1), re.sub(r"\s+", " ", text))
            else:
                outline.add(text)
        else:
            for row in block.rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell appears once per grid column it spans
                        continue
                    seen.add(id(cell._tc))
                    cells.append(re.sub(r"\s+", " ", cell.text).strip())
                line = " | ".join(cells).strip(" |")
                if line:
                    budget.spend(line)
                    outline.add(line)
    return Extracted("docx", outline.sections(), None)


def _extract_pptx(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    _check_container(name, data, "pptx", limits)
    from pptx import Presentation

    presentation = Presentation(io.BytesIO(data))
    slides = list(presentation.slides)
    _check_pages(name, len(slides), "slides", limits)
    budget = _Budget(name, limits)
    sections: list[Section] = []
    for number, slide in enumerate(slides, 1):
        parts: list[str] = []
        title = slide.shapes.title
        title_id = title.shape_id if title is not None else None
        if title is not None and title.has_text_frame and title.text_frame.text.strip():
            parts.append(title.text_frame.text.strip())
        for shape in _shapes(slide.shapes):
            if shape.shape_id == title_id:
                continue
            if shape.has_text_frame and shape.text_frame.text.strip():
                parts.append(shape.text_frame.text.strip())
            if shape.has_table:
                for row in shape.table.rows:
                    line = " | ".join(cell.text.strip() for cell in row.cells).strip(" |")
                    if line:
                        parts.append(line)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append(f"Notes: {notes.text.strip()}")
        text = "\n".join(parts).replace("\v", "\n")
        if text:
            budget.spend(text)
            sections.append(Section(text, f"slide {number}"))
    return Extracted("pptx", sections, len(slides))


def _shapes(shapes: Any) -> Iterator[Any]:
    """Every shape on a slide, with the shapes inside groups in place of the groups."""
    from pptx.shapes.group import GroupShape

    stack: list[Iterator[Any]] = [iter(shapes)]
    while stack:
        shape = next(stack[-1], None)
        if shape is None:
            stack.pop()
        elif isinstance(shape, GroupShape):
            stack.append(iter(shape.shapes))
        else:
            yield shape


def _extract_xlsx(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    _check_container(name, data, "xlsx", limits)
    from openpyxl import load_workbook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no default style" and similar notes about the file, not problems
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheets = workbook.worksheets
        _check_pages(name, len(sheets), "sheets", limits)
        budget = _Budget(name, limits)
        cells = 0
        sections: list[Section] = []
        for sheet in sheets:
            # Read-only mode trusts the sheet's declared dimensions, which some writers get wrong (cutting rows
            # short) and which a hostile file can set to a million columns; without them each row is as wide as
            # its own last cell, and the cells scanned are counted below.
            sheet.reset_dimensions()
            chunks: list[list[tuple[int, str]]] = [[]]
            for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
                cells += len(values)
                if cells > limits.max_chars:
                    raise ExtractionError(
                        f"{name} has more than {limits.max_chars:,} cells, more than one file may have here. "
                        "Split it into smaller workbooks and upload those."
                    )
                texts = [_cell_text(value) for value in values]
                while texts and not texts[-1]:
                    texts.pop()
                if not texts:
                    continue
                line = " | ".join(texts)
                budget.spend(line)
                if len(chunks[-1]) == _ROWS_PER_SECTION:
                    chunks.append([])
                chunks[-1].append((number, line))
            for chunk in chunks:
                if not chunk:
                    continue
                location = f"sheet {sheet.title}"
                if len(chunks) > 1:
                    location += f" rows {chunk[0][0]}-{chunk[-1][0]}"
                sections.append(Section("\n".join(line for _, line in chunk), location))
        return Extracted("xlsx", sections, len(sheets))
    finally:
        workbook.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return re.sub(r"\s+", " ", str(value)).strip()


_EXTRACTORS: dict[str, Callable[[str, bytes, ExtractLimits], Extracted]] = {
    "text": _extract_text,
    "markdown": _extract_markdown,
    "csv": _extract_csv,
    "json": _extract_json,
    "html": _extract_html,
    "code": _extract_code,
    "pdf": _extract_pdf,
    "docx": _extract_docx,
    "pptx": _extract_pptx,
    "xlsx": _extract_xlsx,
}
