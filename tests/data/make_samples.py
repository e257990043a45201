"""Regenerate the signed sample invoices under tests/data/ (deterministic given the keys).

Run `.venv/bin/python tests/data/make_samples.py`. The test keys and certificates are
kept beside the samples and made only when missing, so the samples come out byte for
byte the same on every run (RSA PKCS#1 v1.5 signatures are deterministic).
"""

from __future__ import annotations

import sys
import zipfile
from copy import deepcopy
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

from lxml import etree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from portal.einvoice.document import Document, Line, Party  # noqa: E402
from portal.einvoice.signing import VN, make_certificate, sign_xml  # noqa: E402
from portal.einvoice.totals import apply_totals  # noqa: E402
from portal.einvoice.xml import build_xml  # noqa: E402

SELLER_TAX_CODE = "0312345678"
SELLER_NAME = "Công ty TNHH Thử Nghiệm Hóa Đơn"
OTHER_TAX_CODE = "0109999999"
OTHER_NAME = "Công ty Cổ phần Khác"
NOT_BEFORE = datetime(2025, 6, 1, tzinfo=VN)
SIGNED_AT = datetime(2026, 1, 5, 9, 30, tzinfo=VN)


def keypair(stem: str, tax_code: str, name: str) -> tuple[bytes, bytes]:
    """Load a test key and certificate, making them once."""
    key_path, cert_path = HERE / f"{stem}_key.pem", HERE / f"{stem}_cert.pem"
    if not key_path.exists():
        key, cert = make_certificate(tax_code, name, days=3650, not_before=NOT_BEFORE)
        key_path.write_bytes(key)
        cert_path.write_bytes(cert)
    return key_path.read_bytes(), cert_path.read_bytes()


def seller(tax_code: str = SELLER_TAX_CODE, name: str = SELLER_NAME) -> Party:
    return Party(
        name=name,
        tax_code=tax_code,
        address="12 Nguyễn Huệ, Phường Sài Gòn, TP Hồ Chí Minh",
        phone="028 3822 0000",
        email="hoadon@thunghiem.vn",
        bank_account="0071000123456",
        bank_name="Vietcombank",
    )


def base_document(number: int, **changes) -> Document:
    """Return a VND invoice with 10% and 8% lines and a trade discount, totals applied."""
    doc = Document(
        form=1,
        series="K26TAA",
        number=number,
        issued_on=SIGNED_AT.date(),
        seller=seller(),
        buyer=Party(
            name="Công ty TNHH Mua Hàng Việt",
            tax_code="0301234567",
            address="45 Lê Lợi, Quận 1, TP Hồ Chí Minh",
            email="ketoan@muahang.vn",
            person="Trần Thị Bích",
            code="KH001",
        ),
        title="Hóa đơn giá trị gia tăng",
        payment_method="TM/CK",
        lookup_code=f"TEST{number:06d}",
        data_id=f"data-{number}",
        lines=[
            Line(
                1,
                "Giấy in A4 Double A",
                code="GA4",
                unit="Ram",
                quantity=D(10),
                unit_price=D(75000),
                vat_rate="10%",
            ),
            Line(
                2,
                "Mực in HP 12A",
                code="HP12A",
                unit="Hộp",
                quantity=D(2),
                unit_price=D(450000),
                vat_rate="8%",
            ),
            Line(
                3,
                "Dịch vụ vận chuyển",
                unit="Lần",
                quantity=D("1.5"),
                unit_price=D(100000),
                vat_rate="8%",
            ),
            Line(4, "Chiết khấu thương mại", kind=3, amount=D(50000), vat_rate="10%"),
        ],
    )
    for key, value in changes.items():
        setattr(doc, key, value)
    apply_totals(doc)
    doc.amount_in_words = "Một triệu chín trăm linh bốn nghìn đồng"
    return doc


def reorder_and_empty(xml: bytes) -> bytes:
    """Reorder elements and add empty ones the way some real producers write them."""
    root = etree.fromstring(xml)
    tt = root.find("DLHDon/TTChung")
    nd = root.find("DLHDon/NDHDon")
    # TTChung fields out of order: NLap first, PBan last.
    for name in ("NLap",):
        tt.insert(0, tt.find(name))
    tt.append(tt.find("PBan"))
    etree.SubElement(tt, "MSTTCGP")
    # NMua before NBan, TToan before DSHHDVu.
    nd.insert(0, nd.find("NMua"))
    nd.insert(1, nd.find("TToan"))
    etree.SubElement(nd.find("NMua"), "SDThoai")
    etree.SubElement(nd.find("NMua"), "STKNHang").text = ""
    etree.SubElement(nd.find("NBan"), "Fax")
    for item in nd.iterfind("DSHHDVu/HHDVu"):
        etree.SubElement(item, "TLCKhau")
        item.insert(0, item.find("THHDVu"))
    etree.SubElement(root.find("DLHDon"), "TTKhac")
    root.insert(1, etree.Element("DLQRCode"))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="UTF-8")


def with_cqt_code(xml: bytes) -> bytes:
    """Add an MCCQT after DLHDon, as invoices with a tax-authority code carry."""
    root = etree.fromstring(xml)
    code = etree.Element("MCCQT", Id="Id-MCCQT")
    code.text = "00" + "A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6"
    root.insert(1, code)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="UTF-8")


def reindent(xml: bytes) -> bytes:
    """Pretty-print a signed file, as a person tidying it by hand would."""
    root = etree.fromstring(xml)
    etree.indent(root, space="  ")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="UTF-8")


def with_decimal_commas(xml: bytes) -> bytes:
    """Write the total and the first line's amount with a decimal comma, as some files do."""
    root = etree.fromstring(xml)
    total = root.find("DLHDon/NDHDon/TToan/TgTTTBSo")
    total.text = f"{D(total.text):.2f}".replace(".", ",")
    amount = root.find("DLHDon/NDHDon/DSHHDVu/HHDVu/ThTien")
    amount.text = f"{int(amount.text):,}".replace(",", ".") + ",00"
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="UTF-8")


def tdiep(invoices: list[bytes], kind: str = "203") -> bytes:
    """Wrap signed invoices in a message to the tax authority, as a T-VAN export holds them."""
    root = etree.Element("TDiep")
    tt = etree.SubElement(root, "TTChung")
    for name, value in (
        ("PBan", "2.1.0"),
        ("MNGui", "V0312345678"),
        ("MNNhan", "TCT"),
        ("MLTDiep", kind),
        ("MTDiep", "V0312345678" + "0123456789ABCDEF0123456789ABCDEF"),
        ("MST", SELLER_TAX_CODE),
        ("SLuong", str(len(invoices))),
    ):
        etree.SubElement(tt, name).text = value
    data = etree.SubElement(root, "DLieu")
    for xml in invoices:
        data.append(etree.fromstring(xml))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="UTF-8")


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<HDon><DLHDon Id="data"><TTChung><PBan>&lol9;</PBan></TTChung></DLHDon></HDon>
"""


def samples() -> dict[str, bytes]:
    """Return every sample file by name."""
    key, cert = keypair("seller", SELLER_TAX_CODE, SELLER_NAME)
    other_key, other_cert = keypair("other", OTHER_TAX_CODE, OTHER_NAME)

    def sign(doc_or_xml, digest: str = "sha256", key=key, cert=cert) -> bytes:
        xml = doc_or_xml if isinstance(doc_or_xml, bytes) else build_xml(doc_or_xml)
        return sign_xml(xml, key, cert, digest=digest, signing_time=SIGNED_AT)

    out: dict[str, bytes] = {}
    out["sha256_v210.xml"] = sign(base_document(1))
    out["sha1_v200.xml"] = sign(base_document(2, version="2.0.0"), "sha1")
    out["v201_reordered_empty.xml"] = sign(
        reorder_and_empty(build_xml(base_document(3, version="2.0.1")))
    )
    retail = base_document(4)
    # The buyer's name arrives decomposed (NFD), as some producers write it.
    retail.buyer = Party(name="Nguye\u0302\u0303n Va\u0306n An", address="Hà Nội")
    retail.lines = [
        Line(1, "Sách giáo khoa", unit="Cuốn", quantity=D(3), unit_price=D(25000), vat_rate="KCT")
    ]
    apply_totals(retail)
    retail.amount_in_words = "Bảy mươi lăm nghìn đồng"
    out["retail_buyer.xml"] = sign(
        build_xml(retail).replace(
            "Nguyễn Văn An".encode(), "Nguye\u0302\u0303n Va\u0306n An".encode()
        )
    )
    usd = base_document(5, currency="USD", exchange_rate=D(25400))
    usd.lines = [
        Line(
            1,
            "Consulting services",
            unit="Giờ",
            quantity=D(12),
            unit_price=D("125.5"),
            vat_rate="10%",
        ),
        Line(
            2,
            "Software licence",
            unit="Gói",
            quantity=D(1),
            unit_price=D("999.99"),
            vat_rate="KHAC:5.26%",
        ),
    ]
    apply_totals(usd)
    usd.amount_in_words = "Hai nghìn bảy trăm linh chín đô la Mỹ và mười chín xu"
    out["usd.xml"] = sign(usd)
    mismatch = base_document(6)
    mismatch.total_amount += 1000
    out["totals_mismatch.xml"] = sign(mismatch)

    good = out["sha256_v210.xml"]
    out["tampered.xml"] = good.replace(b"<TgTTTBSo>", b"<TgTTTBSo>9", 1)
    out["reindented.xml"] = reindent(good)
    out["wrong_seller.xml"] = sign(
        base_document(7, seller=seller(OTHER_TAX_CODE, OTHER_NAME)), key=other_key, cert=other_cert
    )
    out["wrong_certificate.xml"] = sign(base_document(8), key=other_key, cert=other_cert)
    out["c_series.xml"] = sign(base_document(9, series="C26TAA"))
    out["mccqt.xml"] = sign(with_cqt_code(build_xml(base_document(10))))
    dup = base_document(1)
    dup.buyer = deepcopy(dup.buyer)
    dup.buyer.name = "Một người mua khác"
    out["duplicate_number.xml"] = sign(dup)
    # Several reasons in one file: a coded series and amounts with a decimal comma.
    out["c_series_decimal_comma.xml"] = sign(
        with_decimal_commas(build_xml(base_document(12, series="C26TAA")))
    )
    out["tdiep_3_invoices.xml"] = tdiep([sign(base_document(n)) for n in (13, 14, 15)])
    out["tdiep_no_invoice.xml"] = tdiep([], kind="999")
    out["malformed.xml"] = good[: len(good) // 2]
    out["bomb.xml"] = BOMB
    out["mixed.zip"] = make_zip(
        {
            "invoices/sha256_v210_copy_11.xml": sign(base_document(11)),
            "invoices/readme.txt": "Hóa đơn tháng 1\n".encode(),
        }
    )
    return out


def make_zip(members: dict[str, bytes]) -> bytes:
    """Return a ZIP with fixed timestamps, so it is the same on every run."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 5, 9, 30, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def main() -> None:
    for name, data in samples().items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
