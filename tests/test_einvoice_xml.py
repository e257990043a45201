"""The invoice XML: writing, reading (safely, by name), and the totals checks."""

import time
from copy import deepcopy
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest
from lxml import etree

from portal.einvoice.document import Document, Line, Party, RateSummary
from portal.einvoice.totals import apply_totals, check_totals, rate_fraction
from portal.einvoice.xml import (
    InvoiceXmlError,
    build_xml,
    format_number,
    has_cqt_code,
    parse_xml,
    related_fields,
)
from tests.data.make_samples import base_document

DATA = Path(__file__).parent / "data"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def simple_document(**changes) -> Document:
    doc = Document(
        form=1,
        series="K26TAA",
        number=42,
        issued_on=date(2026, 3, 5),
        seller=Party(name="Công ty A", tax_code="0312345678", address="Hà Nội"),
        buyer=Party(name="Công ty B", tax_code="0301234567", address="Huế", email="b@b.vn"),
        lines=[Line(1, "Hàng", quantity=D(2), unit_price=D(750000), vat_rate="10%")],
        lookup_code="ABCDEFGH23",
        data_id="id-42",
    )
    for key, value in changes.items():
        setattr(doc, key, value)
    apply_totals(doc)
    doc.amount_in_words = "Một triệu sáu trăm năm mươi nghìn đồng"
    return doc


# --- build_xml ----------------------------------------------------------------------


def test_build_xml_writes_an_unsigned_hdon_without_namespace():
    xml = build_xml(simple_document())
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = etree.fromstring(xml)
    assert root.tag == "HDon" and root.nsmap == {}
    assert root.find("DLHDon").get("Id") == "id-42"
    tt = root.find("DLHDon/TTChung")
    assert [tt.findtext(n) for n in ("PBan", "KHMSHDon", "KHHDon", "SHDon", "NLap", "DVTTe")] == [
        "2.1.0",
        "1",
        "K26TAA",
        "42",
        "2026-03-05",
        "VND",
    ]
    assert tt.find("TGia") is None
    ttin = tt.find("TTKhac/TTin")
    assert [ttin.findtext(n) for n in ("TTruong", "KDLieu", "DLieu")] == [
        "MaTraCuu",
        "string",
        "ABCDEFGH23",
    ]
    totals = root.find("DLHDon/NDHDon/TToan")
    assert totals.findtext("THTTLTSuat/LTSuat/ThTien") == "1500000"
    assert totals.findtext("THTTLTSuat/LTSuat/TThue") == "150000"
    assert totals.findtext("TgTTTBSo") == "1650000"
    assert totals.findtext("TgTTTBChu") == "Một triệu sáu trăm năm mươi nghìn đồng"
    dscks = root.find("DSCKS")
    assert dscks.find("NBan") is not None and len(dscks.find("NBan")) == 0


def test_build_xml_writes_the_exchange_rate_only_for_foreign_currency():
    doc = simple_document(currency="USD", exchange_rate=D("25400.50"))
    root = etree.fromstring(build_xml(doc))
    assert root.findtext("DLHDon/TTChung/DVTTe") == "USD"
    assert root.findtext("DLHDon/TTChung/TGia") == "25400.5"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("1500000"), "1500000"),
        (D("1.5E+6"), "1500000"),
        (D("2.50"), "2.5"),
        (D("0.100000"), "0.1"),
        (D("-3.000"), "-3"),
        (D("123456789012345678901.123456"), "123456789012345678901.123456"),
        (7, "7"),
    ],
)
def test_numbers_are_written_without_exponent_or_trailing_zeros(value, text):
    assert format_number(value) == text


def test_build_then_parse_gives_the_same_document():
    doc = base_document(12)
    doc.related_info = (
        "TCHDon=1\nKHMSHDCLQuan=1\nKHHDCLQuan=K26TAA\nSHDCLQuan=3\nNLHDCLQuan=2026-01-05"
    )
    parsed = parse_xml(build_xml(doc))
    assert parsed == doc


# --- parse_xml ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("sha1_v200.xml", "2.0.0"),
        ("v201_reordered_empty.xml", "2.0.1"),
        ("sha256_v210.xml", "2.1.0"),
    ],
)
def test_parse_reads_every_supported_version(name, version):
    doc = parse_xml(sample(name))
    assert doc.version == version
    assert doc.seller.tax_code == "0312345678"
    assert doc.total_amount == D(1904000)
    assert isinstance(doc.total_amount, D)


def test_parse_finds_reordered_and_empty_elements_by_name():
    reordered = parse_xml(sample("v201_reordered_empty.xml"))
    plain = parse_xml(sample("sha256_v210.xml"))
    assert reordered.lines == plain.lines
    assert reordered.summaries == plain.summaries
    assert reordered.buyer == plain.buyer
    assert reordered.seller == plain.seller
    assert reordered.issued_on == plain.issued_on
    assert reordered.buyer.phone == ""  # <SDThoai/> is empty, not missing
    assert reordered.lines[0].discount_rate is None  # <TLCKhau/>


def test_parse_normalises_strings_to_nfc():
    doc = parse_xml(sample("retail_buyer.xml"))
    assert "Nguye\u0302\u0303n".encode() in sample("retail_buyer.xml")
    assert doc.buyer.name == "Nguyễn Văn An"
    assert doc.buyer.tax_code == ""


def test_parse_reads_a_foreign_currency_invoice_with_decimals():
    doc = parse_xml(sample("usd.xml"))
    assert doc.currency == "USD"
    assert doc.exchange_rate == D(25400)
    assert doc.lines[0].unit_price == D("125.5")
    assert [s.rate for s in doc.summaries] == ["10%", "KHAC:5.26%"]
    assert doc.summaries[1].tax_amount == D("52.60")
    assert doc.total_amount == D("2709.19")


def test_parse_reads_lookup_code_and_related_invoice():
    doc = parse_xml(sample("sha256_v210.xml"))
    assert doc.lookup_code == "TEST000001"
    assert doc.data_id == "data-1"
    related = "TCHDon=2\nKHHDCLQuan=K26TAA\nSHDCLQuan=7\nGChu=Điều chỉnh giảm đơn giá"
    parsed = parse_xml(build_xml(simple_document(related_info=related)))
    assert related_fields(parsed.related_info) == {
        "TCHDon": "2",
        "KHHDCLQuan": "K26TAA",
        "SHDCLQuan": "7",
        "GChu": "Điều chỉnh giảm đơn giá",
    }


def _edit(xml: bytes, path: str, text: str | None) -> bytes:
    root = etree.fromstring(xml)
    el = root.find(path)
    if text is None:
        el.getparent().remove(el)
    else:
        el.text = text
    return etree.tostring(root)


@pytest.mark.parametrize(
    ("path", "text", "element"),
    [
        ("DLHDon/TTChung/SHDon", "12a", "TTChung/SHDon"),
        ("DLHDon/TTChung/SHDon", None, "TTChung/SHDon"),
        ("DLHDon/TTChung/NLap", "05/01/2026", "TTChung/NLap"),
        ("DLHDon/TTChung/PBan", "1.0.0", "TTChung/PBan"),
        ("DLHDon/NDHDon/NBan/MST", "", "NBan/MST"),
        ("DLHDon/NDHDon/DSHHDVu/HHDVu[2]/ThTien", "1,5", "DSHHDVu/HHDVu[2]/ThTien"),
        ("DLHDon/NDHDon/TToan/TgTTTBSo", "1e6", "TToan/TgTTTBSo"),
        ("DLHDon/NDHDon/TToan/TgTTTBSo", None, "TToan/TgTTTBSo"),
    ],
)
def test_parse_errors_name_the_element(path, text, element):
    with pytest.raises(InvoiceXmlError) as caught:
        parse_xml(_edit(build_xml(base_document(1)), path, text))
    assert caught.value.element == element
    assert element in str(caught.value)


def test_parse_refuses_a_document_that_is_not_an_invoice():
    with pytest.raises(InvoiceXmlError) as caught:
        parse_xml(b"<Other><X/></Other>")
    assert caught.value.element == "HDon"


def test_parse_refuses_malformed_xml():
    with pytest.raises(InvoiceXmlError, match="not well-formed"):
        parse_xml(sample("malformed.xml"))


def test_parse_refuses_a_billion_laughs_quickly():
    started = time.perf_counter()
    with pytest.raises(InvoiceXmlError, match="DTD or entities"):
        parse_xml(sample("bomb.xml"))
    # Expanded, the bomb is 3 GB; refusing it must not expand it.
    assert time.perf_counter() - started < 2


def test_parse_refuses_external_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE HDon [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<HDon><DLHDon><TTChung><PBan>&x;</PBan></TTChung></DLHDon></HDon>"
    ).encode()
    with pytest.raises(InvoiceXmlError) as caught:
        parse_xml(xml)
    assert "TOP-SECRET" not in str(caught.value)


def test_has_cqt_code_sees_a_filled_mccqt_only():
    assert has_cqt_code(sample("mccqt.xml"))
    assert not has_cqt_code(sample("sha256_v210.xml"))
    assert not has_cqt_code(b"<HDon><DLHDon/><MCCQT/></HDon>")


# --- totals -------------------------------------------------------------------------


def test_apply_totals_rounds_tax_half_up_to_whole_dong():
    doc = simple_document(
        lines=[
            Line(1, "A", quantity=D(1), unit_price=D(12345), vat_rate="8%"),  # 987.6 -> 988
            Line(2, "B", quantity=D(1), unit_price=D(10), vat_rate="5%"),  # 0.5 -> 1
            Line(3, "C", quantity=D(2), unit_price=D(30000), vat_rate="KCT"),
            Line(4, "D", quantity=D(1), unit_price=D(1000), discount_rate=D(10), vat_rate="10%"),
            Line(5, "Ghi chú", kind=4),
        ]
    )
    assert [line.amount for line in doc.lines] == [D(12345), D(10), D(60000), D(900), None]
    assert doc.summaries == [
        RateSummary("8%", D(12345), D(988)),
        RateSummary("5%", D(10), D(1)),
        RateSummary("KCT", D(60000), D(0)),
        RateSummary("10%", D(900), D(90)),
    ]
    assert doc.total_before_tax == D(73255)
    assert doc.total_tax == D(1079)
    assert doc.total_amount == D(74334)
    assert check_totals(doc) == []


def test_apply_totals_subtracts_trade_discount_lines_and_keeps_words_untouched():
    doc = base_document(1)
    doc.amount_in_words = ""
    apply_totals(doc)
    assert doc.total_before_tax == D(1800000)
    assert doc.total_discount == D(50000)
    assert doc.summaries[0] == RateSummary("10%", D(700000), D(70000))
    assert doc.total_amount == D(1904000)
    assert doc.amount_in_words == ""


def test_apply_totals_rounds_foreign_currency_to_cents():
    doc = simple_document(
        currency="USD",
        exchange_rate=D(25400),
        lines=[Line(1, "X", quantity=D(1), unit_price=D("999.99"), vat_rate="KHAC:5.26%")],
    )
    assert doc.summaries == [RateSummary("KHAC:5.26%", D("999.99"), D("52.60"))]
    assert doc.total_amount == D("1052.59")


def test_rate_fraction_reads_every_rate_form():
    assert rate_fraction("10%") == D("0.1")
    assert rate_fraction("0%") == 0
    assert rate_fraction("KHAC:5.26%") == D("0.0526")
    assert rate_fraction("KCT") is None and rate_fraction("KKKNT") is None
    with pytest.raises(ValueError):
        rate_fraction("ten")


def test_check_totals_names_the_element_and_fixes_nothing():
    doc = simple_document(lines=[Line(1, "A", quantity=D(1), unit_price=D(999000), vat_rate="10%")])
    doc.total_amount = D(1100000)
    before = deepcopy(doc)
    assert check_totals(doc) == ["TgTTTBSo: 1.100.000 khác tổng tính được 1.098.900"]
    assert doc == before


def test_check_totals_reports_rate_summaries_and_series_year():
    doc = simple_document(issued_on=date(2025, 12, 31))
    doc.summaries[0].taxable_amount = D(1400000)
    warnings = check_totals(doc)
    assert "LTSuat[10%]/ThTien: 1.400.000 khác tổng tính được 1.500.000" in warnings
    assert any(w.startswith("LTSuat[10%]/TThue") for w in warnings)
    assert any(w.startswith("KHHDon: năm 26") and "2025" in w for w in warnings)


def test_check_totals_accepts_the_samples():
    for name in ("sha256_v210.xml", "sha1_v200.xml", "usd.xml", "retail_buyer.xml"):
        assert check_totals(parse_xml(sample(name))) == [], name
