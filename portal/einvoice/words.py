"""Write an amount in Vietnamese words, for invoices we issue (docs/domain.md, "Amount in words").

num2words gets several Vietnamese amounts wrong (523 056, 145 001 000, negatives), so
invoices use this function. Imported invoices keep the issuer's words verbatim.
"""

from decimal import ROUND_HALF_UP, Decimal

DIGITS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]
# Group names for 10^3, 10^6, 10^9; above that "tỷ" repeats: 10^12 is "nghìn tỷ".
SCALES = ["", "nghìn", "triệu"]
CURRENCIES = {"VND": ("đồng", None), "USD": ("đô la Mỹ", "xu"), "EUR": ("euro", "xu")}


def _three(number: int, full: bool) -> list[str]:
    """Words for 0-999; `full` when a higher group exists, so 5 reads "không trăm linh năm"."""
    hundreds, tens, units = number // 100, number // 10 % 10, number % 10
    words: list[str] = []
    if hundreds or full:
        words += [DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if words:
                words.append("linh")
            words.append(DIGITS[units])
        return words
    words += ["mười"] if tens == 1 else [DIGITS[tens], "mươi"]
    if units == 1:
        words.append("mốt" if tens >= 2 else "một")
    elif units == 5:
        words.append("lăm")
    elif units:
        words.append(DIGITS[units])
    return words


def _integer_words(number: int) -> list[str]:
    if number == 0:
        return ["không"]
    billions, rest = divmod(number, 10**9)
    words: list[str] = []
    if billions:
        words += _integer_words(billions) + ["tỷ"]
    groups = [rest // 10**6, rest // 10**3 % 1000, rest % 1000]
    for index, group in enumerate(groups):
        if group == 0:
            continue
        higher = bool(words)
        words += _three(group, full=higher)
        scale = SCALES[2 - index]
        if scale:
            words.append(scale)
    return words


def number_in_words(number: int) -> str:
    """The words for a whole number, lower case ("âm" before negatives)."""
    words = _integer_words(abs(number))
    return " ".join((["âm"] if number < 0 else []) + words)


def amount_in_words(amount: Decimal | int, currency: str = "VND") -> str:
    """Write an invoice total in words: initial capital, "Âm" when negative, currency last.

    VND is rounded half up to whole đồng. Other currencies are rounded half up to cents and
    read as whole units then, when not zero, the cents as "xu": 1250.50 USD is "Một nghìn
    hai trăm năm mươi đô la Mỹ năm mươi xu".
    """
    amount = Decimal(amount)
    unit, cents_name = CURRENCIES.get(currency, (currency, "xu"))
    if cents_name is None:
        whole = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        text = f"{number_in_words(whole)} {unit}"
    else:
        rounded = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        whole = int(abs(rounded))
        cents = int((abs(rounded) - whole) * 100)
        text = f"{number_in_words(whole)} {unit}"
        if cents:
            text += f" {number_in_words(cents)} {cents_name}"
        if rounded < 0:
            text = "âm " + text
    return text[0].upper() + text[1:]
