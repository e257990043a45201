"""Turn HTML into PDF with xhtml2pdf; the only module that imports it.

Fonts are the TTF files shipped in static/fonts: xhtml2pdf silently falls back to
Helvetica (no Vietnamese) for fonts it may not read, so the start-up self-check renders
every Vietnamese letter and refuses to go on if one is missing (PITFALLS.md).
"""

import io
import unicodedata
from pathlib import Path

from pypdf import PdfReader
from reportlab.pdfbase.ttfonts import TTFontFile
from xhtml2pdf import pisa
from xhtml2pdf.config.resources import ResourceAccessPolicy

from portal.text import nfc

REGULAR = "DejaVuSans.ttf"
BOLD = "DejaVuSans-Bold.ttf"


class PdfError(RuntimeError):
    """The PDF could not be rendered."""


class FontError(RuntimeError):
    """The bundled font cannot draw every Vietnamese letter."""


def html_to_pdf(html: str, font_dir: Path) -> bytes:
    """Render NFC-normalised HTML to PDF bytes, reading nothing outside font_dir."""
    output = io.BytesIO()
    policy = ResourceAccessPolicy.server(base_dir=font_dir, allow_remote=False)
    result = pisa.CreatePDF(
        nfc(html), dest=output, encoding="utf-8", resource_policy=policy, raise_exception=True
    )
    if result.err:
        raise PdfError(f"xhtml2pdf reported {result.err} error(s)")
    return output.getvalue()


def vietnamese_letters() -> str:
    """Every Vietnamese letter, lower and upper case, with every tone mark (NFC)."""
    tones = ["", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323"]
    vowels = ["a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y"]
    letters = {unicodedata.normalize("NFC", v + t) for v in vowels for t in tones}
    letters |= set("bcdđghklmnpqrstvx")
    letters |= {letter.upper() for letter in letters}
    return "".join(sorted(letters))


def missing_glyphs(font_path: Path, text: str) -> list[str]:
    """Characters of text (spaces aside) that the TTF has no glyph for."""
    cmap = TTFontFile(str(font_path)).charToGlyph
    return [ch for ch in text if not ch.isspace() and ord(ch) not in cmap]


def self_check(font_dir: Path) -> None:
    """Render every Vietnamese letter and check the bundled fonts drew them; raise FontError."""
    letters = vietnamese_letters()
    for name in (REGULAR, BOLD):
        path = font_dir / name
        if not path.exists():
            raise FontError(f"font file missing: {path}")
        missing = missing_glyphs(path, letters)
        if missing:
            raise FontError(f"{name} has no glyph for: {''.join(missing)}")
    html = (
        "<html><head><meta charset='utf-8'><style>"
        f"@font-face {{ font-family: 'InvoiceSans'; src: url('{font_dir / REGULAR}'); }}"
        f"@font-face {{ font-family: 'InvoiceSans'; src: url('{font_dir / BOLD}'); font-weight: bold; }}"
        "body { font-family: 'InvoiceSans'; }</style></head>"
        f"<body><p>{letters}</p><p><b>{letters}</b></p></body></html>"
    )
    pdf = html_to_pdf(html, font_dir)
    fonts = embedded_fonts(pdf)
    if not any("DejaVuSans-Bold" in f for f in fonts) or not any(
        "DejaVuSans" in f and "Bold" not in f for f in fonts
    ):
        raise FontError(f"bundled fonts were not embedded; the PDF uses {sorted(fonts)}")
    text = "".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    lost = sorted(set(letters) - set(text))
    if lost:
        raise FontError("letters lost in the PDF: " + "".join(lost))


def embedded_fonts(pdf: bytes) -> set[str]:
    """The base names of the fonts a PDF's pages use."""
    names = set()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        resources = page.get("/Resources") or {}
        for font in (resources.get("/Font") or {}).values():
            font = font.get_object()
            names.add(str(font.get("/BaseFont", "")))
    return names
