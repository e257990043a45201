"""Forms of the settings pages."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional


class MailSettingsForm(FlaskForm):
    host = StringField(_l("SMTP server"), validators=[DataRequired(), Length(max=200)])
    port = IntegerField(_l("Port"), validators=[DataRequired(), NumberRange(1, 65535)], default=587)
    security = SelectField(
        _l("Security"),
        choices=[
            SelectChoice("starttls", "STARTTLS"),
            SelectChoice("ssl", "SSL/TLS"),
            SelectChoice("none", _l("None")),
        ],
        default="starttls",
    )
    username = StringField(_l("User name"), validators=[Length(max=200)])
    # Never rendered back: an empty field keeps the stored password.
    password = PasswordField(_l("Password"), validators=[Length(max=200)])
    clear_password = BooleanField(_l("Remove the stored password"))
    sender_name = StringField(_l("Sender name"), validators=[Length(max=200)])
    sender_email = StringField(
        _l("Sender email"), validators=[DataRequired(), Email(check_deliverability=False)]
    )
    reply_to = StringField(
        _l("Reply-to email"), validators=[Optional(), Email(check_deliverability=False)]
    )
    test_to = StringField(
        _l("Send a test email to"), validators=[Optional(), Email(check_deliverability=False)]
    )


class TemplateForm(FlaskForm):
    subject = StringField(_l("Subject"), validators=[DataRequired(), Length(max=500)])
    body_text = TextAreaField(_l("Plain-text body"), validators=[DataRequired()])
    body_html = TextAreaField(_l("HTML body"), validators=[DataRequired()])
