"""Compute the totals of invoices we issue, and check the totals of invoices we import.

Conventions (docs/domain.md, "The seller's checks on the totals"): goods lines (TChat 1)
add up per rate; trade-discount lines (TChat 3) lower their rate's taxable amount and add
up to TTCKTMai; promotions (2) and notes (4) count for nothing. TgTCThue is the goods total before the trade discount, so
TgTCThue + TgTThue - TTCKTMai + fees = TgTTTBSo.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from portal.einvoice.document import Document, Line, RateSummary
from portal.einvoice.xml import related_fields

GOODS, PROMOTION, DISCOUNT, NOTE = 1, 2, 3, 4
NO_TAX = ("KCT", "KKKNT")


def rate_fraction(rate: str) -> Decimal | None:
    """Return the tax fraction of a TSuat ("10%" -> 0.1, "KHAC:5.26%" -> 0.0526), None if no tax."""
    text = (rate or "").strip().upper()
    if text in NO_TAX:
        return None
    if text.startswith("KHAC:"):
        text = text[5:]
    if not text.endswith("%"):
        raise ValueError(f"not a VAT rate: {rate!r}")
    try:
        value = Decimal(text[:-1])
    except InvalidOperation:
        raise ValueError(f"not a VAT rate: {rate!r}") from None
    if not value.is_finite() or value < 0 or value > 100:
        raise ValueError(f"not a VAT rate: {rate!r}")
    return value / 100


def quantum(currency: str) -> Decimal:
    """Return the rounding step: whole đồng for VND, cents otherwise."""
    return Decimal(1) if (currency or "VND").upper() == "VND" else Decimal("0.01")


def round_money(value: Decimal, currency: str) -> Decimal:
    return value.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def vn_number(value: Decimal) -> str:
    """Format a number Vietnamese style for a warning: 1.100.000 or 12,5."""
    value = Decimal(value)
    places = (
        0 if value == value.to_integral_value() else max(0, -value.normalize().as_tuple().exponent)
    )
    text = f"{abs(value):,.{places}f}".replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return ("-" if value < 0 else "") + text


def line_discount(line: Line, currency: str) -> Decimal:
    """The line's own discount: STCKhau, else TLCKhau percent of quantity × unit price."""
    if line.discount_amount is not None:
        return line.discount_amount
    if line.discount_rate and line.quantity is not None and line.unit_price is not None:
        return round_money(line.quantity * line.unit_price * line.discount_rate / 100, currency)
    return Decimal(0)


def line_amount(line: Line, currency: str) -> Decimal | None:
    """Return quantity × unit price − discount, or None when the line has no price."""
    if line.quantity is None or line.unit_price is None:
        return None
    return round_money(line.quantity * line.unit_price - line_discount(line, currency), currency)


def _by_rate(doc: Document) -> dict[str, tuple[Decimal, Decimal, int]]:
    """Return, per rate in order of appearance: goods sum, discount sum, line count."""
    sums: dict[str, tuple[Decimal, Decimal, int]] = {}
    for line in doc.lines:
        if line.kind not in (GOODS, DISCOUNT) or line.amount is None:
            continue
        goods, discount, count = sums.get(line.vat_rate, (Decimal(0), Decimal(0), 0))
        if line.kind == GOODS:
            goods += line.amount
        else:
            discount += line.amount
        sums[line.vat_rate] = (goods, discount, count + 1)
    return sums


def apply_totals(doc: Document) -> None:
    """Fill line amounts, per-rate summaries and totals of a document we issue."""
    for line in doc.lines:
        if line.amount is None and line.kind in (GOODS, DISCOUNT):
            line.amount = line_amount(line, doc.currency)
    summaries = []
    for rate, (goods, discount, _count) in _by_rate(doc).items():
        taxable = goods - discount
        fraction = rate_fraction(rate)
        tax = Decimal(0) if fraction is None else round_money(taxable * fraction, doc.currency)
        summaries.append(RateSummary(rate=rate, taxable_amount=taxable, tax_amount=tax))
    doc.summaries = summaries
    doc.total_before_tax = sum(
        (line.amount for line in doc.lines if line.kind == GOODS and line.amount is not None),
        Decimal(0),
    )
    doc.total_discount = sum(
        (line.amount for line in doc.lines if line.kind == DISCOUNT and line.amount is not None),
        Decimal(0),
    )
    doc.total_tax = sum((s.tax_amount for s in summaries), Decimal(0))
    doc.total_amount = (
        doc.total_before_tax + doc.total_tax - doc.total_discount + (doc.total_fees or 0)
    )


def _line_discounts(doc: Document) -> Decimal:
    """The per-line discounts (STCKhau, or TLCKhau of the gross) of the goods lines."""
    goods = (line for line in doc.lines if line.kind == GOODS)
    return sum((line_discount(line, doc.currency) for line in goods), Decimal(0))


def _adjusting(doc: Document) -> bool:
    return related_fields(doc.related_info).get("TCHDon") == "2"


class TotalsWarning(str):
    """One failed check: a code and its values, stored as such and worded by the reader's UI.

    As a string it is the Vietnamese sentence (logs, the command line, older rows).
    """

    code: str
    params: dict[str, str]

    def __new__(cls, code: str, text: str, **params: str):
        warning = super().__new__(cls, text)
        warning.code, warning.params = code, params
        return warning


def check_totals(doc: Document) -> list[TotalsWarning]:
    """Return the seller's checks that fail, in Vietnamese, each naming its element.

    Real invoices the authority accepted that look odd get no warning (docs/domain.md,
    "The seller's checks on the totals"): lines at KCT/KKKNT without a rate row; form 2,
    which carries no VAT; a TTCKTMai that repeats the per-line discounts of net lines; an
    adjusting invoice that changes only the tax.
    """
    warnings: list[TotalsWarning] = []
    step = quantum(doc.currency)
    no_vat = doc.form == 2  # a sales invoice: no rates, no rate rows, maybe no VAT totals

    def differs(stated: Decimal, computed: Decimal, element: str, tolerance: Decimal = step / 2):
        if abs(stated - computed) > tolerance:
            found, total = vn_number(stated), vn_number(computed)
            warnings.append(TotalsWarning("differs", f"{element}: {found} khác tổng tính được "
                                          f"{total}", element=element, found=found, computed=total))  # fmt: skip

    sums = _by_rate(doc)
    stated = {s.rate: s for s in doc.summaries}
    for rate, (goods, discount, _count) in sums.items():
        summary = stated.get(rate)
        if summary is None and (no_vat or rate.strip().upper() in NO_TAX):
            continue
        if summary is None:
            warnings.append(TotalsWarning("no_rate_row", "LTSuat: thiếu dòng tổng hợp cho thuế "
                                          f"suất {rate or '(trống)'}", rate=rate))  # fmt: skip
            continue
        # Producers differ on whether a trade discount lowers its rate's ThTien.
        if summary.taxable_amount not in (goods - discount, goods):
            differs(summary.taxable_amount, goods - discount, f"LTSuat[{rate}]/ThTien")
    for summary in doc.summaries:
        if summary.rate not in sums and summary.taxable_amount:
            found = vn_number(summary.taxable_amount)
            warnings.append(TotalsWarning("rate_row_without_lines", f"LTSuat[{summary.rate}]/ThTien:"
                                          f" {found} không có dòng hàng hóa nào cùng thuế suất",
                                          rate=summary.rate, found=found))  # fmt: skip
        try:
            fraction = rate_fraction(summary.rate)
        except ValueError:
            warnings.append(TotalsWarning("bad_rate", f"LTSuat/TSuat: thuế suất {summary.rate!r} "
                                          "không hợp lệ", rate=summary.rate))  # fmt: skip
            continue
        if _adjusting(doc) and not summary.taxable_amount:
            continue  # an adjustment of the tax alone: no amount for the tax to follow
        expected = (
            Decimal(0)
            if fraction is None
            else round_money(summary.taxable_amount * fraction, doc.currency)
        )
        # Producers that round each line's tax drift by up to half a unit per line.
        lines = sums.get(summary.rate, (0, 0, 1))[2]
        differs(
            summary.tax_amount, expected, f"LTSuat[{summary.rate}]/TThue", step * max(1, lines) / 2
        )

    goods_total = sum(
        (line.amount for line in doc.lines if line.kind == GOODS and line.amount is not None),
        Decimal(0),
    )
    discount_total = sum(
        (line.amount for line in doc.lines if line.kind == DISCOUNT and line.amount is not None),
        Decimal(0),
    )
    before_tax = doc.total_before_tax
    if no_vat and not before_tax and not doc.total_tax:
        before_tax = goods_total  # form 2 may leave TgTCThue and TgTThue out
    elif doc.lines and before_tax not in (goods_total, goods_total - discount_total):
        differs(before_tax, goods_total, "TgTCThue")
    if doc.summaries:
        differs(doc.total_tax, sum((s.tax_amount for s in doc.summaries), Decimal(0)), "TgTThue")
    line_discounts = _line_discounts(doc)
    # TTCKTMai repeats the discounts already taken off each line's ThTien, for information.
    informative = not discount_total and line_discounts and doc.total_discount == line_discounts
    # A producer whose TgTCThue already nets the trade discount off is consistent too.
    net_before = bool(discount_total) and before_tax == goods_total - discount_total
    if (discount_total or doc.total_discount) and not informative:
        differs(doc.total_discount, discount_total, "TTCKTMai")
    subtracted = Decimal(0) if informative or net_before else doc.total_discount
    computed = before_tax + doc.total_tax - subtracted + (doc.total_fees or 0)
    differs(doc.total_amount, computed, "TgTTTBSo")

    year = doc.series[1:3] if len(doc.series) >= 3 else ""
    if year != f"{doc.issued_on.year % 100:02d}":
        warnings.append(TotalsWarning("series_year", f"KHHDon: năm {year} trong ký hiệu "
                                      f"{doc.series} khác năm lập hóa đơn {doc.issued_on.year} "
                                      "(NLap)", year=year, series=doc.series,
                                      issue_year=str(doc.issued_on.year)))  # fmt: skip
    return warnings
