"""Issuing: numbers without gaps or repeats, the seller's profile on the XML, the signer."""

import stat
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from portal.certificates.service import certificates
from portal.database import write
from portal.einvoice.document import Document, Line, Party
from portal.einvoice.signing import SignatureError, make_certificate, verify_xml
from portal.einvoice.xml import parse_xml
from portal.extensions import db
from portal.issuing.service import (
    IssueError,
    Signer,
    ensure_demo_signer,
    issue_invoice,
    load_signer,
    next_number,
)
from portal.models import Invoice, InvoiceSeries
from tests.factories import make_invoice, make_seller

TODAY = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
SERIES = f"K{TODAY.year % 100:02d}TAA"


@pytest.fixture(scope="module")
def signer() -> Signer:
    key_pem, cert_pem = make_certificate("0101234567", "Công ty TNHH Thương mại Ánh Dương")
    return Signer(key_pem, cert_pem)


def add_series(series: str = SERIES, form: int = 1) -> int:
    row = InvoiceSeries(form=form, series=series)
    db.session.add(row)
    db.session.commit()
    return row.id


def document(issued_on: date = TODAY) -> Document:
    """A document as the API hands it over: no seller, number or totals yet."""
    return Document(
        form=0, series="", number=0, issued_on=issued_on, seller=Party(),
        buyer=Party(name="Công ty Cổ phần Nguyễn Hoàng", tax_code="0312345678"),
        lines=[
            Line(position=1, name="Giấy in A4", unit="Ram", quantity=Decimal(10),
                 unit_price=Decimal(72000), vat_rate="10%"),
            Line(position=2, name="Sách giáo khoa", unit="Bộ", quantity=Decimal(3),
                 unit_price=Decimal(98000), vat_rate="KCT"),
        ],
    )  # fmt: skip


def test_a_rolled_back_number_is_handed_out_again(app):
    with app.app_context():
        series_id = add_series()
        with pytest.raises(RuntimeError), write():
            assert next_number(series_id) == 1
            raise RuntimeError("the issue failed after taking the number")
        with write():
            series = db.session.get(InvoiceSeries, series_id)
            assert next_number(series) == 1
            assert series.next_number == 2  # the ORM row sees the UPDATE
            assert next_number(series) == 2
        assert db.session.get(InvoiceSeries, series_id).next_number == 3


def test_issue_signs_the_sellers_profile_and_stores_the_totals(app, signer):
    with app.app_context():
        make_seller()
        series_id = add_series()
        first = issue_invoice(document(), series_id, signer)
        second = issue_invoice(document(), series_id, signer)
        assert (first.form, first.series, first.number, second.number) == (1, SERIES, 1, 2)
        invoice = db.session.get(Invoice, first.id)
        assert verify_xml(invoice.xml).tax_code == "0101234567"
        doc = parse_xml(invoice.xml)
        assert doc.seller.name == "Công ty TNHH Thương mại Ánh Dương"
        assert doc.seller.bank_account == "0071001234567"
        # 720.000 + 72.000 VAT at 10%, 294.000 not subject to VAT.
        assert doc.total_amount == invoice.total_amount == Decimal("1086000")
        assert (
            doc.amount_in_words
            == invoice.amount_in_words
            == ("Một triệu không trăm tám mươi sáu nghìn đồng")
        )
        assert {s.rate: s.tax_amount for s in invoice.vat_summaries} == {
            "10%": Decimal("72000"),
            "KCT": Decimal("0"),
        }
        assert invoice.lookup_code and invoice.lookup_code != second.lookup_code


def test_a_failed_issue_gives_its_number_back(app, signer):
    with app.app_context():
        make_seller()
        series_id = add_series()
        broken = Signer(b"not a key", signer.cert_pem)
        with pytest.raises(SignatureError):
            issue_invoice(document(), series_id, broken)
        assert db.session.get(InvoiceSeries, series_id).next_number == 1
        assert issue_invoice(document(), series_id, signer).number == 1
        assert db.session.query(Invoice).count() == 1


def test_the_series_year_must_match_the_issue_date(app, signer):
    with app.app_context():
        make_seller()
        series_id = add_series()
        with pytest.raises(IssueError, match="issue date"):
            issue_invoice(document(TODAY - timedelta(days=366)), series_id, signer)
        assert db.session.get(InvoiceSeries, series_id).next_number == 1


def test_a_number_already_taken_is_stepped_over(app, signer):
    with app.app_context():
        make_seller()
        series_id = add_series()
        make_invoice(series=SERIES, number=1, seller_tax_code="0101234567", issued_on=TODAY)
        db.session.get(InvoiceSeries, series_id).next_number = 1  # stored before the rule
        db.session.commit()
        assert issue_invoice(document(), series_id, signer).number == 2
        assert db.session.get(InvoiceSeries, series_id).next_number == 3


def test_nothing_is_issued_without_a_seller_or_an_active_series(app, signer):
    with app.app_context():
        series_id = add_series()
        with pytest.raises(IssueError, match="seller"):
            issue_invoice(document(), series_id, signer)
        make_seller()
        db.session.get(InvoiceSeries, series_id).active = False
        db.session.commit()
        with pytest.raises(IssueError, match="series"):
            issue_invoice(document(), series_id, signer)
        assert db.session.query(Invoice).count() == 0


def test_demo_signer_is_made_once_for_the_sellers_tax_code(app, tmp_path):
    with app.app_context():
        seller = make_seller(tax_code="0312678945")
        with pytest.raises(IssueError):
            load_signer()
        made = ensure_demo_signer(seller)
        key_path = tmp_path / "signing" / "key.pem"
        assert key_path.read_bytes() == made.key_pem
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        # Registered once, as the certificate that signs.
        assert ensure_demo_signer(seller) == made == load_signer()
        assert [row.source for row in certificates()] == ["demo"]
        seller_id = add_series()
        invoice = issue_invoice(document(), seller_id, made)
        assert verify_xml(invoice.xml).tax_code == "0312678945"


def test_configured_key_and_certificate_paths_win(app, tmp_path, signer):
    (tmp_path / "k.pem").write_bytes(signer.key_pem)
    (tmp_path / "c.pem").write_bytes(signer.cert_pem)
    app.config.update(SIGNING_KEY_PATH=str(tmp_path / "k.pem"))
    app.config.update(SIGNING_CERT_PATH=str(tmp_path / "c.pem"))
    with app.app_context():
        seller = make_seller()
        with pytest.raises(IssueError, match="no signing certificate is registered"):
            load_signer()  # files alone do not sign: only a registered certificate does
        assert ensure_demo_signer(seller) == signer == load_signer()
