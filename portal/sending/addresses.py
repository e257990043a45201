"""Parse the recipient fields the seller types: addresses separated by ';' or ','."""

import re
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email

SEPARATORS = re.compile(r"[;,\s]+")


@dataclass
class AddressList:
    """The normalised, de-duplicated addresses and one error per bad address."""

    addresses: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (address as typed, reason)

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
            result.errors.append((raw, str(error)))
            continue
        address = valid.normalized
        if address.lower() not in seen:
            seen.add(address.lower())
            result.addresses.append(address)
    return result


def clean_display_name(name: str | None) -> str:
    """Drop characters that could break out of a header (CR, LF, other controls)."""
    return "".join(ch for ch in (name or "") if ch >= " " and ch != "\x7f").strip()[:200]
