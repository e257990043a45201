"""Write and read the tax authority's invoice XML (HDon) as a Document.

`build_xml` writes an unsigned HDon; `parse_xml` reads one, signed or not, from any of
the versions real producers write (2.0.0, 2.0.1, 2.1.0). Elements are found by name, not
position, and empty elements count as missing. `has_cqt_code(data)` says whether the file
carries the tax authority's code (MCCQT), which no-code invoices never do.

Errors are `InvoiceXmlError`: `message` is an English template (a gettext msgid),
`params` fill it, `element` names the element at fault; `str(error)` is the filled text.
"""

from __future__ import annotations

import io
import re
from contextvars import ContextVar
from datetime import date
from decimal import Decimal, InvalidOperation

import defusedxml.ElementTree
from defusedxml import DefusedXmlException
from lxml import etree

from portal.einvoice.document import Document, Line, Party, RateSummary
from portal.text import fold, nfc

VERSIONS = ("2.0.0", "2.0.1", "2.1.0")
LOOKUP_FIELD = "MaTraCuu"
# Names producers give the lookup code in TTKhac, folded to compare (case and accents aside).
LOOKUP_FIELDS = {"matracuu", "matracuuhd", "matracuuhoadon", "masobimat", "mabimat"}
# Keys of TTHDLQuan, kept in Document.related_info as "key=value" lines.
RELATED_FIELDS = (
    "TCHDon",
    "LHDCLQuan",
    "KHMSHDCLQuan",
    "KHHDCLQuan",
    "SHDCLQuan",
    "NLHDCLQuan",
    "GChu",
)
MAX_XML_BYTES = 5 * 1024 * 1024
# "1500000,5" or "1.500.000,50": a number written the Vietnamese way, not the schema's decimal.
DECIMAL_COMMA = re.compile(r"-?[0-9.]*[0-9],[0-9]+")


class InvoiceXmlError(ValueError):
    """The XML is not an invoice this portal can read; names the element at fault."""

    def __init__(self, message: str, element: str | None = None, params: dict | None = None):
        self.message = message
        self.element = element
        self.params = dict(params or {})
        if element is not None:
            self.params.setdefault("element", element)
        super().__init__(message % self.params if self.params else message)
        # Every problem found in the file (this one first), and the document as far as it
        # could be read, so that a caller can name every other reason too.
        self.problems: list[InvoiceXmlError] = [self]
        self.document: Document | None = None


# The problems found so far by the parse in progress: a value that is not a number, a date
# or a whole number is noted there and parsing goes on, so every such value is named.
_problems: ContextVar[list[InvoiceXmlError] | None] = ContextVar("problems", default=None)


def _note(error: InvoiceXmlError) -> None:
    """Note a problem with one value and go on, or raise it when nothing is collecting."""
    problems = _problems.get()
    if problems is None:
        raise error
    problems.append(error)


# --- safe parsing -------------------------------------------------------------------


def _parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not thread-safe.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        remove_comments=False,
    )


def safe_parse(data: bytes) -> etree._ElementTree:
    """Parse XML bytes refusing DTDs, entities and oversized input; keep every byte's meaning."""
    if not isinstance(data, bytes | bytearray):
        raise InvoiceXmlError("The file is not XML bytes.")
    if len(data) > MAX_XML_BYTES:
        raise InvoiceXmlError(
            "The file is larger than %(limit)s MB.", params={"limit": MAX_XML_BYTES // 1048576}
        )
    # defusedxml's expat pass stops at the first DOCTYPE, so a billion-laughs file is
    # refused before any parser could expand it.
    try:
        defusedxml.ElementTree.parse(
            io.BytesIO(data), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise InvoiceXmlError(
            "The file declares a DTD or entities, which invoices never do (refused for safety)."
        ) from exc
    except defusedxml.ElementTree.ParseError as exc:
        raise InvoiceXmlError(
            "The file is not well-formed XML: %(detail)s", params={"detail": str(exc)}
        ) from exc
    try:
        tree = etree.parse(io.BytesIO(bytes(data)), _parser())
    except etree.XMLSyntaxError as exc:
        raise InvoiceXmlError(
            "The file is not well-formed XML: %(detail)s", params={"detail": str(exc)}
        ) from exc
    if tree.docinfo.doctype:
        raise InvoiceXmlError(
            "The file declares a DTD or entities, which invoices never do (refused for safety)."
        )
    return tree


# --- reading helpers ----------------------------------------------------------------


def _local(el) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""  # comments and processing instructions
    return tag.rsplit("}", 1)[-1]


def _child(parent, name: str):
    """Return the first child element named `name` (any namespace), or None."""
    if parent is None:
        return None
    for child in parent:
        if _local(child) == name:
            return child
    return None


def _children(parent, name: str) -> list:
    if parent is None:
        return []
    return [child for child in parent if _local(child) == name]


def _text(parent, name: str, path: str) -> str:
    el = _child(parent, name)
    if el is None or el.text is None:
        return ""
    return nfc(el.text.strip())


def _required(parent, name: str, path: str) -> str:
    value = _text(parent, name, path)
    if not value:
        raise InvoiceXmlError("%(element)s is missing or empty.", element=path)
    return value


def _decimal(parent, name: str, path: str) -> Decimal | None:
    raw = _text(parent, name, path)
    if not raw:
        return None
    if DECIMAL_COMMA.fullmatch(raw):
        _note(
            InvoiceXmlError(
                "%(element)s: %(value)s is written with a decimal comma; invoice XML writes "
                "numbers with a point and no thousands separator (e.g. 1500000.5).",
                element=path,
                params={"value": raw[:40]},
            )
        )
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or "e" in raw.lower():
        _note(
            InvoiceXmlError(
                "%(element)s: %(value)s is not a number.", element=path, params={"value": raw[:40]}
            )
        )
        return None
    return value


def _int(parent, name: str, path: str, required: bool = False) -> int | None:
    raw = _required(parent, name, path) if required else _text(parent, name, path)
    if not raw:
        return None
    if not raw.isdigit():
        error = InvoiceXmlError(
            "%(element)s: %(value)s is not a whole number.",
            element=path,
            params={"value": raw[:40]},
        )
        if required:
            raise error  # the invoice's identity: nothing else can be read without it
        _note(error)
        return None
    return int(raw)


def _date(parent, name: str, path: str) -> date:
    raw = _required(parent, name, path)
    try:
        # Some producers append a time; the date is what counts.
        return date.fromisoformat(raw[:10])
    except ValueError:
        _note(
            InvoiceXmlError(
                "%(element)s: %(value)s is not a date (YYYY-MM-DD).",
                element=path,
                params={"value": raw[:40]},
            )
        )
        return date.min


def _zero(value: Decimal | None) -> Decimal:
    return Decimal(0) if value is None else value


def _fold_key(text: str) -> str:
    return "".join(ch for ch in fold(text) if ch.isalnum())


# --- parse ---------------------------------------------------------------------------


def find_invoice(root) -> etree._Element:
    """Return the HDon element: the root, or the single HDon inside a wrapper."""
    if _local(root) == "HDon":
        return root
    found = [el for el in root.iter() if _local(el) == "HDon"]
    if _local(root) == "TDiep" and len(found) != 1:
        # A message to or from the tax authority: its invoices are signed one by one, and
        # an invoice is stored as the exact bytes it was signed as (docs/decisions.md).
        kind = next((el.text or "" for el in root.iter() if _local(el) == "MLTDiep"), "")
        kind = kind.strip()[:10] or "?"
        if not found:
            raise InvoiceXmlError(
                "The file is a message to or from the tax authority (TDiep, type %(type)s) "
                "that holds no invoice; import the invoice's own XML file (HDon).",
                element="TDiep",
                params={"type": kind},
            )
        raise InvoiceXmlError(
            "The file is a message to the tax authority (TDiep, type %(type)s) holding "
            "%(count)s invoices; import each invoice's own XML file (HDon), or a ZIP of them.",
            element="TDiep",
            params={"type": kind, "count": len(found)},
        )
    if len(found) != 1:
        raise InvoiceXmlError(
            "The root element is %(value)s, not HDon.",
            element="HDon",
            params={"value": _local(root)},
        )
    return found[0]


def has_cqt_code(data: bytes | etree._Element) -> bool:
    """Tell whether the invoice carries a non-empty MCCQT (a tax-authority code)."""
    root = safe_parse(data).getroot() if isinstance(data, bytes | bytearray) else data
    return any(_local(el) == "MCCQT" and (el.text or "").strip() for el in root.iter())


def parse_xml(data: bytes) -> Document:
    """Read an HDon (signed or not) into a Document."""
    root = safe_parse(data).getroot()
    return parse_tree(root)


def parse_tree(root) -> Document:
    """Read an already safely parsed HDon tree into a Document.

    A value that cannot be read (a number, a date) does not stop the reading: every such
    value is named in the error's `problems`, and its `document` holds the rest.
    """
    problems: list[InvoiceXmlError] = []
    token = _problems.set(problems)
    try:
        doc = _parse_invoice(root)
    except InvoiceXmlError as fatal:
        # What stopped the reading comes after the values already found wrong.
        fatal.problems = [*problems, fatal]
        raise
    finally:
        _problems.reset(token)
    if problems:
        error = problems[0]
        error.problems = problems
        error.document = doc
        raise error
    return doc


def _parse_invoice(root) -> Document:
    hdon = find_invoice(root)
    dl = _child(hdon, "DLHDon")
    if dl is None:
        raise InvoiceXmlError("%(element)s is missing or empty.", element="HDon/DLHDon")
    tt = _child(dl, "TTChung")
    if tt is None:
        raise InvoiceXmlError("%(element)s is missing or empty.", element="DLHDon/TTChung")
    nd = _child(dl, "NDHDon")
    if nd is None:
        raise InvoiceXmlError("%(element)s is missing or empty.", element="DLHDon/NDHDon")

    version = _required(tt, "PBan", "TTChung/PBan")
    if version not in VERSIONS:
        raise InvoiceXmlError(
            "%(element)s: version %(value)s is not supported (2.0.0, 2.0.1, 2.1.0).",
            element="TTChung/PBan",
            params={"value": version[:20]},
        )
    form = _int(tt, "KHMSHDon", "TTChung/KHMSHDon", required=True)
    series = _required(tt, "KHHDon", "TTChung/KHHDon").upper()
    if len(series) != 6:
        raise InvoiceXmlError(
            "%(element)s: %(value)s is not a six-character series.",
            element="TTChung/KHHDon",
            params={"value": series[:20]},
        )
    number = _int(tt, "SHDon", "TTChung/SHDon", required=True)
    if number > 99_999_999:
        raise InvoiceXmlError(
            "%(element)s: %(value)s has more than 8 digits.",
            element="TTChung/SHDon",
            params={"value": str(number)},
        )
    currency = (_text(tt, "DVTTe", "TTChung/DVTTe") or "VND").upper()

    doc = Document(
        form=form,
        series=series,
        number=number,
        issued_on=_date(tt, "NLap", "TTChung/NLap"),
        seller=_party(_child(nd, "NBan"), "NBan", required=True),
        buyer=_party(_child(nd, "NMua"), "NMua", required=False),
        version=version,
        title=_text(tt, "THDon", "TTChung/THDon"),
        currency=currency,
        exchange_rate=_decimal(tt, "TGia", "TTChung/TGia"),
        payment_method=_text(tt, "HTTToan", "TTChung/HTTToan"),
        data_id=dl.get("Id") or "",
    )
    doc.related_info = _related(_child(tt, "TTHDLQuan"))
    doc.lookup_code = _lookup_code(dl)
    doc.lines = [_line(el, i) for i, el in enumerate(_children(_child(nd, "DSHHDVu"), "HHDVu"), 1)]

    tt_el = _child(nd, "TToan")
    rates = _child(tt_el, "THTTLTSuat")
    for i, el in enumerate(_children(rates, "LTSuat"), 1):
        path = f"TToan/THTTLTSuat/LTSuat[{i}]"
        doc.summaries.append(
            RateSummary(
                rate=_text(el, "TSuat", path + "/TSuat"),
                taxable_amount=_zero(_decimal(el, "ThTien", path + "/ThTien")),
                tax_amount=_zero(_decimal(el, "TThue", path + "/TThue")),
            )
        )
    doc.total_before_tax = _zero(_decimal(tt_el, "TgTCThue", "TToan/TgTCThue"))
    doc.total_tax = _zero(_decimal(tt_el, "TgTThue", "TToan/TgTThue"))
    doc.total_discount = _zero(_decimal(tt_el, "TTCKTMai", "TToan/TTCKTMai"))
    fees = Decimal(0)
    for i, el in enumerate(_children(_child(tt_el, "DSLPhi"), "LPhi"), 1):
        fees += _zero(_decimal(el, "TPhi", f"TToan/DSLPhi/LPhi[{i}]/TPhi"))
    doc.total_fees = fees
    if not _text(tt_el, "TgTTTBSo", "TToan/TgTTTBSo"):
        raise InvoiceXmlError("%(element)s is missing or empty.", element="TToan/TgTTTBSo")
    doc.total_amount = _zero(_decimal(tt_el, "TgTTTBSo", "TToan/TgTTTBSo"))
    # Kept verbatim: the issuer's wording is what the buyer saw (docs/domain.md).
    doc.amount_in_words = _text(tt_el, "TgTTTBChu", "TToan/TgTTTBChu")
    return doc


def _party(el, path: str, required: bool) -> Party:
    if el is None:
        if required:
            raise InvoiceXmlError("%(element)s is missing or empty.", element=f"NDHDon/{path}")
        return Party()
    party = Party(
        name=_text(el, "Ten", f"{path}/Ten"),
        tax_code=_text(el, "MST", f"{path}/MST"),
        address=_text(el, "DChi", f"{path}/DChi"),
        phone=_text(el, "SDThoai", f"{path}/SDThoai"),
        email=_text(el, "DCTDTu", f"{path}/DCTDTu"),
        bank_account=_text(el, "STKNHang", f"{path}/STKNHang"),
        bank_name=_text(el, "TNHang", f"{path}/TNHang"),
        person=_text(el, "HVTNMHang", f"{path}/HVTNMHang"),
        code=_text(el, "MKHang", f"{path}/MKHang"),
    )
    if required:
        _required(el, "Ten", f"{path}/Ten")
        _required(el, "MST", f"{path}/MST")
    return party


def _line(el, index: int) -> Line:
    path = f"DSHHDVu/HHDVu[{index}]"
    kind = _int(el, "TChat", path + "/TChat") or 1
    return Line(
        position=_int(el, "STT", path + "/STT") or index,
        name=_text(el, "THHDVu", path + "/THHDVu"),
        kind=kind,
        code=_text(el, "MHHDVu", path + "/MHHDVu"),
        unit=_text(el, "DVTinh", path + "/DVTinh"),
        quantity=_decimal(el, "SLuong", path + "/SLuong"),
        unit_price=_decimal(el, "DGia", path + "/DGia"),
        discount_rate=_decimal(el, "TLCKhau", path + "/TLCKhau"),
        discount_amount=_decimal(el, "STCKhau", path + "/STCKhau"),
        amount=_decimal(el, "ThTien", path + "/ThTien"),
        vat_rate=_text(el, "TSuat", path + "/TSuat"),
    )


def _related(el) -> str:
    if el is None:
        return ""
    pairs = []
    for child in el:
        name = _local(child)
        value = " ".join(nfc(child.text or "").split())
        if name and value:
            pairs.append(f"{name}={value}")
    return "\n".join(pairs)


def related_fields(related_info: str) -> dict[str, str]:
    """Split Document.related_info ("key=value" lines) into a dict of TTHDLQuan fields."""
    fields = {}
    for line in related_info.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


def _lookup_code(dl) -> str:
    # The lookup code sits in TTChung/TTKhac for most producers, elsewhere for some.
    for ttin in (el for el in dl.iter() if _local(el) == "TTin"):
        key = _fold_key(_text(ttin, "TTruong", "TTin/TTruong"))
        value = _text(ttin, "DLieu", "TTin/DLieu")
        if key in LOOKUP_FIELDS and value:
            return value
    return ""


# --- build ---------------------------------------------------------------------------


def format_number(value: Decimal | int | None) -> str:
    """Write a number without exponent and without trailing zeros: 1500000, 2.5, -3."""
    if value is None:
        return ""
    value = Decimal(value)
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    text = format(value.normalize(), "f")
    return text


def _add(parent, name: str, value=None, keep_empty: bool = False):
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        value = format_number(value)
    if value in (None, "") and not keep_empty:
        return None
    el = etree.SubElement(parent, name)
    if value not in (None, ""):
        el.text = nfc(str(value))
    return el


def build_xml(doc: Document) -> bytes:
    """Write the unsigned HDon of a document, ready for `sign_xml`."""
    hdon = etree.Element("HDon")
    dl = etree.SubElement(hdon, "DLHDon", Id=doc.data_id or "data")

    tt = etree.SubElement(dl, "TTChung")
    _add(tt, "PBan", doc.version)
    _add(tt, "THDon", doc.title)
    _add(tt, "KHMSHDon", doc.form)
    _add(tt, "KHHDon", doc.series)
    _add(tt, "SHDon", doc.number)
    _add(tt, "NLap", doc.issued_on.isoformat())
    _add(tt, "DVTTe", doc.currency or "VND")
    if (doc.currency or "VND").upper() != "VND":
        _add(tt, "TGia", doc.exchange_rate)
    _add(tt, "HTTToan", doc.payment_method)
    related = related_fields(doc.related_info)
    if related:
        rel = etree.SubElement(tt, "TTHDLQuan")
        for key in RELATED_FIELDS:
            _add(rel, key, related.get(key))
    if doc.lookup_code:
        ttkhac = etree.SubElement(tt, "TTKhac")
        ttin = etree.SubElement(ttkhac, "TTin")
        _add(ttin, "TTruong", LOOKUP_FIELD)
        _add(ttin, "KDLieu", "string")
        _add(ttin, "DLieu", doc.lookup_code)

    nd = etree.SubElement(dl, "NDHDon")
    seller = etree.SubElement(nd, "NBan")
    _add(seller, "Ten", doc.seller.name, keep_empty=True)
    _add(seller, "MST", doc.seller.tax_code, keep_empty=True)
    _add(seller, "DChi", doc.seller.address, keep_empty=True)
    _add(seller, "SDThoai", doc.seller.phone)
    _add(seller, "DCTDTu", doc.seller.email)
    _add(seller, "STKNHang", doc.seller.bank_account)
    _add(seller, "TNHang", doc.seller.bank_name)

    buyer = etree.SubElement(nd, "NMua")
    _add(buyer, "Ten", doc.buyer.name, keep_empty=True)
    _add(buyer, "MST", doc.buyer.tax_code)
    _add(buyer, "DChi", doc.buyer.address, keep_empty=True)
    _add(buyer, "MKHang", doc.buyer.code)
    _add(buyer, "SDThoai", doc.buyer.phone)
    _add(buyer, "DCTDTu", doc.buyer.email)
    _add(buyer, "HVTNMHang", doc.buyer.person)
    _add(buyer, "STKNHang", doc.buyer.bank_account)
    _add(buyer, "TNHang", doc.buyer.bank_name)

    items = etree.SubElement(nd, "DSHHDVu")
    for line in doc.lines:
        el = etree.SubElement(items, "HHDVu")
        _add(el, "TChat", line.kind)
        _add(el, "STT", line.position)
        _add(el, "MHHDVu", line.code)
        _add(el, "THHDVu", line.name, keep_empty=True)
        _add(el, "DVTinh", line.unit)
        _add(el, "SLuong", line.quantity)
        _add(el, "DGia", line.unit_price)
        _add(el, "TLCKhau", line.discount_rate)
        _add(el, "STCKhau", line.discount_amount)
        _add(el, "ThTien", line.amount)
        _add(el, "TSuat", line.vat_rate)

    totals = etree.SubElement(nd, "TToan")
    rates = etree.SubElement(totals, "THTTLTSuat")
    for summary in doc.summaries:
        el = etree.SubElement(rates, "LTSuat")
        _add(el, "TSuat", summary.rate)
        _add(el, "ThTien", summary.taxable_amount, keep_empty=True)
        _add(el, "TThue", summary.tax_amount, keep_empty=True)
    _add(totals, "TgTCThue", doc.total_before_tax, keep_empty=True)
    _add(totals, "TgTThue", doc.total_tax, keep_empty=True)
    if doc.total_fees:
        fees = etree.SubElement(totals, "DSLPhi")
        fee = etree.SubElement(fees, "LPhi")
        _add(fee, "TLPhi", "Phí")
        _add(fee, "TPhi", doc.total_fees)
    _add(totals, "TTCKTMai", doc.total_discount, keep_empty=True)
    _add(totals, "TgTTTBSo", doc.total_amount, keep_empty=True)
    _add(totals, "TgTTTBChu", doc.amount_in_words, keep_empty=True)

    dscks = etree.SubElement(hdon, "DSCKS")
    etree.SubElement(dscks, "NBan")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(hdon, encoding="UTF-8")
