"""Plain functions that insert realistic rows for tests (call inside an app context)."""

import hashlib
import itertools
from datetime import date
from decimal import Decimal

from portal.extensions import db
from portal.models import Invoice, InvoiceLine, Seller, VatSummary
from portal.text import fold

_numbers = itertools.count(1)


def make_seller(**overrides) -> Seller:
    values = dict(
        name="Công ty TNHH Thương mại Ánh Dương",
        tax_code="0101234567",
        address="12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh",
        phone="028 3822 1234",
        email="ketoan@anhduong.vn",
        bank_account="0071001234567",
        bank_name="Vietcombank",
    )
    values.update(overrides)
    seller = Seller(**values)
    db.session.add(seller)
    db.session.commit()
    return seller


def make_invoice(**overrides) -> Invoice:
    """An issued VAT invoice (form 1, series K26TAA) with two lines at 10%: 990.000 + 99.000 VAT."""
    number = overrides.pop("number", None) or next(_numbers)
    values = dict(
        form=1,
        series="K26TAA",
        number=number,
        issued_on=date(2026, 3, 5),
        seller_name="Công ty TNHH Thương mại Ánh Dương",
        seller_tax_code="0101234567",
        seller_address="12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh",
        buyer_name="Công ty Cổ phần Nguyễn Hoàng",
        buyer_person="Nguyễn Văn An",
        buyer_tax_code="0312345678",
        buyer_address="45 Trần Hưng Đạo, Quận 5, TP. Hồ Chí Minh",
        buyer_email="an.nguyen@nguyenhoang.vn",
        payment_method="TM/CK",
        total_before_tax=Decimal("990000"),
        total_tax=Decimal("99000"),
        total_amount=Decimal("1089000"),
        amount_in_words="Một triệu không trăm tám mươi chín nghìn đồng",
        lookup_code=f"TEST{number:06d}",
    )
    values.update(overrides)
    xml = (
        values.pop("xml", None)
        or (
            f'<?xml version="1.0" encoding="UTF-8"?><HDon><DLHDon Id="data">'
            f"<TTChung><SHDon>{values['number']}</SHDon></TTChung></DLHDon></HDon>"
        ).encode()
    )
    invoice = Invoice(xml=xml, xml_sha256=hashlib.sha256(xml).hexdigest(), **values)
    invoice.search_text = fold(
        " ".join(
            [str(invoice.number), invoice.buyer_name, invoice.buyer_tax_code, invoice.buyer_email]
        )
    )
    invoice.lines = [
        InvoiceLine(position=1, name="Giấy in A4 Double A 80gsm", unit="Ram", quantity=Decimal(10),
                    unit_price=Decimal(70000), amount=Decimal(700000), vat_rate="10%"),
        InvoiceLine(position=2, name="Dịch vụ bảo trì máy in", unit="Lần", quantity=Decimal(1),
                    unit_price=Decimal(290000), amount=Decimal(290000), vat_rate="10%"),
    ]  # fmt: skip
    invoice.vat_summaries = [
        VatSummary(rate="10%", taxable_amount=Decimal(990000), tax_amount=Decimal(99000)),
    ]
    db.session.add(invoice)
    db.session.commit()
    return invoice


_signers: dict[str, object] = {}


def test_signer(tax_code: str = "0101234567"):
    """A signing key and certificate for a seller, made once per test run."""
    from portal.einvoice.signing import make_certificate
    from portal.issuing.service import Signer

    if tax_code not in _signers:
        from datetime import UTC, datetime

        since = datetime(datetime.now(UTC).year - 1, 1, 1, tzinfo=UTC)
        key, cert = make_certificate(tax_code, f"Công ty Thử nghiệm {tax_code}", not_before=since)
        _signers[tax_code] = Signer(key, cert)
    return _signers[tax_code]


def signed_document(number: int, tax_code: str = "0101234567", **changes):
    """A VAT invoice of this year, signed by the seller's (test) certificate."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from portal.einvoice.document import Document, Line, Party

    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    values = dict(
        form=1, series=f"K{today.year % 100:02d}TAA", number=number, issued_on=today,
        seller=Party(name="Công ty TNHH Thương mại Ánh Dương", tax_code=tax_code,
                     address="12 Lê Lợi, Quận 1, TP. Hồ Chí Minh"),
        buyer=Party(name="Công ty Cổ phần Nguyễn Hoàng", tax_code="0312345678",
                    email="an.nguyen@nguyenhoang.vn", person="Nguyễn Văn An"),
        lines=[
            Line(position=1, name="Giấy in A4", unit="Ram", quantity=Decimal(10),
                 unit_price=Decimal(72000), vat_rate="10%"),
            Line(position=2, name="Sách giáo khoa", unit="Bộ", quantity=Decimal(3),
                 unit_price=Decimal(98000), vat_rate="KCT"),
        ],
        data_id=f"data-{number}",
    )  # fmt: skip
    values.update(changes)
    return Document(**values)


def make_signed_invoice(
    number: int | None = None,
    tax_code: str = "0101234567",
    signer_tax_code: str | None = None,
    tamper: bool = False,
    **changes,
):
    """Issue a real signed invoice through the production path (sign, then store_document)."""
    from datetime import UTC, datetime

    from portal.database import write
    from portal.importing.service import store_document
    from portal.issuing.service import sign_document

    number = number or next(_numbers)
    doc = signed_document(number, tax_code, **changes)
    xml = sign_document(doc, test_signer(signer_tax_code or tax_code), datetime.now(UTC))
    if tamper:  # edited after signing: a buyer's name changed in the signed bytes
        xml = xml.replace("Nguyễn Hoàng".encode(), "Nguyễn Hoàn".encode(), 1)
    with write():
        invoice = store_document(doc, xml, "test")
    return invoice


def make_pending_import(number: int | None = None, tax_code: str = "0101234567"):
    """Import a file signed by a certificate nobody registered: it waits for approval."""
    from datetime import UTC, datetime

    from portal.importing.service import import_files
    from portal.issuing.service import sign_document

    doc = signed_document(number or next(_numbers), tax_code)
    xml = sign_document(doc, test_signer(tax_code), datetime.now(UTC))
    seller = db.session.scalar(db.select(Seller).filter_by(tax_code=tax_code))
    [result] = import_files([("pending.xml", xml)], seller).results
    assert result.waiting, result.errors
    return result.pending_id
