"""Files in any language: their encoding is found, their text read as written, and their words found.

Uploaded over the Assistants-compatible API with the real openai SDK (files, vector stores, search,
parsed content), as a client of the old API would; the old schema's chunks are found after the
migration that re-indexes them.
"""

from __future__ import annotations

import codecs
import io

import openai
import pytest

from core.knowledge.extract import ExtractionError, extract
from core.store.files import FileStore
from core.store.fulltext import index_text, is_english, query_words
from tests.helpers import StoreDatabase

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks the retired API deprecated

SALES_CSV = "日付,支店,商品,売上\n2024-01-05,東京,りんご,12000\n2024-01-06,大阪,みかん,8000\n"
RUSSIAN = "Отчёт о продажах\n\nВыручка компании за квартал выросла на двенадцать процентов.\nСклад в Казани открыт."
PDF_LINES = ["東京支店の売上報告", "第3四半期の売上は前年比12%増でした。"]


def japanese_pdf(lines: list[str]) -> bytes:
    """A one-page PDF of ``lines`` in the standard Japanese CID font HeiseiMin-W3 with the UniJIS-UCS2-H
    encoding: no font file is embedded, so no font need be installed to make it."""
    text = "\n".join(f"<{line.encode('utf-16-be').hex().upper()}> Tj T*" for line in lines)
    stream = f"BT\n/F1 14 Tf\n16 TL\n50 780 Td\n{text}\nET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >>"
        b" /Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /HeiseiMin-W3 /Encoding /UniJIS-UCS2-H /DescendantFonts [5 0 R] >>",
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /HeiseiMin-W3"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (Japan1) /Supplement 2 >> /FontDescriptor 7 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /FontDescriptor /FontName /HeiseiMin-W3 /Flags 6 /FontBBox [-123 -257 1001 910]"
        b" /ItalicAngle 0 /Ascent 859 /Descent -141 /CapHeight 709 /StemV 69 >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


async def _attach(client: openai.AsyncOpenAI, store: str, name: str, data: bytes) -> str:
    upload = await client.files.create(file=(name, data), purpose="assistants")
    done = await client.vector_stores.files.create_and_poll(vector_store_id=store, file_id=upload.id)
    assert done.status == "completed", done.last_error
    return upload.id


async def _content(client: openai.AsyncOpenAI, store: str, file_id: str) -> str:
    page = await client.vector_stores.files.content(file_id, vector_store_id=store)
    return "".join(part.text or "" for part in page.data)


async def _found(client: openai.AsyncOpenAI, store: str, query: str) -> list[str]:
    page = await client.vector_stores.search(store, query=query)
    return [result.filename for result in page.data]


async def test_files_in_other_encodings_and_languages_are_read_and_found(client_a: openai.AsyncOpenAI) -> None:
    store = (await client_a.vector_stores.create(name="営業")).id
    csv_id = await _attach(client_a, store, "sales.csv", SALES_CSV.encode("shift_jis"))
    text_id = await _attach(client_a, store, "otchet.txt", RUSSIAN.encode("cp1251"))
    pdf_id = await _attach(client_a, store, "report.pdf", japanese_pdf(PDF_LINES))
    await _attach(client_a, store, "notes.md", b"# Notes\n\nThe Berlin office moves in May.\n")

    # The text read is the source's: the Shift-JIS CSV as the same CSV in UTF-8 would read.
    as_utf8 = "\n".join(s.text for s in extract("sales.csv", SALES_CSV.encode()).sections)
    assert "日付: 2024-01-05 | 支店: 東京 | 商品: りんご | 売上: 12000" in as_utf8
    assert await _content(client_a, store, csv_id) == as_utf8
    assert await _content(client_a, store, text_id) == RUSSIAN
    assert await _content(client_a, store, pdf_id) == "\n".join(PDF_LINES)

    # Found by words in their own language, two-character Japanese words included.
    assert set(await _found(client_a, store, "売上")) == {"sales.csv", "report.pdf"}
    assert set(await _found(client_a, store, "東京支店の売上はどうでしたか")) >= {"report.pdf"}
    assert (await _found(client_a, store, "東京支店の売上はどうでしたか"))[0] == "report.pdf"
    assert "sales.csv" in await _found(client_a, store, "東京")
    assert await _found(client_a, store, "みかん") == ["sales.csv"]
    assert await _found(client_a, store, "выручка") == ["otchet.txt"]
    assert await _found(client_a, store, "Казани") == ["otchet.txt"]
    assert await _found(client_a, store, "offices moving") == ["notes.md"]  # English is still stemmed


async def test_chunks_of_a_database_from_before_the_migration_are_found_by_cjk_words(
    database: StoreDatabase,
) -> None:
    old = await database.open(stop_before="m025_multilingual_search")
    passages = {
        "ja.txt": "東京支店の売上は過去最高でした。",
        "zh.txt": "上海分公司的销售额增长最快。",
        "ko.txt": "서울 지사의 매출이 증가했습니다.",
        "ru.txt": "Выручка компании выросла.",
        "en.txt": "Unused holiday days expire in March.",
    }

    def insert(db) -> None:  # the old way: chunks_fts (porter unicode61) filled by its triggers
        for n, (name, text) in enumerate(passages.items()):
            db.execute(
                "INSERT INTO files (id, channel, name, size, sha256, status, chunk_count) VALUES (?, ?, ?, ?, ?, ?, 1)",
                [f"f{n}", "slack:T1:C1", name, len(text), f"sha{n}", "completed"],
            )
            db.execute(
                "INSERT INTO chunks (file_id, channel, ordinal, location, text, tokens) VALUES (?, ?, 0, '', ?, 9)",
                [f"f{n}", "slack:T1:C1", text],
            )

    await old.call(insert)
    await old.close()
    store = await database.open()
    try:
        assert "m025_multilingual_search" in await store.applied_migrations()
        files = FileStore(store)

        async def found(query: str) -> list[str]:
            ids = [chunk_id for chunk_id, _ in await files.keyword_search("slack:T1:C1", query, 5)]
            return [hit.file_name for hit in (await files.hits(ids)).values()]

        assert await found("東京") == ["ja.txt"]
        assert await found("売上") == ["ja.txt"]
        assert await found("上海") == ["zh.txt"]
        assert await found("서울") == ["ko.txt"]
        assert await found("выручка") == ["ru.txt"]
        assert await found("holiday day") == ["en.txt"]  # Porter-stemmed, as before
        await files.remove("slack:T1:C1", name="ja.txt")  # the triggers keep the new indexes in step
        assert await found("東京") == []
    finally:
        await store.close()


# -- pure logic -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (SALES_CSV, "shift_jis"),
        ("東京の売上は前年比で増加しました。大阪支店も好調です。\n", "euc_jp"),
        ("上海的销售额比去年增长了百分之十。北京分公司表现良好。\n", "gb18030"),
        ("台北的銷售額比去年增長了百分之十。\n", "big5"),
        ("서울 지사의 매출이 작년보다 증가했습니다.\n", "euc_kr"),
        (RUSSIAN, "cp1251"),
        ("Café crème – naïve résumé “quoted” text € 5\n", "cp1252"),
        ("Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy.\n", "cp1250"),
    ],
)
def test_the_encoding_of_text_that_is_not_utf8_is_found(text: str, encoding: str) -> None:
    [section] = extract("notes.txt", text.encode(encoding)).sections
    assert section.text == text.strip()


def test_byte_order_marks_and_utf8_come_first() -> None:
    text = "東京 Выручка café"
    for data in (text.encode(), codecs.BOM_UTF8 + text.encode(), text.encode("utf-16")):
        assert extract("a.txt", data).sections[0].text == text


def test_binary_data_is_still_refused() -> None:
    data = bytes(range(1, 256)) * 40
    with pytest.raises(ExtractionError, match="binary data"):
        extract("blob.txt", data)


def test_cjk_runs_are_indexed_and_searched_as_bigrams() -> None:
    assert (index_text("東京の売上は増加") or "").split() == ["東京", "の", "売上", "は", "増加"]
    assert (index_text("上海的销售额") or "").split() == ["上海", "海的", "的销", "销售", "售额"]
    assert index_text("No CJK here") is None
    assert query_words("東京の売上はいくらですか") == ["東京", "売上"]  # particles left out
    assert query_words("서울의 매출") == ["서울", "울의", "매출"]
    assert query_words("ですか") == ["です", "すか"]  # nothing else left: keep them


def test_only_english_is_stemmed_as_english() -> None:
    assert is_english("Unused holiday days expire at the end of March each year.")
    assert is_english("def total(rows): return sum(rows)")  # no language: stemmed as before
    assert not is_english("Die regelmäßige Arbeitszeit beträgt 38 Stunden pro Woche.")
    assert not is_english("Выручка компании выросла.")
    assert not is_english("東京支店の売上")
