"""The invoice as the tax authority's XML describes it, as plain data."""

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

VAT_RATES = ("0%", "5%", "8%", "10%", "KCT", "KKKNT")  # plus "KHAC:AB.CD%"
# A tax code: 10 digits, 10 digits and a 3-digit branch, or 12 digits (an individual's or a
# household business's; docs/domain.md, "Identity of an invoice"). Never 10 of a 12.
TAX_CODE = r"(?:[0-9]{12}|[0-9]{10}(?:-[0-9]{3})?)(?![0-9-])"


def is_tax_code(text: str) -> bool:
    return re.fullmatch(TAX_CODE, text or "") is not None


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
