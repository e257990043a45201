"""Forms of the settings pages."""

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from portal.einvoice.document import TAX_CODE
from portal.forms import parse_day
from portal.inputs import CheckedForm
from portal.settings.service import MailValues


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class MailSettingsForm(CheckedForm):
    host = StringField(
        _l("SMTP server"), validators=[DataRequired(), Length(max=200)], filters=[_strip]
    )
    port = IntegerField(_l("Port"), validators=[DataRequired(), NumberRange(1, 65535)], default=587)
    security = SelectField(
        _l("Security"),
        choices=[
            SelectChoice("starttls", _l("STARTTLS (usually port 587)")),
            SelectChoice("ssl", _l("SSL/TLS (usually port 465)")),
            SelectChoice("none", _l("No encryption (port 25, local servers only)")),
        ],
        default="starttls",
    )
    username = StringField(_l("User name"), validators=[Length(max=200)], filters=[_strip])
    # Never rendered back: an empty field keeps the stored password.
    password = PasswordField(_l("Password"), validators=[Length(max=200)])
    clear_password = BooleanField(_l("Remove the stored password"))
    sender_name = StringField(_l("Sender name"), validators=[Length(max=200)], filters=[_strip])
    sender_email = StringField(
        _l("Sender email"),
        validators=[DataRequired(), Length(max=200), Email(check_deliverability=False)],
        filters=[_strip],
    )
    reply_to = StringField(
        _l("Reply-to email"),
        validators=[Optional(), Length(max=200), Email(check_deliverability=False)],
        filters=[_strip],
    )
    rate_per_minute = IntegerField(
        _l("At most this many emails a minute (empty: no limit)"),
        validators=[Optional(), NumberRange(1, 100000)],
    )
    rate_per_day = IntegerField(
        _l("At most this many emails a day (empty: no limit)"),
        validators=[Optional(), NumberRange(1, 10000000)],
    )
    test_to = StringField(
        _l("Send a test email to"),
        validators=[Optional(), Email(check_deliverability=False)],
        filters=[_strip],
    )

    def values(self):
        """The typed values for the settings service."""
        return MailValues(
            host=self.host.data, port=self.port.data, security=self.security.data,
            username=self.username.data or "", password=self.password.data or "",
            clear_password=bool(self.clear_password.data),
            sender_name=self.sender_name.data or "", sender_email=self.sender_email.data,
            reply_to=self.reply_to.data or "", rate_per_minute=self.rate_per_minute.data,
            rate_per_day=self.rate_per_day.data,
        )  # fmt: skip


class TaxSettingsForm(CheckedForm):
    """Thiết lập kết nối CQT: the T-VAN provider and how buyer emails relate to the transfer."""

    provider = SelectField(_l("Transmission provider (T-VAN)"), choices=[])
    endpoint = StringField(
        _l("Provider address"),
        validators=[DataRequired(), Length(max=300),
                    Regexp(r"^https?://", message=_l("an address starting with http:// or https://"))],
        filters=[_strip],
    )  # fmt: skip
    username = StringField(_l("User name"), validators=[Length(max=200)], filters=[_strip])
    # Never rendered back: an empty field keeps the stored password.
    password = PasswordField(_l("Password"), validators=[Length(max=200)])
    sender_code = StringField(
        _l("Sender code (MNGui)"),
        validators=[DataRequired(), Regexp(r"^[A-Za-z0-9]{1,20}$", message=_l("letters and digits, up to 20"))],
        filters=[_strip],
    )  # fmt: skip
    callback_secret = PasswordField(_l("Secret of pushed answers"), validators=[Length(max=200)])
    wait_for_acceptance = SelectField(
        _l("Buyer emails"),
        choices=[
            SelectChoice("0", _l("go at once, at the same time as the data (the legal default)")),
            SelectChoice("1", _l("wait until the tax authority accepted the invoice")),
        ],
        default="0",
    )
    holidays = TextAreaField(
        _l("Holidays besides weekends (one date a line, dd/mm/yyyy)"), filters=[_strip]
    )

    def validate_holidays(self, field):
        days = []
        for line in (field.data or "").split():
            day = parse_day(line)
            if day is None:
                raise ValidationError(
                    _l("“%(value)s” is not a date as dd/mm/yyyy", value=line)
                ) from None
            days.append(day)
        # Kept as yyyy-mm-dd lines (TaxSettings.holidays); typed and shown as dd/mm/yyyy.
        field.data = "\n".join(day.isoformat() for day in days)

    def show_holidays(self, stored: str) -> None:
        days = [parse_day(line) for line in (stored or "").split()]
        self.holidays.data = "\n".join(d.strftime("%d/%m/%Y") for d in days if d)


class TemplateForm(CheckedForm):
    subject = StringField(_l("Subject"), validators=[DataRequired(), Length(max=500)])
    body_text = TextAreaField(_l("Plain-text body"), validators=[DataRequired()])
    body_html = TextAreaField(_l("HTML body"), validators=[DataRequired()])


class CompanyForm(CheckedForm):
    name = StringField(_l("Company name"), validators=[DataRequired(), Length(max=400)])
    tax_code = StringField(
        _l("Tax code"),
        validators=[
            DataRequired(),
            Regexp(f"^{TAX_CODE}$", message=_l("10 digits, 10 digits-3 digits, or 12 digits")),
        ],
    )
    address = StringField(_l("Address"), validators=[Length(max=400)])
    phone = StringField(_l("Phone"), validators=[Length(max=50)])
    email = StringField(_l("Email"), validators=[Optional(), Email(check_deliverability=False)])
    bank_account = StringField(_l("Bank account"), validators=[Length(max=50)])
    bank_name = StringField(_l("Bank"), validators=[Length(max=200)])


# The legal names of the invoice forms (docs/domain.md, "Identity of an invoice").
FORM_NAMES = {
    1: _l("1 — VAT invoice"),
    2: _l("2 — Sales invoice"),
    3: _l("3 — Invoice for the sale of public assets"),
    4: _l("4 — Invoice for the sale of national reserve goods"),
    5: _l("5 — Stamps, tickets, cards"),
    6: _l("6 — Delivery note used as an invoice"),
    7: _l("7 — Commercial invoice"),
}


class SeriesForm(CheckedForm):
    form = SelectField(
        _l("Invoice form"),
        choices=[SelectChoice(str(n), label) for n, label in FORM_NAMES.items()],
    )  # fmt: skip
    series = StringField(
        _l("Series"),
        validators=[
            DataRequired(),
            Regexp(
                r"^K\d{2}[A-Z][A-Z0-9]{2}$",
                message=_l("like K26TAA: K, two digits of the year, three letters"),
            ),
        ],
    )


class Pkcs12Form(CheckedForm):
    """A PKCS#12 file and its password: the certificate that signs the invoices we issue."""

    file = FileField(
        _l("PKCS#12 file (.p12, .pfx)"),
        validators=[FileRequired(_l("Choose a file."))],
        render_kw={"accept": ".p12,.pfx,application/x-pkcs12"},
    )
    # Never stored nor shown again: it only opens the file once.
    password = PasswordField(_l("Password of the file"), validators=[Length(max=200)])


class CertificateFileForm(CheckedForm):
    """A certificate alone, for invoices signed by other software."""

    file = FileField(
        _l("Certificate (.cer, .crt, .pem)"),
        validators=[FileRequired(_l("Choose a file."))],
        render_kw={"accept": ".cer,.crt,.pem,.der,application/x-x509-ca-cert"},
    )
