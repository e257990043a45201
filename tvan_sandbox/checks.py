"""What the tax authority checks in a message of invoice data (TDiep 203).

Two levels, as with the real authority: the envelope (answered at once in the 999) and each
invoice (answered later in the 204). Error codes are the sandbox's own except 20609 (a
duplicate invoice), which the authority uses; texts are in Vietnamese, as the authority's.
The totals checks accept what real, accepted invoices do (docs/domain.md, "The seller's
checks on the totals"): rates without tax with no rate row, form 2 without VAT, per-line
discounts repeated in TTCKTMai, adjustments of the tax alone.
"""

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from lxml import etree

from tvan_sandbox.verify import BadSignature, verify

MAX_BYTES = 2 * 1024 * 1024
TAX_CODE = re.compile(r"[0-9]{12}|[0-9]{10}(-[0-9]{3})?")
SERIES = re.compile(r"K[0-9]{2}[A-Z][A-Z0-9]{2}")
NUMBER = re.compile(r"[0-9]{1,8}")
AMOUNT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,6})?")
MESSAGE_CODE = re.compile(r"[A-Za-z0-9]{1,20}[0-9A-F]{32}")
VERSIONS = {"2.0.0", "2.0.1", "2.1.0"}
NO_TAX = {"KCT", "KKKNT"}


@dataclass
class Problem:
    code: str
    text: str
    hint: str = ""


@dataclass
class Invoice:
    """One HDon of the message, with what was found wrong with it."""

    element: object
    tax_code: str = ""
    form: int = 0
    series: str = ""
    number: int = 0
    issued: str = ""
    problems: list[Problem] = field(default_factory=list)

    @property
    def identity(self) -> tuple[str, int, str, int]:
        return (self.tax_code, self.form, self.series, self.number)


def local(element) -> str:
    return element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""


def child(parent, *path: str):
    node = parent
    for name in path:
        if node is None:
            return None
        node = next((c for c in node if local(c) == name), None)
    return node


def items(parent, *path: str) -> list:
    """The children of the element at path (none if it is missing)."""
    node = child(parent, *path)
    return list(node) if node is not None else []


def text(parent, *path: str) -> str:
    node = child(parent, *path)
    return (node.text or "").strip() if node is not None else ""


def parse(data: bytes):
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             remove_comments=False)  # fmt: skip
    return etree.fromstring(data, parser)


# --- the envelope: the 999 -----------------------------------------------------------------


def check_envelope(data: bytes) -> tuple[object | None, dict, list[Problem]]:
    """Return the parsed root, the header fields and the envelope's problems."""
    if len(data) > MAX_BYTES:
        return None, {}, [Problem("10010", "Thông điệp vượt quá 2 MB.")]
    try:
        root = parse(data)
    except etree.XMLSyntaxError as error:
        return None, {}, [Problem("10001", f"Thông điệp không đúng định dạng XML: {error}")]
    header = {name: text(root, "TTChung", name) for name in
              ("PBan", "MNGui", "MNNhan", "MLTDiep", "MTDiep", "MST", "SLuong")}  # fmt: skip
    problems = []
    if local(root) != "TDiep":
        problems.append(Problem("10002", "Thẻ gốc không phải TDiep."))
    for name, value in header.items():
        if not value:
            problems.append(Problem("10003", f"Thiếu thông tin bắt buộc TTChung/{name}."))
    if header["MLTDiep"] and header["MLTDiep"] != "203":
        problems.append(Problem("10004", f"Loại thông điệp {header['MLTDiep']} không phải 203."))
    code = header["MTDiep"]
    if code and (not MESSAGE_CODE.fullmatch(code) or not code.startswith(header["MNGui"])):
        problems.append(Problem("10005", "Mã thông điệp phải là mã người gửi và 32 ký tự hexa."))
    if header["MST"] and not TAX_CODE.fullmatch(header["MST"]):
        problems.append(Problem("10006", "Mã số thuế trong thông điệp không hợp lệ."))
    invoices = (
        [c for c in items(root, "DLieu") if local(c) == "HDon"] if local(root) == "TDiep" else []
    )
    if not invoices:
        problems.append(Problem("10007", "Thông điệp không có hóa đơn nào."))
    if header["SLuong"] and header["SLuong"] != str(len(invoices)):
        problems.append(Problem("10008", f"SLuong {header['SLuong']} khác số hóa đơn gửi "
                                         f"({len(invoices)})."))  # fmt: skip
    sellers = {text(h, "DLHDon", "NDHDon", "NBan", "MST") for h in invoices}
    if header["MST"] and sellers - {header["MST"]}:
        problems.append(Problem("10009", "Mỗi thông điệp chỉ chứa hóa đơn của một người nộp thuế."))
    return root, header, problems


def invoices_of(root) -> list[Invoice]:
    found = []
    for element in items(root, "DLieu"):
        if local(element) != "HDon":
            continue
        general = child(element, "DLHDon", "TTChung")
        form, number = text(general, "KHMSHDon"), text(general, "SHDon")
        found.append(Invoice(
            element=element,
            tax_code=text(element, "DLHDon", "NDHDon", "NBan", "MST"),
            form=int(form) if form.isdigit() else 0,
            series=text(general, "KHHDon"),
            number=int(number) if number.isdigit() else 0,
            issued=text(general, "NLap"),
        ))  # fmt: skip
    return found


# --- each invoice: the 204 -----------------------------------------------------------------


def check_invoice(invoice: Invoice) -> None:
    """Fill invoice.problems with everything the authority would find wrong."""
    hdon = invoice.element
    data = child(hdon, "DLHDon")
    general = child(data, "TTChung")
    add = invoice.problems.append
    for path in (("TTChung", "PBan"), ("TTChung", "KHMSHDon"), ("TTChung", "KHHDon"),
                 ("TTChung", "SHDon"), ("TTChung", "NLap"), ("TTChung", "DVTTe"),
                 ("NDHDon", "NBan", "Ten"), ("NDHDon", "NBan", "MST"),
                 ("NDHDon", "TToan", "TgTTTBSo")):  # fmt: skip
        if not text(data, *path):
            add(Problem("20101", f"Thiếu thông tin bắt buộc {'/'.join(path)}.",
                        "Bổ sung thông tin còn thiếu và lập hóa đơn thay thế."))  # fmt: skip
    if text(general, "PBan") and text(general, "PBan") not in VERSIONS:
        add(Problem("20102", f"Phiên bản {text(general, 'PBan')} không được hỗ trợ."))
    if text(general, "KHMSHDon") and text(general, "KHMSHDon") not in "1234567":
        add(Problem("20102", "Ký hiệu mẫu số hóa đơn phải là một chữ số từ 1 đến 7."))
    if invoice.tax_code and not TAX_CODE.fullmatch(invoice.tax_code):
        add(Problem("20103", f"Mã số thuế người bán {invoice.tax_code} không hợp lệ.",
                    "Mã số thuế gồm 10 chữ số, 10 chữ số-3 chữ số, hoặc 12 chữ số."))  # fmt: skip
    series = invoice.series
    if series and series.startswith("C"):
        add(Problem("20110", "Hóa đơn có mã của cơ quan thuế không gửi theo thông điệp 203."))
    elif series and not SERIES.fullmatch(series):
        add(Problem("20104", f"Ký hiệu hóa đơn {series} không đúng quy định.",
                    "Ký hiệu gồm 6 ký tự, ví dụ K26TAA."))  # fmt: skip
    elif series and invoice.issued[2:4] != series[1:3]:
        add(Problem("20104", f"Năm trong ký hiệu {series} khác năm lập hóa đơn {invoice.issued[:4]}.",
                    "Dùng ký hiệu của năm lập hóa đơn."))  # fmt: skip
    number = text(general, "SHDon")
    if number and (not NUMBER.fullmatch(number) or int(number) == 0):
        add(Problem("20105", f"Số hóa đơn {number} không hợp lệ (tối đa 8 chữ số, khác 0)."))
    try:
        date.fromisoformat(invoice.issued)
    except ValueError:
        if invoice.issued:
            add(Problem("20102", f"Ngày lập {invoice.issued} không đúng định dạng YYYY-MM-DD."))
    if any(local(e) == "MCCQT" and (e.text or "").strip() for e in hdon.iter()):
        add(Problem("20110", "Hóa đơn không mã không được mang mã của cơ quan thuế."))
    _check_totals(invoice, data)
    try:
        signer = verify(etree.tostring(hdon))
    except BadSignature as error:
        add(Problem(error.code, error.text, "Ký lại hóa đơn bằng chứng thư số của người bán."))
    else:
        if invoice.tax_code and signer != invoice.tax_code:
            add(Problem("20107", f"Chứng thư số thuộc mã số thuế {signer}, không phải của "
                                 f"người bán {invoice.tax_code}.",
                        "Ký hóa đơn bằng chứng thư số của chính người bán."))  # fmt: skip


def _amount(parent, *path: str) -> Decimal | None:
    value = text(parent, *path)
    if not value:
        return None
    if not AMOUNT.fullmatch(value):
        raise ValueError("/".join(path))
    return Decimal(value)


def _check_totals(invoice: Invoice, data) -> None:
    add = invoice.problems.append
    content = child(data, "NDHDon")
    totals = child(content, "TToan")
    adjusting = child(data, "TTChung", "TTHDLQuan") is not None
    try:
        lines = []
        for line in items(content, "DSHHDVu"):
            if local(line) != "HHDVu":
                continue
            lines.append((text(line, "TChat") or "1", text(line, "TSuat").upper(),
                          _amount(line, "ThTien") or Decimal(0),
                          _amount(line, "STCKhau") or Decimal(0)))  # fmt: skip
        before_tax = _amount(totals, "TgTCThue")
        tax = _amount(totals, "TgTThue")
        discount = _amount(totals, "TTCKTMai") or Decimal(0)
        total = _amount(totals, "TgTTTBSo")
        rows = []
        for row in items(totals, "THTTLTSuat"):
            if local(row) == "LTSuat":
                rows.append((text(row, "TSuat").upper(), _amount(row, "ThTien") or Decimal(0),
                             _amount(row, "TThue") or Decimal(0)))  # fmt: skip
    except ValueError as error:
        add(
            Problem("20102", f"Số tiền {error} không đúng kiểu số (dấu chấm trước phần thập phân).")
        )
        return
    goods = sum((amount for kind, _rate, amount, _d in lines if kind == "1"), Decimal(0))
    trade = sum((amount for kind, _rate, amount, _d in lines if kind == "3"), Decimal(0))
    line_discounts = sum((d for _k, _r, _a, d in lines), Decimal(0))
    for rate, taxable, row_tax in rows:
        summed = sum((a if k == "1" else -a for k, r, a, _d in lines
                      if r == rate and k in ("1", "3")), Decimal(0))  # fmt: skip
        if lines and abs(summed - taxable) > 1 and not adjusting:
            add(Problem("20108", f"Tổng tiền thuế suất {rate} ({taxable}) khác tổng các dòng "
                                 f"({summed}).", "Kiểm tra lại tiền từng dòng hàng."))  # fmt: skip
        fraction = _fraction(rate)
        if (
            fraction is not None
            and not adjusting
            and abs(taxable * fraction - row_tax) > max(1, len(lines))
        ):
            add(Problem("20108", f"Tiền thuế suất {rate} ({row_tax}) khác thành tiền × thuế suất.",
                        "Kiểm tra lại tiền thuế."))  # fmt: skip
    if total is None:
        return
    # Either convention: TTCKTMai subtracted, or (lines net of their own discounts, or a
    # trade-discount line) only repeated for information.
    base = before_tax if before_tax is not None else goods - trade
    tax = tax if tax is not None else sum((t for _r, _a, t in rows), Decimal(0))
    fees = _amount(totals, "DSLPhi", "LPhi", "TTLPhi") or Decimal(0)
    candidates = [base + tax - discount + fees, base + tax + fees]
    if discount and line_discounts and abs(discount - line_discounts) <= 1:
        candidates.append(base + tax + fees)
    if not any(abs(total - value) <= 1 for value in candidates) and not adjusting:
        add(Problem("20108", f"Tổng tiền thanh toán {total} khác tổng tiền hàng, thuế và "
                             f"chiết khấu ({candidates[0]}).",
                    "Kiểm tra lại các tổng tiền của hóa đơn."))  # fmt: skip


def _fraction(rate: str) -> Decimal | None:
    if rate in NO_TAX or not rate:
        return None
    value = rate.removeprefix("KHAC:").rstrip("%")
    try:
        return Decimal(value) / 100
    except InvalidOperation:
        return None
