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


# Bidirectional formatting characters: embeddings, overrides and isolates (U+202A–202E,
# U+2066–2069) flip the text after them, in the PDF, the list and mail apps alike; the
# marks (U+200E, U+200F, U+061C) do the same to one character. Vietnamese needs none.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Line and paragraph separators end a line for some readers (a mail header, JavaScript).
LINE_SEPARATORS = frozenset("\u2028\u2029")
# What a text that may run over several lines (a note, a template) keeps of the controls.
MULTILINE_CONTROLS = frozenset("\t\n\r")


def unsafe_character(text: str, multiline: bool = False) -> str | None:
    """Return the first character no input may hold, or None if the text is clean.

    Refused everywhere: control characters (C0, DEL, C1; tab and line breaks only in
    multi-line text), lone surrogates (they cannot be written as UTF-8, so an XML, a
    database row or an email of them fails), noncharacters (U+FFFE, U+FFFF: not XML) and
    bidi controls; in one-line text also U+2028/2029 (docs/decisions.md, "Inputs").
    """
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc":
            if multiline and ch in MULTILINE_CONTROLS:
                continue
            return ch
        if category == "Cs" or ch in BIDI_CONTROLS:
            return ch
        if ch in LINE_SEPARATORS and not multiline:
            return ch
        if (0xFDD0 <= ord(ch) <= 0xFDEF) or (ord(ch) & 0xFFFE) == 0xFFFE:
            return ch
    return None


def code_point(ch: str) -> str:
    """Name a character the way a person can look it up: U+202E."""
    return f"U+{ord(ch):04X}"
