"""Parse the recipient fields the seller types: addresses separated by ';' or ','."""

import re
import unicodedata
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email

SEPARATORS = re.compile(r"[;,\s]+")
# Addresses per send, To, CC and BCC together (the dialog, a bulk row, the API's buyer).
# An invoice goes to a buyer's few people; hundreds make the portal a bulk mailer, and
# many providers refuse messages with more than 50 to 100 recipients anyway.
MAX_RECIPIENTS = 50


@dataclass
class AddressList:
    """The normalised, de-duplicated addresses and one error per bad address."""

    addresses: list[str] = field(default_factory=list)
    # (address as typed, reason code): the seller reads words (sending.forms.ADDRESS_REASONS),
    # never the validator's English.
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def joined(self) -> str:
        return ";".join(self.addresses)


def parse_addresses(text: str | None) -> AddressList:
    """Split, validate and normalise addresses; keep the first of duplicates (case-insensitive)."""
    result = AddressList()
    seen: set[str] = set()
    for raw in SEPARATORS.split(text or ""):
        if not raw:
            continue
        try:
            # No DNS lookup: the portal runs without outside network, and the mail server
            # is the one that decides whether a domain accepts mail.
            valid = validate_email(raw, check_deliverability=False)
        except EmailNotValidError as error:
            result.errors.append((raw, reason_of(raw, str(error))))
            continue
        address = valid.normalized
        if address.lower() not in seen:
            seen.add(address.lower())
            result.addresses.append(address)
    return result


def reason_of(raw: str, message: str) -> str:
    """Name what is wrong with an address from email_validator's (English) message."""
    if "@" not in raw:
        return "no_at"
    if "too long" in message:
        return "too_long"
    if "after the @-sign" in message or "domain" in message.lower():
        return "bad_domain"
    if "before the @-sign" in message or "period" in message:
        return "bad_local"
    return "invalid"


# Controls (CR, LF, ...), format characters (the bidi overrides and isolates that flip text),
# line and paragraph separators (U+2028/2029 end a header line for some readers) and lone
# surrogates: none belongs in a name shown in a header or printed on an invoice.
_NOT_IN_NAMES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def clean_display_name(name: str | None) -> str:
    """Drop characters that could break out of a header or flip the text around them."""
    kept = "".join(ch for ch in (name or "") if unicodedata.category(ch) not in _NOT_IN_NAMES)
    return kept.strip()[:200]
