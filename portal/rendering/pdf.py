"""Turn HTML into PDF with xhtml2pdf; the only module that imports it.

Fonts are the TTF files shipped in static/fonts (config PDF_FONT_DIR). xhtml2pdf silently
falls back to Helvetica, which has no Vietnamese, for a font it may not read, and draws a
bold run in the regular face unless the bold TTF has its own @font-face (docs/stack.md, "PDFs"). So
html_to_pdf gives every document @font-face rules for both, lets xhtml2pdf read nothing
but the font folder, and `self_check` renders every Vietnamese letter and reads the PDF
back before a worker or the launcher goes on.
"""

import io
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app, has_app_context

from portal.config import ROOT
from portal.text import nfc

REGULAR = "DejaVuSans.ttf"
BOLD = "DejaVuSans-Bold.ttf"
FONT_FAMILY = "InvoiceSans"
BUNDLED_FONT_DIR = ROOT / "static" / "fonts"

# The tone marks: huyền, sắc, ngã, hỏi, nặng (and none).
TONES = ("", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323")
VOWELS = ("a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y")
CONSONANTS = "bcdđghklmnpqrstvx"


class PdfError(RuntimeError):
    """The PDF could not be rendered."""


class FontError(RuntimeError):
    """The PDF fonts cannot draw every Vietnamese letter, or were not embedded."""


def font_dir() -> Path:
    """Return the folder of the PDF fonts: the app's PDF_FONT_DIR, else the bundled one."""
    if has_app_context():
        return Path(current_app.config["PDF_FONT_DIR"])
    return BUNDLED_FONT_DIR


def _css_url(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def font_face_css(fonts: Path) -> str:
    """Write @font-face rules for the regular and the bold TTF (bold needs its own rule)."""
    return (
        f"@font-face {{ font-family: {FONT_FAMILY}; src: url({_css_url(fonts / REGULAR)}); }}\n"
        f"@font-face {{ font-family: {FONT_FAMILY}; src: url({_css_url(fonts / BOLD)}); "
        "font-weight: bold; }\n"
    )


def base_css(fonts: Path) -> str:
    """Return xhtml2pdf's defaults plus the bundled fonts for every element (A4 is default)."""
    from xhtml2pdf.default import DEFAULT_CSS

    # Given as the user-agent sheet, so every document gets the fonts without asking and a
    # template's own rules still win; Courier for <pre>/<code> would draw no Vietnamese.
    return (
        DEFAULT_CSS
        + font_face_css(fonts)
        + f"body, pre, code, tt, kbd, samp {{ font-family: {FONT_FAMILY}; }}\n"
    )


def html_to_pdf(html: str, fonts: Path | None = None) -> bytes:
    """Render NFC-normalised HTML to an A4 PDF in the bundled fonts, reading only their folder."""
    # xhtml2pdf and ReportLab weigh about 25 MB in each process that imports them; web
    # processes rarely render (PDFs are rendered ahead by the workers), so import them here.
    from xhtml2pdf import pisa
    from xhtml2pdf.config.resources import ResourceAccessPolicy

    fonts = fonts or font_dir()
    output = io.BytesIO()
    # The policy is what makes fonts outside the app's folder load at all, and it keeps a
    # URL that slipped into a document from reading local files or the network.
    policy = ResourceAccessPolicy.server(base_dir=fonts, allow_remote=False)
    result = pisa.CreatePDF(
        nfc(html),
        dest=output,
        encoding="utf-8",
        default_css=base_css(fonts),
        resource_policy=policy,
        raise_exception=True,
    )
    if result.err:
        raise PdfError(f"xhtml2pdf reported {result.err} error(s)")
    return output.getvalue()


def warm_up() -> None:
    """Import the PDF stack and load its fonts now (a worker, before its first job).

    Otherwise the first PDF a worker renders waits about a second for them: a second added
    to the first email of a batch, twice (README, "Measured").
    """
    html_to_pdf("<p>Hóa đơn <b>Hóa đơn</b></p>")


def vietnamese_letters() -> str:
    """List every Vietnamese letter, lower and upper case, with every tone mark (NFC)."""
    letters = {unicodedata.normalize("NFC", v + t) for v in VOWELS for t in TONES}
    letters |= set(CONSONANTS)
    letters |= {letter.upper() for letter in letters}
    return "".join(sorted(letters))


def missing_glyphs(font_path: Path, text: str) -> list[str]:
    """Return the characters the TTF's cmap leaves out or maps to .notdef (spaces aside)."""
    from reportlab.pdfbase.ttfonts import TTFontFile

    cmap = TTFontFile(str(font_path)).charToGlyph
    return [ch for ch in dict.fromkeys(text) if not ch.isspace() and not cmap.get(ord(ch))]


def postscript_name(font_path: Path) -> str:
    """Return the name a PDF gives the embedded font (after its subset tag)."""
    from reportlab.pdfbase.ttfonts import TTFontFile

    name = TTFontFile(str(font_path)).name
    return name.decode() if isinstance(name, bytes) else name


@dataclass
class DrawnFont:
    """What one font of a PDF drew, and whether the PDF carries the font's file."""

    base_name: str
    embedded: bool
    text: list[str] = field(default_factory=list)


def drawn_fonts(pdf: bytes) -> dict[str, DrawnFont]:
    """Map each font that draws visible text in a PDF (name without subset tag) to its text."""
    fonts: dict[str, DrawnFont] = {}

    def visit(text, _cm, _tm, font_dict, _size):
        if not font_dict or not text.strip():
            return
        base = str(font_dict.get("/BaseFont", "")).lstrip("/").split("+")[-1]
        descriptor = font_dict.get("/FontDescriptor")
        descriptor = descriptor.get_object() if descriptor is not None else {}
        embedded = any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))
        fonts.setdefault(base, DrawnFont(base, embedded)).text.append(text)

    from pypdf import PdfReader

    for page in PdfReader(io.BytesIO(pdf)).pages:
        page.extract_text(visitor_text=visit)
    return fonts


def check_sample(pdf: bytes, letters: str, expected: dict[str, str]) -> None:
    """Raise FontError unless each expected font is embedded and drew every letter.

    `expected` maps a role ("regular", "bold") to the font's PostScript name. ReportLab
    draws a character the font lacks with code 0, the .notdef glyph, which reads back
    as U+0000; a font that did not load is replaced by Helvetica, which draws instead.
    """
    fonts = drawn_fonts(pdf)
    for role, name in expected.items():
        font = fonts.get(name)
        if font is None:
            raise FontError(
                f"the {role} font {name} drew nothing; the PDF uses {sorted(fonts)} instead"
            )
        if not font.embedded:
            raise FontError(f"the {role} font {name} is not embedded in the PDF")
        drawn = "".join(font.text)
        if "\x00" in drawn:
            raise FontError(f"the {role} font {name} drew .notdef (a box) for some letters")
        lost = [ch for ch in letters if ch not in drawn]
        if lost:
            raise FontError(f"the {role} font {name} did not draw: {''.join(lost)}")
    strangers = set(fonts) - set(expected.values())
    if strangers:
        raise FontError(f"text fell back to other fonts: {sorted(strangers)}")


def self_check(fonts: Path | None = None) -> None:
    """Render every Vietnamese letter in regular and bold, read the PDF back; raise FontError."""
    fonts = fonts or font_dir()
    letters = vietnamese_letters()
    expected = {}
    for role, file in (("regular", REGULAR), ("bold", BOLD)):
        path = fonts / file
        if not path.is_file():
            raise FontError(f"font file missing: {path}")
        missing = missing_glyphs(path, letters)
        if missing:
            raise FontError(f"{file} has no glyph for: {''.join(missing)}")
        expected[role] = postscript_name(path)
    if expected["regular"] == expected["bold"]:
        raise FontError(f"{BOLD} is the same face as {REGULAR}: bold would print regular")
    # No font rules of its own: the sample gets its fonts the way every invoice does.
    html = f"<html><body><p>{letters}</p><p><b>{letters}</b></p></body></html>"
    check_sample(html_to_pdf(html, fonts), letters, expected)
