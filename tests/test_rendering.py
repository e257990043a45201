"""The invoice's renditions: the PDF read back for Vietnamese text and fonts, the cache, the XML."""

import io
import shutil
import subprocess
import unicodedata
from decimal import Decimal
from pathlib import Path

import pytest
import reportlab
from pypdf import PdfReader

from portal.config import ROOT
from portal.extensions import db
from portal.models import InvoicePdf
from portal.rendering import pdf as pdfmod
from portal.rendering import service
from tests.factories import make_invoice

FONTS = ROOT / "static" / "fonts"
REPORTLAB_FONTS = Path(reportlab.__file__).parent / "fonts"
WORDS = "Một triệu không trăm tám mươi chín nghìn đồng"


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def poppler(tool: str, data: bytes, tmp_path: Path, *args: str) -> str:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(data)
    return subprocess.run(
        [tool, *args, str(path), *(["-"] if tool == "pdftotext" else [])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def flat(text: str) -> str:
    return " ".join(text.split())


def test_pdf_carries_the_legal_text_in_vietnamese(app, tmp_path):
    with app.app_context():
        data = service.invoice_pdf(make_invoice(number=123))
    assert data.startswith(b"%PDF")
    for text in (pdf_text(data), poppler("pdftotext", data, tmp_path, "-layout")):
        text = flat(text)
        assert "HÓA ĐƠN GIÁ TRỊ GIA TĂNG" in text
        assert "Người mua hàng" in text
        assert "Tổng cộng tiền thanh toán" in text
        assert f"Số tiền viết bằng chữ (Amount in words): {WORDS}" in text
        assert "Ký hiệu (Serial): 1K26TAA" in text
        assert "00000123" in text
        assert "Ngày 05 tháng 03 năm 2026" in text
        assert "1.089.000" in text and "Mã tra cứu" in text


def test_pdf_is_a4(app):
    with app.app_context():
        page = PdfReader(io.BytesIO(service.render_pdf(make_invoice()))).pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (595, 842)


def test_pdf_embeds_the_bundled_fonts_and_draws_bold_with_the_bold_one(app, tmp_path):
    with app.app_context():
        data = service.invoice_pdf(make_invoice())
    report = poppler("pdffonts", data, tmp_path)
    embedded = {
        line.split()[0].split("+")[-1] for line in report.splitlines()[2:] if " yes " in line
    }
    assert {"DejaVuSans", "DejaVuSans-Bold"} <= embedded
    # ReportLab lists Helvetica on every page; what matters is which fonts draw the text.
    drawn = pdfmod.drawn_fonts(data)
    assert set(drawn) == {"DejaVuSans", "DejaVuSans-Bold"}
    assert all(font.embedded for font in drawn.values())
    bold = flat(" ".join(drawn["DejaVuSans-Bold"].text))
    regular = flat(" ".join(drawn["DejaVuSans"].text))
    assert "HÓA ĐƠN GIÁ TRỊ GIA TĂNG" in bold and "Tổng cộng tiền thanh toán" in bold
    assert WORDS in regular and WORDS not in bold


def content_streams(data: bytes) -> list[bytes]:
    return [page.get_contents().get_data() for page in PdfReader(io.BytesIO(data)).pages]


def test_decomposed_input_draws_exactly_what_composed_input_draws(app):
    composed = "Công ty Cổ phần Nguyễn Hoàng Đạt"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    with app.app_context():
        invoice = make_invoice(buyer_name=decomposed)
        from_nfd = service.render_pdf(invoice)
        invoice.buyer_name = composed
        from_nfc = service.render_pdf(invoice)
    # Text extraction reads both the same even with misplaced marks (docs/stack.md, "PDFs"), so
    # compare the drawing operators themselves.
    assert composed in flat(pdf_text(from_nfd))
    assert content_streams(from_nfd) == content_streams(from_nfc)


def test_html_to_pdf_normalises_to_nfc():
    page = "<html><body><p>{}</p></body></html>"
    word = "Nguyễn Thị Ánh Tuyết"
    nfc = pdfmod.html_to_pdf(page.format(word), FONTS)
    nfd = pdfmod.html_to_pdf(page.format(unicodedata.normalize("NFD", word)), FONTS)
    assert content_streams(nfd) == content_streams(nfc)


def test_vietnamese_letters_cover_every_tone_in_both_cases():
    letters = pdfmod.vietnamese_letters()
    assert len(letters) == 2 * (12 * 6 + 17)
    assert all(unicodedata.is_normalized("NFC", ch) for ch in letters)
    assert {"ặ", "Ặ", "ữ", "Ữ", "ỵ", "Ỵ", "đ", "Đ", "ờ", "Ở"} <= set(letters)


def test_self_check_passes_with_the_bundled_fonts():
    pdfmod.self_check(FONTS)


def test_self_check_uses_the_configured_font_folder(app, tmp_path):
    app.config["PDF_FONT_DIR"] = str(tmp_path)
    with app.app_context(), pytest.raises(pdfmod.FontError, match="font file missing"):
        pdfmod.self_check()


def test_self_check_fails_for_a_font_without_vietnamese(tmp_path):
    # ReportLab ships Bitstream Vera: Latin only, no Vietnamese tones.
    shutil.copy(REPORTLAB_FONTS / "Vera.ttf", tmp_path / pdfmod.REGULAR)
    shutil.copy(REPORTLAB_FONTS / "VeraBd.ttf", tmp_path / pdfmod.BOLD)
    with pytest.raises(pdfmod.FontError, match="no glyph for.*ạ"):
        pdfmod.self_check(tmp_path)


def test_self_check_fails_when_bold_is_the_regular_face(tmp_path):
    shutil.copy(FONTS / pdfmod.REGULAR, tmp_path / pdfmod.REGULAR)
    shutil.copy(FONTS / pdfmod.REGULAR, tmp_path / pdfmod.BOLD)
    with pytest.raises(pdfmod.FontError, match="bold would print regular"):
        pdfmod.self_check(tmp_path)


def sample(letters: str, style: str = "") -> str:
    return (
        f"<html><head><style>{style}</style></head>"
        f"<body><p>{letters}</p><p><b>{letters}</b></p></body></html>"
    )


EXPECTED = {"regular": "DejaVuSans", "bold": "DejaVuSans-Bold"}


def test_any_html_gets_the_bundled_fonts_and_passes_the_pdf_check():
    letters = pdfmod.vietnamese_letters()
    data = pdfmod.html_to_pdf(sample(letters), FONTS)
    pdfmod.check_sample(data, letters, EXPECTED)


def test_pdf_check_catches_notdef_boxes(tmp_path):
    # Vera drawn for real: the letters it lacks go in as .notdef (code 0), silently.
    shutil.copy(REPORTLAB_FONTS / "Vera.ttf", tmp_path / pdfmod.REGULAR)
    shutil.copy(REPORTLAB_FONTS / "VeraBd.ttf", tmp_path / pdfmod.BOLD)
    letters = pdfmod.vietnamese_letters()
    data = pdfmod.html_to_pdf(sample(letters), tmp_path)
    expected = {"regular": "BitstreamVeraSans-Roman", "bold": "BitstreamVeraSans-Bold"}
    with pytest.raises(pdfmod.FontError, match="notdef"):
        pdfmod.check_sample(data, letters, expected)


def test_pdf_check_catches_the_silent_helvetica_fallback(tmp_path):
    # A font outside the folder xhtml2pdf may read is dropped without an error.
    letters = pdfmod.vietnamese_letters()
    style = (
        f"@font-face {{ font-family: Elsewhere; src: url('{FONTS / pdfmod.REGULAR}'); }}"
        "p, b { font-family: Elsewhere; }"
    )
    data = pdfmod.html_to_pdf(sample(letters, style), tmp_path)
    assert "DejaVuSans" not in pdfmod.drawn_fonts(data)
    with pytest.raises(pdfmod.FontError, match="drew nothing"):
        pdfmod.check_sample(data, letters, EXPECTED)


def test_pdf_is_rendered_once_and_reused(app, monkeypatch):
    renders = []
    real_render = service.render_pdf
    monkeypatch.setattr(
        service, "render_pdf", lambda inv: renders.append(inv.id) or real_render(inv)
    )
    with app.app_context():
        invoice = make_invoice()
        first = service.invoice_pdf(invoice)
        invoice_id = invoice.id
        db.session.remove()
        # A new session (another request or worker) finds the committed row.
        invoice = db.session.get(service.Invoice, invoice_id)
        assert service.invoice_pdf(invoice) == first
        assert service.invoice_pdf(invoice) == first
        assert renders == [invoice_id]
        row = db.session.get(InvoicePdf, invoice_id)
        assert (row.xml_sha256, row.template_version) == (
            invoice.xml_sha256,
            service.layout_version(),
        )


def test_a_pdf_stored_by_another_worker_meanwhile_wins(app, monkeypatch):
    def render_while_another_worker_stores(invoice):
        with app.app_context():  # its own session and connection, like another worker
            db.session.add(
                InvoicePdf(
                    invoice_id=invoice.id,
                    xml_sha256=invoice.xml_sha256,
                    template_version=service.layout_version(),
                    data=b"%PDF-theirs",
                )
            )
            db.session.commit()
        return b"%PDF-mine"

    monkeypatch.setattr(service, "render_pdf", render_while_another_worker_stores)
    with app.app_context():
        invoice = make_invoice()
        assert service.invoice_pdf(invoice) == b"%PDF-theirs"
        db.session.remove()
        assert db.session.scalars(db.select(InvoicePdf.data)).all() == [b"%PDF-theirs"]


def test_a_stale_cached_pdf_is_replaced(app, monkeypatch):
    with app.app_context():
        invoice = make_invoice()
        service.invoice_pdf(invoice)
        monkeypatch.setattr(service, "render_pdf", lambda inv: b"%PDF-next layout")
        monkeypatch.setattr(service, "TEMPLATE_VERSION", "next")
        assert service.invoice_pdf(invoice) == b"%PDF-next layout"
        monkeypatch.setattr(service, "render_pdf", lambda inv: b"%PDF-other xml")
        invoice.xml_sha256 = "f" * 64
        db.session.commit()
        assert service.invoice_pdf(invoice) == b"%PDF-other xml"
        db.session.remove()
        rows = db.session.scalars(db.select(InvoicePdf)).all()
        assert [(r.xml_sha256, r.template_version, r.data) for r in rows] == [
            ("f" * 64, service.layout_version(), b"%PDF-other xml")
        ]
        assert service.layout_version().startswith("next-")


def test_xml_rendition_is_the_stored_bytes(app):
    raw = b'<?xml version="1.0" encoding="UTF-8"?>\n<HDon>  <DLHDon Id="x"/>\r\n</HDon>'
    with app.app_context():
        invoice_id = make_invoice(xml=raw).id
        db.session.remove()
        assert service.invoice_xml(db.session.get(service.Invoice, invoice_id)) == raw


def test_html_escapes_invoice_fields(app):
    with app.app_context():
        html = service.invoice_html(
            make_invoice(buyer_name="<script>alert(1)</script>", buyer_person='"><img src=x>')
        )
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x&gt;" in html
    assert " style=" not in html  # the CSP allows no inline styles


def test_html_layout_shows_identity_totals_and_words_but_no_warnings(app):
    with app.app_context():
        html = service.invoice_html(
            make_invoice(number=123, warnings="Tổng tiền không khớp\nThiếu mã số thuế")
        )
    assert "HÓA ĐƠN GIÁ TRỊ GIA TĂNG" in html
    assert "Ký hiệu (Serial): <b>1K26TAA</b>" in html
    assert 'Số (No.): <b class="doc-number">00000123</b>' in html
    assert "Ngày 05 tháng 03 năm 2026" in html
    assert "Họ tên người mua hàng" in html and "Mã tra cứu" in html
    assert "1.089.000" in html and "99.000" in html
    assert WORDS in html
    assert "không khớp" not in html and "Thiếu mã" not in html


@pytest.mark.parametrize(
    ("overrides", "title"),
    [
        ({"form": 2}, "HÓA ĐƠN BÁN HÀNG"),
        ({"form": 7}, "HÓA ĐƠN THƯƠNG MẠI"),
        ({"form": 9}, "HÓA ĐƠN"),
        ({"title": "HÓA ĐƠN GTGT (KIÊM PHIẾU XUẤT KHO)"}, "HÓA ĐƠN GTGT (KIÊM PHIẾU XUẤT KHO)"),
    ],
)
def test_title_follows_the_form_unless_the_invoice_names_one(app, overrides, title):
    with app.app_context():
        html = service.invoice_html(make_invoice(**overrides))
    assert f'<div class="doc-title">{title}</div>' in html
    if "form" in overrides:
        assert "GIÁ TRỊ GIA TĂNG" not in html


def test_words_are_shown_verbatim(app):
    words = "Một triệu  không trăm tám mươi chín ngàn đồng chẵn./."
    with app.app_context():
        html = service.invoice_html(make_invoice(amount_in_words=words))
    assert f"<i>{words}</i>" in html


def test_foreign_currency_shows_currency_and_exchange_rate(app, tmp_path):
    with app.app_context():
        invoice = make_invoice(
            currency="USD",
            exchange_rate=Decimal("25450"),
            total_before_tax=Decimal("1000.5"),
            total_tax=Decimal("100.05"),
            total_amount=Decimal("1100.55"),
        )
        html = service.invoice_html(invoice)
        data = service.render_pdf(invoice)
    assert "Tỷ giá (Exchange rate): 25.450 VND/USD" in html
    assert "1.100,55 USD" in html
    assert "1.100,55 USD" in flat(poppler("pdftotext", data, tmp_path))


def test_a_pdf_kept_for_another_lookup_address_is_rendered_again(app, tmp_path):
    """The PDF prints the lookup page's address: a new PORTAL_BASE_URL makes kept PDFs stale."""
    with app.app_context():
        app.config["PORTAL_BASE_URL"] = "https://old.example.vn"
        invoice = make_invoice()
        old = service.invoice_pdf(invoice)
        app.config["PORTAL_BASE_URL"] = "https://hoadon.example.vn/"
        new = service.invoice_pdf(invoice)
        assert service.invoice_pdf(invoice) == new  # kept again, under the new address
    assert "https://old.example.vn/tra-cuu" in flat(poppler("pdftotext", old, tmp_path))
    text = flat(poppler("pdftotext", new, tmp_path))
    assert (
        f"Tra cứu hóa đơn tại: https://hoadon.example.vn/tra-cuu - Mã tra cứu: {invoice.lookup_code}"
        in text
    )
    assert len(PdfReader(io.BytesIO(new)).pages) == 1
