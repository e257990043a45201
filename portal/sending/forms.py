"""The send dialog's form."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, ValidationError

from portal.sending.addresses import parse_addresses


def _addresses(form, field):
    parsed = parse_addresses(field.data)
    for address, reason in parsed.errors:
        field.errors.append(_l("“%(address)s” is not a valid email address: %(reason)s",
                               address=address, reason=reason))  # fmt: skip
    if parsed.errors:
        raise ValidationError(_l("Fix the addresses above."))
    field.data = "; ".join(parsed.addresses)


class SendForm(FlaskForm):
    method = RadioField(
        _l("Sending method"),
        choices=[SelectChoice("email", _l("Email")), SelectChoice("link", _l("Copy link"))],
        default="email",
    )
    recipient_name = StringField(_l("Recipient name"), validators=[Length(max=200)])
    to = TextAreaField(_l("Recipient email"), validators=[_addresses])
    cc = StringField(_l("CC"), validators=[_addresses])
    bcc = StringField(_l("BCC"), validators=[_addresses])

    def validate_to(self, field):
        if self.method.data == "email" and not field.data:
            raise ValidationError(_l("Enter at least one recipient email."))
