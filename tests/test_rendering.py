"""The invoice's renditions: the PDF read back for Vietnamese text and fonts, the cache, the XML."""

import io
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
from pypdf import PdfReader

from portal.config import ROOT
from portal.extensions import db
from portal.models import InvoicePdf
from portal.rendering import pdf as pdfmod
from portal.rendering import service
from tests.factories import make_invoice

FONTS = ROOT / "static" / "fonts"
WORDS = "Một triệu không trăm tám mươi chín nghìn đồng"


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def poppler_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(data)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_pdf_carries_the_legal_text_in_vietnamese(app, tmp_path):
    with app.app_context():
        data = service.invoice_pdf(make_invoice())
    assert data.startswith(b"%PDF")
    for text in (pdf_text(data), poppler_text(data, tmp_path)):
        flat = " ".join(text.split())
        assert "HÓA ĐƠN GIÁ TRỊ GIA TĂNG" in flat
        assert "Người mua hàng" in flat
        assert "Tổng cộng tiền thanh toán" in flat
        assert WORDS in flat
        assert "1K26TAA" in flat and "1.089.000" in flat


def fonts_of_drawn_text(data: bytes) -> set[str]:
    """The fonts that actually draw visible text (ReportLab lists Helvetica on every page)."""
    used = set()

    def visit(text, cm, tm, font_dict, font_size):
        if text.strip() and font_dict:
            used.add(str(font_dict.get("/BaseFont")))

    for page in PdfReader(io.BytesIO(data)).pages:
        page.extract_text(visitor_text=visit)
    return used


def test_pdf_embeds_the_bundled_regular_and_bold_fonts(app, tmp_path):
    with app.app_context():
        data = service.invoice_pdf(make_invoice())
    path = tmp_path / "invoice.pdf"
    path.write_bytes(data)
    report = subprocess.run(
        ["pdffonts", str(path)], capture_output=True, text=True, check=True
    ).stdout
    embedded = {
        line.split()[0].split("+")[-1] for line in report.splitlines()[2:] if " yes " in line
    }
    assert {"DejaVuSans", "DejaVuSans-Bold"} <= embedded
    assert {name.split("+")[-1] for name in fonts_of_drawn_text(data)} == {
        "DejaVuSans",
        "DejaVuSans-Bold",
    }


def test_decomposed_input_renders_like_composed(app):
    nfd = unicodedata.normalize("NFD", "Công ty Cổ phần Nguyễn Hoàng")
    assert nfd != "Công ty Cổ phần Nguyễn Hoàng"
    with app.app_context():
        data = service.render_pdf(make_invoice(buyer_name=nfd))
    assert "Công ty Cổ phần Nguyễn Hoàng" in " ".join(pdf_text(data).split())


def test_self_check_passes_with_the_bundled_fonts():
    pdfmod.self_check(FONTS)


def test_self_check_fails_for_a_font_without_vietnamese(tmp_path):
    import reportlab  # any font without Vietnamese will do: ReportLab ships Bitstream Vera

    fonts = Path(reportlab.__file__).parent / "fonts"
    shutil.copy(fonts / "Vera.ttf", tmp_path / pdfmod.REGULAR)
    shutil.copy(fonts / "VeraBd.ttf", tmp_path / pdfmod.BOLD)
    with pytest.raises(pdfmod.FontError, match="no glyph"):
        pdfmod.self_check(tmp_path)


def test_pdf_is_rendered_once_and_reused(app, monkeypatch):
    with app.app_context():
        invoice = make_invoice()
        first = service.invoice_pdf(invoice)
        calls = []
        monkeypatch.setattr(service, "render_pdf", lambda inv: calls.append(inv) or b"new")
        assert service.invoice_pdf(invoice) == first
        assert calls == []
        # Another layout version renders again.
        monkeypatch.setattr(service, "TEMPLATE_VERSION", "next")
        assert service.invoice_pdf(invoice) == b"new"
        assert db.session.get(InvoicePdf, invoice.id).template_version == "next"


def test_xml_rendition_is_the_stored_bytes(app):
    raw = b'<?xml version="1.0" encoding="UTF-8"?>\n<HDon>  <DLHDon Id="x"/>\r\n</HDon>'
    with app.app_context():
        assert service.invoice_xml(make_invoice(xml=raw)) == raw


def test_html_escapes_invoice_fields(app):
    with app.app_context():
        html = service.invoice_html(make_invoice(buyer_name="<script>alert(1)</script>"))
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
