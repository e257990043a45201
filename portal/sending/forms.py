"""The send dialog's form."""

from flask_babel import lazy_gettext as _l
from wtforms import RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, StopValidation, ValidationError

from portal.inputs import CheckedForm, recipients_error
from portal.sending.addresses import SEPARATORS, parse_addresses

ADDRESS_REASONS = {
    "no_at": _l("it has no @"),
    "bad_local": _l("the part before @ is not valid"),
    "bad_domain": _l("the part after @ is not a domain name such as example.com"),
    "too_long": _l("it is too long"),
    "invalid": _l("it is not an email address"),
}


def _addresses(form, field):
    # Far too many addresses are refused before each is checked: the check costs per address.
    if error := recipients_error(len([a for a in SEPARATORS.split(field.data or "") if a])):
        raise StopValidation(error)
    parsed = parse_addresses(field.data)
    for address, reason in parsed.errors:
        words = ADDRESS_REASONS.get(reason, ADDRESS_REASONS["invalid"])
        field.errors.append(_l("“%(address)s” is not a valid email address: %(reason)s",
                               address=address, reason=words))  # fmt: skip
    if parsed.errors:
        raise ValidationError(_l("Fix the addresses above."))
    field.data = "; ".join(parsed.addresses)


class SendForm(CheckedForm):
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

    def validate(self, extra_validators=None) -> bool:
        """Check each field, then the number of recipients of the three together."""
        valid = super().validate(extra_validators)
        fields = (self.to, self.cc, self.bcc)
        count = sum(len(parse_addresses(f.data).addresses) for f in fields if not f.errors)
        if self.method.data == "email" and (error := recipients_error(count)):
            self.to.errors.append(error)
            valid = False
        return valid
