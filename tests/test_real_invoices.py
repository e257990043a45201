"""Invoices as real producers write them, accepted by the tax authority: no false warning.

One file per case of docs/domain.md ("The seller's checks on the totals"), under
tests/data/real/; the last one is a real inconsistency, which keeps its warning.
"""

from pathlib import Path

import pytest

from portal.einvoice.totals import check_totals
from portal.einvoice.xml import parse_xml

REAL = Path(__file__).parent / "data" / "real"


@pytest.mark.parametrize(
    "name",
    [
        "no_tax_rate_rows",  # lines at KCT and KKKNT without a rate row of their own
        "form2_no_vat",  # a sales invoice: no rates, no rate rows, no TgTCThue/TgTThue
        "line_discounts_informative",  # TTCKTMai repeats the per-line discounts
        "adjusting_tax_only",  # an adjustment of the tax alone: no amount, negative tax
    ],
)
def test_a_valid_invoice_that_looks_odd_gets_no_warning(name):
    doc = parse_xml((REAL / f"{name}.xml").read_bytes())
    assert check_totals(doc) == []


def test_a_rate_row_without_tax_under_a_tax_total_is_still_named():
    doc = parse_xml((REAL / "rate_row_without_tax.xml").read_bytes())
    assert check_totals(doc) == [
        "LTSuat[10%]/TThue: 0 khác tổng tính được 100.000",
        "TgTThue: 100.000 khác tổng tính được 0",
    ]


def test_informative_line_discounts_still_check_the_grand_total():
    """TTCKTMai is not subtracted again, but a wrong TgTTTBSo is still named."""
    data = (REAL / "line_discounts_informative.xml").read_bytes()
    doc = parse_xml(data.replace(b"<TgTTTBSo>10340000<", b"<TgTTTBSo>9740000<"))
    assert check_totals(doc) == ["TgTTTBSo: 9.740.000 khác tổng tính được 10.340.000"]


def test_a_form_2_total_that_forgets_the_discount_is_named():
    data = (REAL / "form2_no_vat.xml").read_bytes()
    doc = parse_xml(data.replace(b"<TgTTTBSo>1000000<", b"<TgTTTBSo>1100000<"))
    assert check_totals(doc) == ["TgTTTBSo: 1.100.000 khác tổng tính được 1.000.000"]
