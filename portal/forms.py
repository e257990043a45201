"""WTForms' built-in validator messages in the reader's language, and dd/mm/yyyy dates.

WTForms ships no Vietnamese catalog, so its own messages ("This field is required.", "Not a
valid integer value.") came out in English inside Vietnamese pages. CATALOG translates
them with the portal's catalog (translations/parts/forms.po): posted forms get it from
portal.inputs.CheckedForm, query-string forms from PlainForm.
"""

from datetime import date, datetime

from flask_babel import get_translations
from flask_babel import lazy_gettext as _l
from wtforms import DateField, Form
from wtforms.widgets import TextInput


class _Catalog:
    """WTForms' translations interface over the portal's catalog."""

    # The catalog's own methods: WTForms fills the placeholders itself, after translating.
    def gettext(self, string: str) -> str:
        return get_translations().ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return get_translations().ungettext(singular, plural, n)


CATALOG = _Catalog()


class PlainForm(Form):
    """A form read from the query string (no CSRF)."""

    class Meta:
        def get_translations(self, form):
            return CATALOG


# What a typed date may look like: dd/mm/yyyy (also d/m/yyyy, with - or . between), or the
# ISO yyyy-mm-dd that a pasted value or an old bookmark carries.
DAY_FORMATS = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d")
DAY_PATTERN = r"\s*(\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}|\d{4}-\d{1,2}-\d{1,2})\s*"


def parse_day(text: str) -> date | None:
    """Read a typed date (dd/mm/yyyy, or yyyy-mm-dd); None when it is not one."""
    for form in DAY_FORMATS:
        try:
            return datetime.strptime(text.strip(), form).date()
        except ValueError:
            continue
    return None


class DayField(DateField):
    """A date typed and shown as dd/mm/yyyy whatever the browser's language.

    A text box, not <input type=date>, whose display follows the browser's locale
    (mm/dd/yyyy in an American browser); the server reads it (docs/decisions.md, "Layout").
    """

    widget = TextInput()

    def __init__(self, label=None, validators=None, **kwargs):
        render_kw = {"placeholder": "dd/mm/yyyy", "pattern": DAY_PATTERN, "inputmode": "numeric",
                     "autocomplete": "off", "size": 10, "title": "dd/mm/yyyy",
                     **kwargs.pop("render_kw", {})}  # fmt: skip
        super().__init__(label, validators, format=list(DAY_FORMATS), render_kw=render_kw, **kwargs)

    def _value(self) -> str:
        # Shown as dd/mm/yyyy however it was typed; what cannot be read is shown as typed.
        if self.data:
            return self.data.strftime("%d/%m/%Y")
        return " ".join(self.raw_data) if self.raw_data else ""

    def process_formdata(self, valuelist):
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        self.data = parse_day(valuelist[0])
        if self.data is not None:
            return
        self.data = None
        raise ValueError(str(_l("enter a date as dd/mm/yyyy")))
