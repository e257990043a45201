"""Amount in words follows docs/domain.md, including the cases num2words gets wrong."""

import random
from decimal import Decimal

import pytest

from portal.einvoice.words import amount_in_words

CASES = [
    (1_089_000, "Một triệu không trăm tám mươi chín nghìn đồng"),
    (4_706_000, "Bốn triệu bảy trăm linh sáu nghìn đồng"),
    (3_791_700, "Ba triệu bảy trăm chín mươi mốt nghìn bảy trăm đồng"),
    (523_056, "Năm trăm hai mươi ba nghìn không trăm năm mươi sáu đồng"),
    (0, "Không đồng"),
    (1, "Một đồng"),
    (5, "Năm đồng"),
    (10, "Mười đồng"),
    (11, "Mười một đồng"),
    (15, "Mười lăm đồng"),
    (21, "Hai mươi mốt đồng"),
    (25, "Hai mươi lăm đồng"),
    (105, "Một trăm linh năm đồng"),
    (1_005, "Một nghìn không trăm linh năm đồng"),
    (1_000_000_000, "Một tỷ đồng"),
    (10**12, "Một nghìn tỷ đồng"),
    (10**12 + 5, "Một nghìn tỷ không trăm linh năm đồng"),
    (10**15, "Một triệu tỷ đồng"),
    (
        1_234_567_891_234,
        "Một nghìn hai trăm ba mươi bốn tỷ năm trăm sáu mươi bảy triệu"
        " tám trăm chín mươi mốt nghìn hai trăm ba mươi bốn đồng",
    ),
    (145_001_000, "Một trăm bốn mươi lăm triệu không trăm linh một nghìn đồng"),
    (1_000_001, "Một triệu không trăm linh một đồng"),
    (2_000_000_015, "Hai tỷ không trăm mười lăm đồng"),
    (-1, "Âm một đồng"),
    (-523_056, "Âm năm trăm hai mươi ba nghìn không trăm năm mươi sáu đồng"),
]


@pytest.mark.parametrize(("amount", "words"), CASES)
def test_domain_examples_and_edges(amount, words):
    assert amount_in_words(amount) == words


def test_vnd_rounds_to_whole_dong():
    assert (
        amount_in_words(Decimal("1089000.5"))
        == "Một triệu không trăm tám mươi chín nghìn không trăm linh một đồng"
    )


def test_foreign_currency_reads_cents():
    assert (
        amount_in_words(Decimal("1250.50"), "USD")
        == "Một nghìn hai trăm năm mươi đô la Mỹ năm mươi xu"
    )


@pytest.mark.parametrize(
    ("amount", "currency", "words"),
    [
        (Decimal("3"), "USD", "Ba đô la Mỹ"),
        (Decimal("0.07"), "USD", "Không đô la Mỹ bảy xu"),
        (Decimal("-12.5"), "USD", "Âm mười hai đô la Mỹ năm mươi xu"),
        (Decimal("99.999"), "EUR", "Một trăm euro"),
    ],
)
def test_foreign_currency_rule(amount, currency, words):
    # The rule: whole units, then the cents (rounded half up to 2 places) as "xu" when not zero.
    assert amount_in_words(amount, currency) == words


def test_random_large_amounts_read_cleanly():
    rng = random.Random(1)
    for _ in range(3000):
        amount = rng.randrange(-(10**18), 10**18)
        words = amount_in_words(amount)
        assert words[0].isupper() and words.endswith(" đồng") and "  " not in words, words
        assert words.startswith("Âm ") == (amount < 0), words
        # A group of zeros in the middle never shows up as "không trăm" before a scale word.
        for scale in ("nghìn", "triệu", "tỷ"):
            assert f"không trăm {scale}" not in words, words


def test_every_amount_reads_cleanly():
    for amount in list(range(0, 2200)) + [
        10**n + k for n in range(3, 16) for k in (0, 1, 5, 15, 21, 105)
    ]:
        words = amount_in_words(amount)
        assert words[0].isupper() and words.endswith(" đồng") and "  " not in words, (amount, words)
        assert "mươi một" not in words and "mười năm" not in words and "mươi năm" not in words, (
            amount,
            words,
        )
