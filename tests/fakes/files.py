"""Uploaded files for the extraction tests, built in memory: real PDFs, Office documents, and hostile inputs.

Every builder returns the file's bytes, the way a chat platform hands an upload to Threadline:

    data = pdf_bytes(["First page", "", "Third page"])
    extract("report.pdf", data)

The zip bomb is genuine: its member really inflates to hundreds of megabytes of zeros. It is assembled from
one deflate block repeated, so building it costs a CRC pass instead of compressing the whole payload.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime

__all__ = [
    "BOMB_MEMBERS",
    "PNG_BYTES",
    "DocxBlock",
    "docx_bytes",
    "encrypted_pdf_bytes",
    "pdf_bytes",
    "pdf_without_text",
    "png_image",
    "pptx_bytes",
    "xlsx_bytes",
    "xlsx_with_wide_empty_rows",
    "zip_bomb",
    "zip_bytes",
]

# The first bytes of a PNG: signature and the start of an IHDR chunk.
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00" + bytes(64)

# The member of each disguised zip bomb that inflates to the payload.
BOMB_MEMBERS = {"docx": "word/document.xml", "xlsx": "xl/worksheets/sheet1.xml"}

_CONTENT_TYPES = b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'


def png_image(width: int = 2, height: int = 2, *, padding: int = 0) -> bytes:
    """A real PNG (red pixels), made ``padding`` bytes larger by a comment chunk (a large image, cheaply)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    comment = chunk(b"tEXt", b"Comment\x00" + b"x" * padding) if padding else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + comment
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def pdf_bytes(pages: Sequence[str]) -> bytes:
    """A PDF with one page per string; an empty string makes a page with no text at all."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def pdf_without_text() -> bytes:
    """A one-page PDF that only draws a rectangle: what a scan without a text layer looks like to a text extractor."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    return bytes(pdf.output())


def encrypted_pdf_bytes(pages: Sequence[str], *, user_password: str) -> bytes:
    """A PDF encrypted with RC4-128, which pypdf reads without the ``cryptography`` package.

    An empty ``user_password`` gives the common case of a PDF that opens without a prompt but is still encrypted.
    """
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(pages))))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


DocxBlock = tuple[int, str] | str | list[list[str]]
"""A heading ``(level, text)``, a paragraph ``"text"``, or a table as rows of cell texts."""


def docx_bytes(blocks: Sequence[DocxBlock]) -> bytes:
    """A Word document made of headings (built-in "Heading N" styles), paragraphs and tables, in order."""
    import docx

    document = docx.Document()
    for block in blocks:
        if isinstance(block, tuple):
            level, text = block
            document.add_heading(text, level=level)
        elif isinstance(block, str):
            document.add_paragraph(block)
        else:
            table = document.add_table(rows=len(block), cols=len(block[0]))
            for row, values in zip(table.rows, block, strict=True):
                for cell, value in zip(row.cells, values, strict=True):
                    cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_bytes(slides: Sequence[tuple[str, Sequence[str], str | None]]) -> bytes:
    """A presentation with one "Title and Content" slide per ``(title, body lines, speaker notes or None)``.

    A slide whose title and body are empty and which has no notes is left blank.
    """
    from pptx import Presentation

    presentation = Presentation()
    layout = presentation.slide_layouts[1]
    for title, lines, notes in slides:
        slide = presentation.slides.add_slide(layout)
        if title and slide.shapes.title is not None:
            slide.shapes.title.text = title
        if lines:
            body = slide.placeholders[1]
            body.text_frame.text = lines[0]
            for line in lines[1:]:
                body.text_frame.add_paragraph().text = line
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def xlsx_bytes(
    sheets: Mapping[str, Sequence[Sequence[str | int | float | date | datetime | None]]],
    *,
    declared_dimension: str | None = None,
) -> bytes:
    """A workbook with one sheet per entry, in order; each row is a list of cell values (None leaves a cell empty).

    ``declared_dimension`` (e.g. "A1:A1") overwrites the range each sheet claims to use, as some writers get wrong.
    """
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(row=r, column=c, value=value)
    out = io.BytesIO()
    workbook.save(out)
    if declared_dimension is None:
        return out.getvalue()
    with zipfile.ZipFile(out) as original:
        members = {info.filename: original.read(info) for info in original.infolist()}
    for member, content in members.items():
        if member.startswith("xl/worksheets/sheet"):
            members[member] = re.sub(
                rb'<dimension ref="[^"]*"', f'<dimension ref="{declared_dimension}"'.encode(), content
            )
    return zip_bytes(members)


def xlsx_with_wide_empty_rows(rows: int, width: int) -> bytes:
    """A one-sheet workbook whose rows hold one value in column A and a formatted but empty cell in column ``width``.

    Reading it scans ``width`` cells a row for one value of text: the shape of a sheet padded out to be slow.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    sheet = workbook.active
    for r in range(1, rows + 1):
        sheet.cell(row=r, column=1, value=r)
        sheet.cell(row=r, column=width).font = Font(bold=True)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def zip_bytes(members: Mapping[str, bytes]) -> bytes:
    """An ordinary deflated zip with the given members."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def zip_bomb(kind: str, *, unpacked_mb: int = 300) -> bytes:
    """A zip disguised as a ``kind`` ("docx" or "xlsx") whose member ``BOMB_MEMBERS[kind]`` inflates to zeros.

    The result is about 1 KB per 1 MB unpacked (deflate's best ratio is about 1000:1). The payload's deflate
    stream is one fully flushed block of 1 MiB of zeros, repeated: after a full flush a block depends on
    nothing before it, so the repetition is a valid stream that inflates to ``unpacked_mb`` MiB.
    """
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    payload = block * unpacked_mb + compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(unpacked_mb):
        crc = zlib.crc32(chunk, crc)

    members: list[tuple[str, bytes, int, int]] = [
        ("[Content_Types].xml", zlib.compress(_CONTENT_TYPES)[2:-4], zlib.crc32(_CONTENT_TYPES), len(_CONTENT_TYPES)),
        (BOMB_MEMBERS[kind], payload, crc, unpacked_mb << 20),
    ]
    return _raw_zip(members)


def _raw_zip(members: Sequence[tuple[str, bytes, int, int]]) -> bytes:
    """A zip from ``(name, raw deflate data, crc32, uncompressed size)`` members, written by hand.

    zipfile cannot store data that is already compressed, so the headers are packed here (sizes under 4 GiB).
    """
    out = io.BytesIO()
    central = io.BytesIO()
    for name, data, crc, size in members:
        encoded = name.encode()
        offset = out.tell()
        # Local file header: signature, version, flags, method (8 = deflate), time, date, crc, sizes, name length.
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0))
        out.write(encoded)
        out.write(data)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
        )
        central.write(encoded)
    directory = central.getvalue()
    start = out.tell()
    out.write(directory)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), start, 0))
    return out.getvalue()
