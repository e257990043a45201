"""The invoice as the tax authority's XML describes it, as plain data."""

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

VAT_RATES = ("0%", "5%", "8%", "10%", "KCT", "KKKNT")  # plus "KHAC:AB.CD%"
# A tax code: 10 digits, 10 digits and a 3-digit branch, or 12 digits (an individual's or a
# household business's; docs/domain.md, "Identity of an invoice"). Never 10 of a 12.
TAX_CODE = r"(?:[0-9]{12}|[0-9]{10}(?:-[0-9]{3})?)(?![0-9-])"


# The XML's numbers have 21 digits, 6 of them after the point (docs/domain.md): below
# 10^15 in absolute value. The database's NUMERIC(24, 6) holds every such number.
MAX_DECIMALS = 6
NUMBER_LIMIT = Decimal(10) ** 15


def is_tax_code(text: str) -> bool:
    return re.fullmatch(TAX_CODE, text or "") is not None


def fits_xml_number(value: Decimal) -> bool:
    """Whether the XML (and the database) can hold the number exactly."""
    return (
        value.is_finite()
        and abs(value) < NUMBER_LIMIT
        and value.normalize().as_tuple().exponent >= -MAX_DECIMALS
    )


@dataclass
class Party:
    """A seller (NBan) or buyer (NMua)."""

    name: str = ""
    tax_code: str = ""
    address: str = ""
    phone: str = ""
    email: str = ""
    bank_account: str = ""
    bank_name: str = ""
    person: str = ""  # HVTNMHang: the buyer's person
    code: str = ""  # MKHang: the buyer's customer code


@dataclass
class Line:
    """One HHDVu: kind (TChat) 1 goods/service, 2 promotion, 3 trade discount, 4 note."""

    position: int
    name: str
    kind: int = 1
    code: str = ""
    unit: str = ""
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    discount_rate: Decimal | None = None
    discount_amount: Decimal | None = None
    amount: Decimal | None = None
    vat_rate: str = ""


@dataclass
class RateSummary:
    """One LTSuat: a rate's taxable amount and tax."""

    rate: str
    taxable_amount: Decimal
    tax_amount: Decimal


@dataclass
class Document:
    """One invoice (HDon/DLHDon) as data."""

    form: int
    series: str
    number: int
    issued_on: date
    seller: Party
    buyer: Party
    lines: list[Line] = field(default_factory=list)
    summaries: list[RateSummary] = field(default_factory=list)
    total_before_tax: Decimal = Decimal(0)
    total_tax: Decimal = Decimal(0)
    total_discount: Decimal = Decimal(0)
    total_fees: Decimal = Decimal(0)
    total_amount: Decimal = Decimal(0)
    amount_in_words: str = ""
    version: str = "2.1.0"
    title: str = ""
    currency: str = "VND"
    exchange_rate: Decimal | None = None
    payment_method: str = ""
    lookup_code: str = ""
    related_info: str = ""  # TTHDLQuan, present on replacing/adjusting invoices
    data_id: str = "data"  # the DLHDon Id the signature references
