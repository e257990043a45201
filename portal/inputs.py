"""Checks every input shares: clean text in forms and the API, and the recipients per send."""

import unicodedata

from flask_babel import gettext as _
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import StopValidation

from portal.forms import CATALOG
from portal.sending.addresses import MAX_RECIPIENTS
from portal.text import BIDI_CONTROLS, LINE_SEPARATORS, code_point, unsafe_character


def text_error(text: str, multiline: bool = False) -> str | None:
    """Say why the text cannot be taken (naming the character), or None if it can."""
    ch = unsafe_character(text, multiline)
    if ch is None:
        return None
    found = code_point(ch)
    category = unicodedata.category(ch)
    if category == "Cc":
        return _("Contains a control character (%(char)s), which is not allowed.", char=found)
    if category == "Cs":
        return _("Contains a lone surrogate (%(char)s), which is not a character.", char=found)
    if ch in BIDI_CONTROLS:
        return _("Contains a character that reverses the text direction (%(char)s).", char=found)
    if ch in LINE_SEPARATORS:
        return _("Contains a line separator (%(char)s); this field is one line.", char=found)
    return _("Contains %(char)s, which is not a character.", char=found)


def recipients_error(count: int) -> str | None:
    """Say why a send to this many addresses (To, CC and BCC together) is refused, or None."""
    if count <= MAX_RECIPIENTS:
        return None
    return _(
        "At most %(max)s recipients per send (To, CC and BCC together); this one has %(count)s.",
        max=MAX_RECIPIENTS, count=count,
    )  # fmt: skip


class CleanText:
    """A validator that refuses unsafe characters before the field's own validators run."""

    def __init__(self, multiline: bool = False):
        self.multiline = multiline

    def __call__(self, form, field):
        if isinstance(field.data, str) and (error := text_error(field.data, self.multiline)):
            raise StopValidation(error)


class CheckedForm(FlaskForm):
    """A form whose every text field refuses unsafe characters (multi-line: text areas).

    Passwords are left alone: they go into no document, header or page, only into a hash
    or the SMTP login (base64), so any character a password manager makes is fine there.
    """

    class Meta:
        def get_translations(self, form):
            return CATALOG  # WTForms' own messages, in the reader's language

        def bind_field(self, form, unbound_field, options):
            field = super().bind_field(form, unbound_field, options)
            if isinstance(field, StringField) and not isinstance(field, PasswordField):
                multiline = isinstance(field, TextAreaField)
                field.validators = [CleanText(multiline), *field.validators]
            return field
