"""Import signed invoice XML files: what is stored, what is refused and why, and the page."""

import hashlib
import io
import zipfile
from decimal import Decimal as D
from pathlib import Path

import pytest

from portal.certificates.service import register_certificate
from portal.einvoice.signing import sign_xml
from portal.einvoice.xml import build_xml, parse_xml
from portal.extensions import db
from portal.importing.service import (
    LOOKUP_ALPHABET,
    MAX_FILE_BYTES,
    import_files,
    store_document,
    warning_words,
)
from portal.models import Invoice, Seller
from tests.conftest import login
from tests.data.make_samples import SELLER_NAME, SELLER_TAX_CODE, base_document, make_zip

DATA = Path(__file__).parent / "data"
GOOD = [
    "sha256_v210.xml",
    "sha1_v200.xml",
    "v201_reordered_empty.xml",
    "retail_buyer.xml",
    "usd.xml",
    "totals_mismatch.xml",
]


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def seller_app(app):
    # Assert on the English msgids, whatever catalog `make translations` compiled.
    app.config["BABEL_DEFAULT_LOCALE"] = "en"
    with app.app_context():
        db.session.add(Seller(name=SELLER_NAME, tax_code=SELLER_TAX_CODE))
        db.session.commit()
        # The samples' signer is the seller's registered certificate (issue 10: only those count).
        register_certificate((DATA / "seller_cert.pem").read_bytes(), None)
    return app


def run_import(app, files):
    with app.app_context():
        seller = db.session.scalar(db.select(Seller))
        return import_files(files, seller)


def invoice_count(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(Invoice.id)))


def test_good_files_are_stored_byte_for_byte(seller_app):
    report = run_import(seller_app, [(name, sample(name)) for name in GOOD])
    assert [r.errors for r in report.results] == [[]] * len(GOOD)
    with seller_app.app_context():
        for result, name in zip(report.results, GOOD, strict=True):
            invoice = db.session.get(Invoice, result.invoice_id)
            assert invoice.xml == sample(name)
            assert invoice.xml_sha256 == hashlib.sha256(sample(name)).hexdigest()
            assert invoice.state == "issued" and invoice.source == "import"
            assert result.label == "1K26TAA" and result.number == invoice.number_label


def test_imported_fields_follow_the_xml(seller_app):
    report = run_import(
        seller_app, [(n, sample(n)) for n in ("sha256_v210.xml", "retail_buyer.xml", "usd.xml")]
    )
    with seller_app.app_context():
        first, retail, usd = (db.session.get(Invoice, r.invoice_id) for r in report.results)
        assert first.lookup_code == "TEST000001"
        assert first.total_amount == D(1904000) and first.total_discount == D(50000)
        assert first.amount_in_words == "Một triệu chín trăm linh bốn nghìn đồng"
        assert [(s.rate, s.taxable_amount, s.tax_amount) for s in first.vat_summaries] == [
            ("10%", D(700000), D(70000)),
            ("8%", D(1050000), D(84000)),
        ]
        assert [line.kind for line in first.lines] == [1, 1, 1, 3]
        assert first.lines[2].quantity == D("1.5")
        assert (
            first.search_text == "00000001 cong ty tnhh mua hang viet 0301234567 ketoan@muahang.vn"
        )
        assert retail.buyer_name == "Nguyễn Văn An"  # NFD in the file, NFC stored
        assert retail.buyer_tax_code == ""
        assert "nguyen van an" in retail.search_text
        assert usd.currency == "USD" and usd.exchange_rate == D(25400)
        assert usd.total_amount == D("2709.19")
        assert not first.warnings


def test_a_totals_mismatch_is_a_warning_not_a_refusal(seller_app):
    report = run_import(seller_app, [("totals_mismatch.xml", sample("totals_mismatch.xml"))])
    result = report.results[0]
    assert result.imported
    assert result.warnings == ["TgTTTBSo: 1.905.000 khác tổng tính được 1.904.000"]
    with seller_app.app_context():
        invoice = db.session.get(Invoice, result.invoice_id)
        # Stored as a code and values, worded in the reader's language.
        assert invoice.warning_list == [
            '{"code": "differs", "element": "TgTTTBSo", "found": "1.905.000", '
            '"computed": "1.904.000"}'
        ]
        assert warning_words(invoice.warning_list[0]) == (
            "Total payment (TgTTTBSo): 1.905.000 differs from the computed total 1.904.000."
        )
        assert invoice.total_amount == D(1905000)  # kept as issued, never "fixed"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tampered.xml", "modified after signing"),
        ("reindented.xml", "modified after signing"),
        ("wrong_seller.xml", "NBan/MST"),
        ("wrong_certificate.xml", "X509Certificate"),
        ("c_series.xml", "KHHDon"),
        ("mccqt.xml", "MCCQT"),
        ("malformed.xml", "not well-formed"),
        ("bomb.xml", "DTD"),
    ],
)
def test_bad_files_are_refused_with_the_reason(seller_app, name, expected):
    report = run_import(seller_app, [(name, sample(name))])
    [result] = report.results
    assert not result.imported
    assert result.name == name
    assert any(expected in error for error in result.errors), result.errors
    assert report.messages()[0].startswith(f"{name}: ")
    assert invoice_count(seller_app) == 0


def test_a_bad_file_imports_nothing_and_others_still_import(seller_app):
    report = run_import(
        seller_app,
        [
            ("sha256_v210.xml", sample("sha256_v210.xml")),
            ("tampered.xml", sample("tampered.xml")),
            ("sha1_v200.xml", sample("sha1_v200.xml")),
        ],
    )
    assert [r.imported for r in report.results] == [True, False, True]
    assert invoice_count(seller_app) == 2
    with seller_app.app_context():
        assert (
            db.session.scalar(db.select(db.func.count()).select_from(db.table("invoice_line"))) == 8
        )


def test_duplicates_are_refused_across_and_within_uploads(seller_app):
    first = run_import(seller_app, [("a.xml", sample("sha256_v210.xml"))])
    assert first.results[0].imported
    second = run_import(
        seller_app,
        [
            ("again.xml", sample("sha256_v210.xml")),
            ("dup.xml", sample("duplicate_number.xml")),
            ("usd.xml", sample("usd.xml")),
            ("usd-copy.xml", sample("usd.xml")),
        ],
    )
    assert [r.imported for r in second.results] == [False, False, True, False]
    assert "SHDon: invoice 1K26TAA No. 00000001 already exists." in second.results[1].errors
    assert any(e.startswith("SHDon:") for e in second.results[3].errors)
    assert invoice_count(seller_app) == 2


def test_a_zip_imports_its_xml_members_and_names_the_rest(seller_app):
    report = run_import(seller_app, [("thang1.zip", sample("mixed.zip"))])
    by_name = {r.name: r for r in report.results}
    assert by_name["thang1.zip/invoices/sha256_v210_copy_11.xml"].imported
    refused = by_name["thang1.zip/invoices/readme.txt"]
    assert refused.errors == ["Not an XML file."]
    with seller_app.app_context():
        invoice = db.session.get(
            Invoice, by_name["thang1.zip/invoices/sha256_v210_copy_11.xml"].invoice_id
        )
        with zipfile.ZipFile(io.BytesIO(sample("mixed.zip"))) as archive:
            assert invoice.xml == archive.read("invoices/sha256_v210_copy_11.xml")


def test_a_zip_bomb_member_is_refused_by_size(seller_app):
    # 6 MB of zeros deflates to a few KB; the header also claims the true size.
    bomb = make_zip({"big.xml": b"<HDon>" + b"0" * (MAX_FILE_BYTES + 1) + b"</HDon>"})
    assert len(bomb) < 100_000
    report = run_import(
        seller_app, [("bomb.zip", bomb), ("junk.zip", b"not a zip"), ("notes.pdf", b"%PDF")]
    )
    assert [r.errors for r in report.results] == [
        ["The file is larger than 5 MB."],
        ["The ZIP file is damaged or not a ZIP file."],
        ["Not an XML or ZIP file."],
    ]


def test_store_document_generates_a_lookup_code_and_leaves_the_commit_to_the_caller(app):
    doc = base_document(20)
    doc.lookup_code = ""
    xml = build_xml(doc)
    with app.app_context():
        invoice = store_document(doc, xml, source="api", warnings=["W1", "W2"])
        assert invoice.id is not None
        assert len(invoice.lookup_code) == 10 and set(invoice.lookup_code) <= set(LOOKUP_ALPHABET)
        assert invoice.warnings == "W1\nW2" and invoice.source == "api"
        db.session.rollback()
        assert db.session.scalar(db.select(db.func.count(Invoice.id))) == 0


def test_store_document_marks_the_invoice_a_replacement_replaces(seller_app):
    key, cert = (DATA / "seller_key.pem").read_bytes(), (DATA / "seller_cert.pem").read_bytes()
    with seller_app.app_context():
        first = base_document(3)
        original = store_document(first, sign_xml(build_xml(first), key, cert), source="api")
        replacement = base_document(4)
        # The whole identity of the replaced invoice, its date included (issue 10).
        replacement.related_info = (
            "TCHDon=1\nKHMSHDCLQuan=1\nKHHDCLQuan=K26TAA\nSHDCLQuan=3\nNLHDCLQuan=2026-01-05"
        )
        new = store_document(replacement, sign_xml(build_xml(replacement), key, cert), source="api")
        db.session.commit()
        assert original.state == "replaced" and new.state == "issued"
        assert parse_xml(new.xml).related_info == replacement.related_info


# --- the page -------------------------------------------------------------------------


def test_the_page_says_when_there_is_no_seller(client, users):
    login(client, "sender")
    client.post("/lang/en")
    page = client.get("/import/")
    assert page.status_code == 200
    assert b"No seller profile exists yet" in page.data


def test_viewers_may_not_import(client, users, seller_app):
    login(client, "viewer")
    assert client.get("/import/").status_code == 403


def test_a_sender_uploads_files_and_sees_each_result(client, users, seller_app):
    login(client, "sender")
    client.post("/lang/en")
    response = client.post(
        "/import/",
        data={
            "files": [
                (io.BytesIO(sample("sha256_v210.xml")), "sha256_v210.xml"),
                (io.BytesIO(sample("totals_mismatch.xml")), "totals_mismatch.xml"),
                (io.BytesIO(sample("c_series.xml")), "c_series.xml"),
            ]
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "2 imported, 1 refused." in html
    assert "1K26TAA No. 00000001" in html
    assert "Total payment (TgTTTBSo): 1.905.000 differs from the computed total 1.904.000." in html
    assert "c_series.xml" in html and "KHHDon: series C26TAA" in html
    with seller_app.app_context():
        stored = db.session.scalar(db.select(Invoice).filter_by(number=1))
        assert stored.xml == sample("sha256_v210.xml")


def test_an_htmx_upload_gets_the_results_fragment(client, users, seller_app):
    login(client, "sender")
    response = client.post(
        "/import/",
        data={"files": [(io.BytesIO(sample("sha1_v200.xml")), "sha1_v200.xml")]},
        content_type="multipart/form-data",
        headers={"HX-Request": "true"},
    )
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="import-results"')
    assert "00000002" in html and "<html" not in html


def test_the_upload_needs_a_file_and_a_csrf_token(client, users, seller_app):
    login(client, "sender")
    client.post("/lang/en")
    response = client.post("/import/", data={}, content_type="multipart/form-data")
    assert "Choose at least one file." in response.get_data(as_text=True)
    seller_app.config["WTF_CSRF_ENABLED"] = True
    response = client.post(
        "/import/",
        data={"files": [(io.BytesIO(sample("sha1_v200.xml")), "sha1_v200.xml")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert invoice_count(seller_app) == 0


def test_every_message_has_a_vietnamese_translation_with_the_same_placeholders():
    import re

    from babel.messages.pofile import read_po

    root = Path(__file__).parent.parent
    with open(root / "translations" / "parts" / "importing.po", "rb") as handle:
        catalog = read_po(handle)
    placeholders = re.compile(r"%\((\w+)\)s")
    messages = [m for m in catalog if m.id]
    assert len(messages) > 40
    for message in messages:
        assert message.string, message.id
        assert sorted(placeholders.findall(message.id)) == sorted(
            placeholders.findall(message.string)
        ), message.id
    # Every message the parser and the verifier raise is in the catalog.
    ids = {m.id for m in messages}
    sources = (root / "portal" / "einvoice" / "xml.py").read_text() + (
        root / "portal" / "einvoice" / "signing.py"
    ).read_text()
    for raised in re.findall(
        r'(?:InvoiceXmlError|SignatureError)\(\s*"([^"]+)"(?:\s*"([^"]+)")?', sources
    ):
        assert "".join(raised) in ids, raised


def test_a_file_with_several_problems_names_every_one(seller_app):
    name = "c_series_decimal_comma.xml"
    report = run_import(seller_app, [(name, sample(name))])
    [result] = report.results
    assert not result.imported
    errors = "\n".join(result.errors)
    # Both amounts written with a decimal comma, named with their values...
    assert "Amount (DSHHDVu/HHDVu[1]/ThTien): 750.000,00 is written with a decimal comma" in errors
    assert "Total payment (TToan/TgTTTBSo): 1904000,00 is written with a decimal comma" in errors
    # ...and the coded series besides, found on the rest of the invoice.
    assert "KHHDon: series C26TAA" in errors
    assert len(result.errors) == 3, result.errors
    assert invoice_count(seller_app) == 0


def test_a_message_with_several_invoices_says_so(seller_app):
    report = run_import(seller_app, [("tdiep_3_invoices.xml", sample("tdiep_3_invoices.xml"))])
    [result] = report.results
    assert result.errors == [
        "The file is a message to the tax authority (TDiep, type 203) holding 3 invoices; "
        "import each invoice's own XML file (HDon), or a ZIP of them."
    ]
    assert "root element" not in result.errors[0]
    report = run_import(seller_app, [("tdiep_no_invoice.xml", sample("tdiep_no_invoice.xml"))])
    assert "TDiep, type 999) that holds no invoice" in report.results[0].errors[0]
    assert invoice_count(seller_app) == 0


def test_several_reasons_are_named_in_vietnamese_on_the_page(app, users):
    with app.app_context():
        db.session.add(Seller(name=SELLER_NAME, tax_code=SELLER_TAX_CODE))
        db.session.commit()
    client = app.test_client()
    login(client)
    name = "c_series_decimal_comma.xml"
    response = client.post(
        "/import/",
        data={"files": [(io.BytesIO(sample(name)), name)]},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert html.count("dấu phẩy thập phân") == 2 and "C26TAA" in html
