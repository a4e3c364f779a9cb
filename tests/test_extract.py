"""Extraction: each format's text and locations, kind detection, and every way an upload can be refused."""

from __future__ import annotations

import codecs
import io
import json
import zipfile
from collections.abc import Callable
from typing import IO, Any

import pytest

from core.knowledge.extract import SUPPORTED, ExtractionError, ExtractLimits, Section, detect_kind, extract
from tests.fakes.files import (
    BOMB_MEMBERS,
    PNG_BYTES,
    docx_bytes,
    encrypted_pdf_bytes,
    pdf_bytes,
    pdf_without_text,
    pptx_bytes,
    xlsx_bytes,
    xlsx_with_wide_empty_rows,
    zip_bomb,
    zip_bytes,
)


def refusal(name: str, data: bytes, mime: str | None = None, limits: ExtractLimits | None = None) -> str:
    """The message extract() gives for a file it refuses (and that it refuses with ExtractionError, nothing else)."""
    with pytest.raises(ExtractionError) as caught:
        extract(name, data, mime, limits or ExtractLimits())
    message = str(caught.value)
    assert name in message
    return message


def locations(sections: list[Section]) -> list[str]:
    return [section.location for section in sections]


# --- PDF ---------------------------------------------------------------------------------------------------


def test_pdf_gives_one_section_per_page_numbered_from_one_and_skips_empty_pages() -> None:
    extracted = extract("report.pdf", pdf_bytes(["Quarterly revenue grew.", "", "Costs fell in March."]))

    assert extracted.kind == "pdf"
    assert extracted.pages == 3
    assert locations(extracted.sections) == ["page 1", "page 3"]
    assert extracted.sections[0].text == "Quarterly revenue grew."
    assert extracted.sections[1].text == "Costs fell in March."


def test_pdf_with_a_password_is_refused() -> None:
    message = refusal("report.pdf", encrypted_pdf_bytes(["Secret plans"], user_password="hunter2"))

    assert message == "report.pdf is password-protected, so it can't be searched. Upload a copy without a password."


def test_pdf_encrypted_with_an_empty_user_password_is_read() -> None:
    extracted = extract("open.pdf", encrypted_pdf_bytes(["Opens without a prompt"], user_password=""))

    assert extracted.sections == [Section("Opens without a prompt", "page 1")]


def test_truncated_pdf_is_reported_as_damaged() -> None:
    data = pdf_bytes(["Some text"])

    message = refusal("broken.pdf", data[: len(data) // 2])

    assert "broken.pdf could not be read as a PDF; it may be damaged." in message


def test_pdf_without_a_text_layer_is_refused_as_a_possible_scan() -> None:
    message = refusal("scan.pdf", pdf_without_text())

    assert "scan.pdf has no text layer (it may be a scan); OCR is not supported." in message


def test_pdf_over_the_page_limit_is_refused() -> None:
    message = refusal("long.pdf", pdf_bytes(["one", "two", "three"]), limits=ExtractLimits(max_pages=2))

    assert "has 3 pages, more than the 2" in message
    assert "Split it" in message


# --- DOCX --------------------------------------------------------------------------------------------------


def test_docx_sections_follow_the_heading_path_and_include_tables() -> None:
    data = docx_bytes(
        [
            "Read this first.",
            (1, "Intro"),
            "Why the tool exists.",
            (2, "Setup"),
            "Install it with pip.",
            [["Name", "Port", "Owner"], ["api", "8080", "Ada"]],
            (1, "Usage"),
            "Run it daily.",
        ]
    )

    extracted = extract("guide.docx", data)

    assert extracted.kind == "docx"
    assert extracted.pages is None
    assert extracted.sections == [
        Section("Read this first.", ""),
        Section("Intro\n\nWhy the tool exists.", "Intro"),
        Section("Setup\n\nInstall it with pip.\nName | Port | Owner\napi | 8080 | Ada", "Intro > Setup"),
        Section("Usage\n\nRun it daily.", "Usage"),
    ]


@pytest.mark.parametrize("name", ["locked.docx", "locked.pptx", "locked.xlsx"])
def test_office_file_in_a_compound_file_is_refused_as_protected_or_old(name: str) -> None:
    # Office saves password-protected DOCX/PPTX/XLSX (and old .doc/.ppt/.xls) as a Compound File, not a zip.
    message = refusal(name, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024))

    assert message.startswith(f"{name} is password-protected or saved in an old Office format")


def test_docx_whose_bytes_are_not_a_zip_is_refused_as_damaged() -> None:
    message = refusal("notes.docx", b"This was saved as plain text and renamed.")

    assert "notes.docx could not be opened as a Word document" in message
    assert "save a fresh copy as .docx" in message


@pytest.mark.parametrize(
    ("name", "members", "expected"),
    [
        ("guide.docx", {"word/document.xml": b"<not xml"}, "could not be read as a Word document; it may be damaged"),
        ("deck.pptx", {"ppt/presentation.xml": b"<not xml"}, "could not be read as a PowerPoint presentation"),
        ("book.xlsx", {"xl/workbook.xml": b"<not xml"}, "could not be read as an Excel workbook"),
    ],
)
def test_office_zip_the_library_cannot_parse_becomes_an_extraction_error(
    name: str, members: dict[str, bytes], expected: str
) -> None:
    message = refusal(name, zip_bytes({"[Content_Types].xml": b"<Types/>", **members}))

    assert expected in message


# --- PPTX and XLSX -----------------------------------------------------------------------------------------


def test_pptx_gives_one_section_per_slide_with_title_body_and_notes() -> None:
    data = pptx_bytes(
        [
            ("Roadmap", ["Ship search", "Then citations"], "Mention the beta date."),
            ("", [], None),
            ("Team", ["Ada, Bob"], None),
        ]
    )

    extracted = extract("deck.pptx", data)

    assert extracted.kind == "pptx"
    assert extracted.pages == 3
    assert extracted.sections == [
        Section("Roadmap\nShip search\nThen citations\nNotes: Mention the beta date.", "slide 1"),
        Section("Team\nAda, Bob", "slide 3"),
    ]


def test_xlsx_gives_a_section_per_sheet_named_after_it_skipping_empty_rows() -> None:
    data = xlsx_bytes(
        {
            "Revenue": [["Quarter", "Amount", "Note"], ["Q1", 1200, None], [None, None, None], ["Q2", 1350.5, "late"]],
            "Costs": [["Rent", 900]],
        }
    )

    extracted = extract("finance.xlsx", data)

    assert extracted.kind == "xlsx"
    assert extracted.pages == 2
    assert extracted.sections == [
        Section("Quarter | Amount | Note\nQ1 | 1200\nQ2 | 1350.5 | late", "sheet Revenue"),
        Section("Rent | 900", "sheet Costs"),
    ]


def test_sheet_that_understates_its_size_is_read_in_full() -> None:
    data = xlsx_bytes({"Team": [["Name", "Role"], ["Ada", "Engineer"], ["Bob", "Chef"]]}, declared_dimension="A1:A1")

    assert extract("team.xlsx", data).sections == [Section("Name | Role\nAda | Engineer\nBob | Chef", "sheet Team")]


def test_long_sheet_is_split_every_200_rows_with_row_numbers() -> None:
    data = xlsx_bytes({"Log": [[f"event {n}", n] for n in range(1, 451)]})

    extracted = extract("log.xlsx", data)

    assert locations(extracted.sections) == ["sheet Log rows 1-200", "sheet Log rows 201-400", "sheet Log rows 401-450"]
    assert extracted.sections[1].text.split("\n")[0] == "event 201 | 201"
    assert extracted.sections[2].text.split("\n")[-1] == "event 450 | 450"


def test_spreadsheet_without_values_is_refused() -> None:
    message = refusal("blank.xlsx", xlsx_bytes({"Sheet1": [], "Sheet2": [[None, None]]}))

    assert message == "blank.xlsx has no values in any sheet, so there is nothing to search."


def test_spreadsheet_padded_with_empty_cells_is_refused_by_its_cell_count() -> None:
    data = xlsx_with_wide_empty_rows(rows=20, width=1000)
    limits = ExtractLimits(max_chars=10_000)  # 20 rows of text fit easily; 20,000 scanned cells do not

    message = refusal("wide.xlsx", data, limits=limits)

    assert "wide.xlsx has more than 10,000 cells" in message
    assert [section.text.split("\n")[:2] for section in extract("wide.xlsx", data).sections] == [["1", "2"]]


# --- zip containers: bombs and limits ----------------------------------------------------------------------


@pytest.fixture
def opened_members(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of zip members opened for reading, by anyone (python-docx and openpyxl read through this)."""
    opened: list[str] = []
    original = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: Any, **kwargs: Any) -> IO[bytes]:
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def test_the_member_spy_sees_what_libraries_read(opened_members: list[str]) -> None:
    extract("guide.docx", docx_bytes(["Hello"]))

    assert "word/document.xml" in opened_members


@pytest.mark.parametrize(("name", "kind"), [("report.docx", "docx"), ("budget.xlsx", "xlsx")])
def test_zip_bomb_disguised_as_an_office_file_is_refused_without_unpacking_it(
    name: str, kind: str, opened_members: list[str]
) -> None:
    bomb = zip_bomb(kind, unpacked_mb=300)
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert archive.getinfo(BOMB_MEMBERS[kind]).file_size == 300 << 20
    opened_members.clear()

    message = refusal(name, bomb)

    assert message.startswith(f"{name} looks like a zip bomb: its ")
    assert "would unpack to 300.0 MB" in message
    assert opened_members == []


def test_zip_bomb_is_caught_by_its_ratio_even_under_the_size_limit(opened_members: list[str]) -> None:
    bomb = zip_bomb("docx", unpacked_mb=20)
    opened_members.clear()

    message = refusal("memo.docx", bomb, limits=ExtractLimits(max_unpacked_bytes=1 << 40))

    assert "looks like a zip bomb" in message
    assert "would unpack to 20.0 MB" in message
    assert opened_members == []


def test_zip_bomb_is_recognised_by_its_contents_whatever_its_name() -> None:
    bomb = zip_bomb("xlsx", unpacked_mb=20)

    assert detect_kind("upload.bin", bomb) == "xlsx"
    assert "looks like a zip bomb" in refusal("upload.bin", bomb)


def test_the_bomb_really_inflates_to_zeros() -> None:
    bomb = zip_bomb("docx", unpacked_mb=2)
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert archive.read(BOMB_MEMBERS["docx"]) == bytes(2 << 20)


def test_container_over_the_unpacked_size_limit_is_refused() -> None:
    data = docx_bytes(["An ordinary document"])

    message = refusal("plain.docx", data, limits=ExtractLimits(max_unpacked_bytes=1000))

    assert "plain.docx looks like a zip bomb: it would unpack to" in message
    assert "more than the 1000 bytes a document may" in message


def test_ordinary_office_files_are_well_under_the_default_ratio() -> None:
    for name, data in [
        ("a.docx", docx_bytes(["text " * 2000])),
        ("b.pptx", pptx_bytes([("Title", ["body"], None)])),
        ("c.xlsx", xlsx_bytes({"S": [["x", 1]] * 500})),
    ]:
        assert extract(name, data).sections


def test_container_with_too_many_members_is_refused(opened_members: list[str]) -> None:
    data = zip_bytes({f"word/part{n}.xml": b"<x/>" for n in range(30)})
    opened_members.clear()

    message = refusal("many.docx", data, limits=ExtractLimits(max_members=20))

    assert "looks like a zip bomb: it packs 30 files, more than the 20" in message
    assert opened_members == []


# --- text-like formats -------------------------------------------------------------------------------------


def test_csv_rows_carry_their_column_names_and_data_row_numbers() -> None:
    data = b"name,role,city\nAda,Engineer,London\nBob,,Paris\n"

    extracted = extract("people.csv", data)

    assert extracted.kind == "csv"
    assert extracted.sections == [
        Section("name: Ada | role: Engineer | city: London\nname: Bob | city: Paris", "rows 1-2"),
    ]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("people.csv", b"name;role\nAda;Engineer, lead\nBob;Chef\n"),
        ("people.tsv", b"name\trole\nAda\tEngineer, lead\nBob\tChef\n"),
        ("people.csv", b'name,role\nAda,"Engineer, lead"\nBob,Chef\n'),
    ],
)
def test_csv_delimiter_comes_from_the_extension_or_is_sniffed(name: str, data: bytes) -> None:
    extracted = extract(name, data)

    assert extracted.sections[0].text == "name: Ada | role: Engineer, lead\nname: Bob | role: Chef"


def test_csv_is_split_into_sections_of_200_rows() -> None:
    data = ("id,value\n" + "".join(f"{n},v{n}\n" for n in range(1, 451))).encode()

    extracted = extract("big.csv", data)

    assert locations(extracted.sections) == ["rows 1-200", "rows 201-400", "rows 401-450"]
    assert extracted.sections[2].text.split("\n")[0] == "id: 401 | value: v401"


def test_csv_the_csv_module_cannot_read_is_refused_with_the_line() -> None:
    data = b'name,notes\nAda,"' + b"x" * 200_000 + b'"\n'

    message = refusal("huge-cell.csv", data)

    assert "huge-cell.csv could not be read as CSV (line" in message
    assert "rename it to .txt" in message


def test_csv_with_only_a_header_is_refused() -> None:
    assert "has no rows of data under its header" in refusal("empty.csv", b"name,role\n")


def test_markdown_sections_follow_the_heading_path() -> None:
    data = b"""---
title: Guide
---
Welcome.

# Install #

## Linux
Use apt.

```sh
# this comment is not a heading
```

## macOS
Use brew.

Reference
=========
See the API.
"""

    extracted = extract("guide.md", data)

    assert extracted.kind == "markdown"
    assert locations(extracted.sections) == ["", "Install > Linux", "Install > macOS", "Reference"]
    assert extracted.sections[0].text == "---\ntitle: Guide\n---\nWelcome."
    assert extracted.sections[1].text == "## Linux\n\nUse apt.\n\n```sh\n# this comment is not a heading\n```"
    assert extracted.sections[3].text == "Reference\n\nSee the API."


@pytest.mark.parametrize(
    ("line", "location"),
    [("# C#", "C#"), ("## Setup ##", "Setup"), ("  ### Indented ###  ", "Indented"), ("#hashtag", ""), ("# ###", "")],
)
def test_markdown_atx_headings(line: str, location: str) -> None:
    assert extract("a.md", f"{line}\nbody".encode()).sections[0].location == location


def test_html_sections_follow_headings_without_script_style_or_navigation() -> None:
    data = b"""<!doctype html><html><head><title>Handbook</title>
<script>var tracking = "do not index";</script><style>p { color: red }</style></head>
<body><nav><a href="/">Home menu</a></nav>
<p>Intro with <b>bold</b> words.</p>
<h1>Policies</h1><p>Be kind.</p><!-- a comment -->
<h2>Leave</h2><table><tr><th>Type</th><th>Days</th></tr><tr><td>Annual</td><td>25</td></tr></table>
<h1>Contacts</h1><ul><li>Ada</li><li>Bob</li></ul>
</body></html>"""

    extracted = extract("handbook.html", data)

    assert extracted.kind == "html"
    assert extracted.sections == [
        Section("Handbook\nIntro with bold words.", ""),
        Section("Policies\n\nBe kind.", "Policies"),
        Section("Leave\n\nType | Days\nAnnual | 25", "Policies > Leave"),
        Section("Contacts\n\nAda\nBob", "Contacts"),
    ]
    everything = " ".join(section.text for section in extracted.sections)
    for hidden in ("tracking", "color", "Home menu", "comment"):
        assert hidden not in everything


def test_html_declared_charset_is_used() -> None:
    data = b'<html><head><meta charset="windows-1251"></head><body><p>' + "Привет".encode("cp1251") + b"</p></body>"

    assert extract("ru.html", data).sections[0].text == "Привет"


def test_json_is_pretty_printed_in_one_section() -> None:
    extracted = extract("config.json", b'{"name":"bot","ports":[80,443],"debug":false}')

    assert extracted.kind == "json"
    assert extracted.sections == [
        Section('{\n  "name": "bot",\n  "ports": [\n    80,\n    443\n  ],\n  "debug": false\n}', "")
    ]


def test_large_json_list_is_split_into_numbered_items() -> None:
    records = [{"id": n, "text": "x" * 1000} for n in range(1, 121)]

    extracted = extract("records.json", json.dumps(records).encode())

    assert len(extracted.sections) > 1
    assert extracted.sections[0].location.startswith("items 1-")
    assert extracted.sections[-1].location.endswith("-120")
    assert extracted.sections[0].text.startswith(json.dumps(records[0], indent=2) + "\n{")


def test_json_that_pretty_prints_past_the_character_limit_is_refused() -> None:
    nested = "[" * 60 + "1" + "]" * 60  # 121 characters; indented two spaces a level, about 7,000
    data = f"[{','.join([nested] * 10)}]".encode()

    message = refusal("nested.json", data, limits=ExtractLimits(max_chars=20_000))

    assert "nested.json holds more than 20,000 characters of text" in message


def test_csv_whose_rows_outgrow_the_character_limit_is_refused() -> None:
    data = ("long column name " * 20 + "\n" + "x\n" * 100).encode()

    message = refusal("wide.csv", data, limits=ExtractLimits(max_chars=5_000))

    assert "wide.csv holds more than 5,000 characters of text" in message


def test_invalid_json_is_refused_with_the_line() -> None:
    message = refusal("config.json", b'{\n  "name": "bot",\n  "ports": [80,, 443]\n}')

    assert message.startswith("config.json is not valid JSON: line 3, column")


def test_json_nested_too_deeply_is_refused() -> None:
    assert "nested too deeply" in refusal("deep.json", b"[" * 100_000 + b"]" * 100_000)


def test_source_code_is_one_section_without_a_location() -> None:
    source = b"def greet(name):\n    return f'hello {name}'\n"

    extracted = extract("greet.py", source)

    assert extracted.kind == "code"
    assert extracted.pages is None
    assert extracted.sections == [Section("def greet(name):\n    return f'hello {name}'", "")]


@pytest.mark.parametrize(
    "data",
    [
        "Crème brûlée, naïve café\r\n".encode("utf-16"),
        codecs.BOM_UTF16_BE + "Crème brûlée, naïve café\r\n".encode("utf-16-be"),
        "Crème brûlée, naïve café\r\n".encode("utf-8-sig"),
        "Crème brûlée, naïve café\r\n".encode("cp1252"),
    ],
    ids=["utf-16-le-bom", "utf-16-be-bom", "utf-8-bom", "cp1252"],
)
def test_text_encodings_are_decoded(data: bytes) -> None:
    extracted = extract("menu.txt", data)

    assert extracted.kind == "text"
    assert extracted.sections == [Section("Crème brûlée, naïve café", "")]


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 8, b"\x01\x02\x03\x04\x05\x06readable\x07\x08\x0e\x0f" * 50],
    ids=["nul-bytes", "control-characters"],
)
def test_binary_junk_with_a_text_extension_is_refused(data: bytes) -> None:
    message = refusal("notes.txt", data)

    assert message.startswith("notes.txt doesn't look like text (it contains binary data)")
    assert SUPPORTED in message


def test_text_with_a_few_control_characters_is_still_text() -> None:
    data = b"\x1b[32mOK\x1b[0m build finished in 3 minutes with no warnings at all\n"

    assert "build finished" in extract("build.log", data).sections[0].text


def test_empty_file_is_refused() -> None:
    message = refusal("empty.txt", b"")

    assert message == "empty.txt is empty (0 bytes), so there is nothing to search. Check it's the right file."


def test_whitespace_only_file_is_refused() -> None:
    assert "blank.md contains no text" in refusal("blank.md", b"  \n\n\t\n")


def test_text_over_the_character_limit_is_refused() -> None:
    message = refusal("novel.txt", b"word " * 100, limits=ExtractLimits(max_chars=100))

    assert "novel.txt holds more than 100 characters of text" in message


# --- kind detection and unsupported files ------------------------------------------------------------------


def test_unsupported_file_is_refused_naming_the_supported_formats() -> None:
    assert detect_kind("photo.png", PNG_BYTES, "image/png") is None

    message = refusal("photo.png", PNG_BYTES, "image/png")

    assert message == f"photo.png is not a kind of file the knowledge base can read. It can search: {SUPPORTED}."


def test_old_office_format_gets_a_conversion_hint() -> None:
    message = refusal("minutes.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100))

    assert (
        message
        == "minutes.doc is a .doc file, which the knowledge base can't read. Save it as DOCX or PDF and upload that."
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("REPORT.PDF", "pdf"),
        ("notes.Md", "markdown"),
        ("table.TSV", "csv"),
        ("page.htm", "html"),
        ("data.json", "json"),
        ("main.rs", "code"),
        ("deploy.yml", "code"),
        ("Dockerfile", "code"),
        ("Makefile", "code"),
        ("src/app/.gitignore", "code"),
        ("budget.xlsm", "xlsx"),
        ("slides.pptx", "pptx"),
        ("letter.docx", "docx"),
        ("readme.txt", "text"),
    ],
)
def test_kind_comes_from_the_extension_first(name: str, kind: str) -> None:
    assert detect_kind(name, b"whatever", mime="application/octet-stream") == kind


@pytest.mark.parametrize(
    ("mime", "kind"),
    [
        ("application/pdf", "pdf"),
        ("text/markdown; charset=utf-8", "markdown"),
        ("text/csv", "csv"),
        ("application/vnd.api+json", "json"),
        ("TEXT/HTML", "html"),
        ("text/x-python", "code"),
        ("text/plain", "text"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    ],
)
def test_kind_comes_from_the_mime_type_when_the_name_says_nothing(mime: str, kind: str) -> None:
    assert detect_kind("upload.bin", b"\x00\x01", mime) == kind


def test_extension_wins_over_the_mime_type() -> None:
    assert detect_kind("notes.md", b"# Notes", "text/plain") == "markdown"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (pdf_bytes(["x"]), "pdf"),
        (docx_bytes(["x"]), "docx"),
        (pptx_bytes([("x", [], None)]), "pptx"),
        (xlsx_bytes({"S": [["x"]]}), "xlsx"),
        (zip_bytes({"photos/cat.jpg": b"\xff\xd8"}), None),
        (PNG_BYTES, None),
    ],
    ids=["pdf", "docx", "pptx", "xlsx", "other-zip", "png"],
)
def test_kind_comes_from_the_first_bytes_when_name_and_mime_say_nothing(data: bytes, kind: str | None) -> None:
    assert detect_kind("attachment.bin", data) == kind


def test_file_without_an_extension_is_text_if_it_reads_as_text() -> None:
    assert detect_kind("LICENSE", b"MIT License\n\nPermission is hereby granted") == "text"
    assert detect_kind("blob", PNG_BYTES) is None
    assert extract("LICENSE", b"MIT License").sections == [Section("MIT License", "")]


def test_file_misnamed_as_pdf_is_refused_as_damaged() -> None:
    assert "could not be read as a PDF" in refusal("letter.pdf", b"Dear Ada, this is not a PDF at all.")


def test_every_format_is_reachable_through_extract() -> None:
    builders: dict[str, Callable[[], bytes]] = {
        "a.pdf": lambda: pdf_bytes(["x"]),
        "a.docx": lambda: docx_bytes(["x"]),
        "a.pptx": lambda: pptx_bytes([("x", [], None)]),
        "a.xlsx": lambda: xlsx_bytes({"S": [["x"]]}),
        "a.txt": lambda: b"x",
        "a.md": lambda: b"x",
        "a.csv": lambda: b"h\nx",
        "a.json": lambda: b'"x"',
        "a.html": lambda: b"<p>x</p>",
        "a.go": lambda: b"x",
    }

    kinds = {extract(name, build()).kind for name, build in builders.items()}

    assert kinds == {"pdf", "docx", "pptx", "xlsx", "text", "markdown", "csv", "json", "html", "code"}


def test_html_page_furniture_and_permalink_signs_are_left_out() -> None:
    page = b"""<html><body>
    <div class="related" role="navigation"><a href="index.html">index</a> | modules</div>
    <div class="body"><h1>json \xe2\x80\x94 JSON encoder<a class="headerlink" href="#json">\xc2\xb6</a></h1>
    <p>Encode Python objects.</p>
    <h2>Basic Usage<a class="headerlink" href="#basic">\xc2\xb6</a></h2><p>Use dumps.</p></div>
    <div class="sphinxsidebar"><h3>Table of Contents</h3><p>Previous topic</p></div>
    <div class="footer">Copyright 2001</div>
    </body></html>"""
    extracted = extract("json.html", page)
    assert [s.location for s in extracted.sections] == [
        "json \u2014 JSON encoder",
        "json \u2014 JSON encoder > Basic Usage",
    ]
    text = " ".join(s.text for s in extracted.sections)
    assert "Use dumps." in text
    for furniture in ("modules", "Previous topic", "Copyright", "\u00b6"):
        assert furniture not in text
