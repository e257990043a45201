"""Every UI string has its Vietnamese translation, and the catalog compiles."""

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
METHODS = [("portal/**.py", "python"), ("templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "lazy_gettext": None, "_l": None, "ngettext": (1, 2)}


def catalog_messages() -> dict[str, str]:
    found = {}
    for path in [
        ROOT / "translations" / "base.po",
        *sorted((ROOT / "translations" / "parts").glob("*.po")),
    ]:
        with path.open("rb") as handle:
            for message in read_po(handle, locale="vi"):
                if message.id:
                    found[message.id if isinstance(message.id, str) else message.id[0]] = (
                        message.string
                    )
    return found


def test_every_ui_string_has_a_vietnamese_translation():
    translated = catalog_messages()
    missing = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), METHODS, keywords=KEYWORDS
    ):
        msgid = message if isinstance(message, str) else message[0]
        text = translated.get(msgid)
        if not text or (isinstance(text, str) and not text.strip()):
            missing.add(msgid)
    assert sorted(missing) == []
