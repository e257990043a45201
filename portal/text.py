"""Text helpers: NFC normalisation and the accent-free search form of Vietnamese text."""

import unicodedata


def nfc(text: str | None) -> str:
    """Return text in composed form (NFD input draws diacritics wrongly in PDFs)."""
    return unicodedata.normalize("NFC", text or "")


def fold(text: str | None) -> str:
    """Lower-case text without diacritics, so 'NGUYỄN' matches 'nguyen' in any database."""
    text = unicodedata.normalize("NFD", (text or "").lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    return text.replace("đ", "d")
