"""Keep the seller's mail settings and email template, send a test email, preview the template."""

import json
import traceback
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from flask import current_app
from flask_babel import format_decimal
from flask_babel import gettext as _
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from portal import audit
from portal.database import write
from portal.extensions import db
from portal.models import EmailTemplate, Invoice, MailSettings
from portal.sending import mailer, service, templating
from portal.sending.reasons import explain
from portal.sending.secrets_box import decrypt, encrypt
from portal.types import utcnow

# A test runs inside a web request: do not hold it as long as a background send may wait.
TEST_TIMEOUT = 15.0

# Only parses (never renders) templates, to find the line of an unknown variable.
_parser = ImmutableSandboxedEnvironment()


@dataclass
class MailValues:
    """What the seller typed on the settings page; an empty password means "keep the stored one"."""

    host: str
    port: int
    security: str
    username: str
    password: str
    clear_password: bool
    sender_name: str
    sender_email: str
    reply_to: str
    rate_per_minute: int | None = None
    rate_per_day: int | None = None


@dataclass
class TestResult:
    ok: bool
    to: str
    reason: str = ""  # the sentence for the seller when the test failed
    answer: str = ""  # the server's exact answer (code and text), or the connection error
    answered: bool = False  # whether `answer` came from the server (it has a reply code)
    kind: str = ""  # why it failed, as a code (portal.sending.reasons), kept with the settings


# The stored password cannot be decrypted any more (the secret key changed).
PASSWORD_UNREADABLE = "password_unreadable"  # noqa: S105  (a reason code, not a password)


def _password_unreadable_reason() -> str:
    return _("The stored password can no longer be read (the secret key changed): enter it again.")


def test_reason(kind: str) -> str:
    """The sentence for a failed test's reason code, in the reader's language."""
    if kind == PASSWORD_UNREADABLE:
        return _password_unreadable_reason()
    return explain(kind, None, "", retried=False)


def last_test_summary(settings: MailSettings) -> str:
    """The last test's reason and the server's answer, the reason in the reader's language.

    The row keeps a reason code and the server's words (JSON); rows written before kept the
    sentence itself, in the language of whoever tested, and are shown as they are.
    """
    try:
        stored = json.loads(settings.last_test_message or "")
    except ValueError:
        return settings.last_test_message
    if not isinstance(stored, dict):
        return settings.last_test_message
    kind = stored.get("kind") or ""
    return " ".join(filter(None, [test_reason(kind) if kind else "", stored.get("answer", "")]))


def password_unreadable(settings: MailSettings | None) -> bool:
    """Whether a password is stored that SECRET_KEY can no longer decrypt."""
    return settings is not None and decrypt(settings.password_encrypted) is None


def password_needed_again(values: MailValues) -> str:
    """Why the stored password may not go with these values ("" if it may, or none is used).

    The stored password is only ever sent to the server and user it was saved for: a
    changed host, port, security or user name with the password field empty would hand it
    to another server (docs/decisions.md, Settings).
    """
    stored = service.mail_settings()
    if values.password or values.clear_password or stored is None:
        return ""
    if not stored.password_encrypted:
        return ""
    if (stored.host, stored.port, stored.security, stored.username) == (
        values.host, values.port, values.security, values.username
    ):  # fmt: skip
        return ""
    return _(
        "The server, port, security or user name changed: type the password again "
        "(the stored one only goes to the server it was saved for)."
    )


def save_mail_settings(values: MailValues) -> MailSettings:
    """Create or update the one MailSettings row; a blank password keeps the stored one."""
    with write():
        settings = service.mail_settings()
        if settings is None:
            settings = MailSettings(host="", sender_email="", password_encrypted="")
            db.session.add(settings)
        settings.host = values.host
        settings.port = values.port
        settings.security = values.security
        settings.username = values.username
        settings.sender_name = values.sender_name
        settings.sender_email = values.sender_email
        settings.reply_to = values.reply_to
        settings.rate_per_minute = values.rate_per_minute or None
        settings.rate_per_day = values.rate_per_day or None
        if values.clear_password:
            settings.password_encrypted = ""
        elif values.password:
            settings.password_encrypted = encrypt(values.password)
        audit.record("settings.changed", target=settings,
                     details={"section": "email", "changes": audit.changes(settings)})  # fmt: skip
        settings.updated_at = utcnow()
    return settings


def send_test(values: MailValues, to: str) -> TestResult:
    """Send a short test email with the values on the form, so a seller can test before saving.

    An empty password field uses the stored password (it is never sent back to the browser),
    unless "remove the stored password" is ticked. The outcome is recorded on the stored row.
    """
    stored = service.mail_settings()
    password = values.password
    if not password and not values.clear_password and stored is not None:
        password = decrypt(stored.password_encrypted)
        if password is None:
            return _record(
                TestResult(False, to, _password_unreadable_reason(), kind=PASSWORD_UNREADABLE)
            )
    smtp = mailer.SmtpSettings(
        host=values.host, port=values.port, security=values.security,
        username=values.username, password=password or "",
        sender_name=values.sender_name, sender_email=values.sender_email,
        reply_to=values.reply_to,
        timeout=min(TEST_TIMEOUT, float(current_app.config.get("SMTP_TIMEOUT", 30))),
    )  # fmt: skip
    text = _("The invoice email settings work.")
    message = mailer.build_message(
        smtp, recipient_name="", to=[to], cc=[], bcc=[],
        subject=_("Test email from hoadon-portal"), text=text, html=f"<p>{text}</p>",
        attachments=[], message_id=mailer.new_message_id(smtp.sender_email),
    )  # fmt: skip
    try:
        code, reply = mailer.send(smtp, message)
    except mailer.SendError as error:
        answer = f"{error.code or ''} {error.message}".strip()
        return _record(TestResult(False, to, test_reason(error.kind), answer,
                                  answered=error.code is not None, kind=error.kind))  # fmt: skip
    return _record(TestResult(True, to, answer=f"{code} {reply}", answered=True))


def _record(result: TestResult) -> TestResult:
    """Keep the last test's outcome on the stored settings, if there are any."""
    with write():
        stored = service.mail_settings()
        if stored is not None:
            stored.last_test_at = utcnow()
            stored.last_test_ok = result.ok
            # A code and the server's words, not our sentence: the next reader may read English.
            stored.last_test_message = json.dumps(
                {"kind": result.kind, "answer": result.answer[:900]}, ensure_ascii=False
            )
    return result


def template_problems(subject: str, text: str, html: str) -> list[str]:
    """Say, per part and line, why a template cannot be used; an empty list means it can."""
    problems = []
    parts = (
        (_("Subject"), subject, False),
        (_("Plain-text body"), text, False),
        (_("HTML body"), html, True),
    )
    for label, source, is_html in parts:
        try:
            templating.check_template(source, html=is_html)
        except templating.TemplateError as error:
            if error.refused:
                problems.append(f"{label}: " + _refused(error.refused, error.line))
            elif error.unknown:
                lines = _variable_lines(source, error.unknown)
                problems += [
                    f"{label}: "
                    + _("unknown variable %(name)s on line %(line)s", name=name, line=lines[name])
                    for name in error.unknown
                ]
            else:
                problems.append(
                    f"{label}: "
                    + _(
                        "syntax error on line %(line)s: %(detail)s",
                        line=error.line,
                        detail=error.detail,
                    )  # fmt: skip
                )
    if problems:
        return problems
    # A template can parse and still fail when rendered ({{ number + 1 }}, a blocked
    # attribute): try it on the sample now rather than fail every send later.
    try:
        render_sample(subject, text, html)
    except TemplateRenderError as error:
        problems.append(error.describe())
    return problems


def _refused(tag: str, line: int | None) -> str:
    what = {"macro": "{% macro %}", "call": "{% call %}"}.get(tag) or _("a recursive loop")
    return _("%(what)s on line %(line)s is not allowed in an email template.", what=what, line=line)


def limit_reason(error: templating.TemplateLimitError) -> str:
    """Say which limit a template went over, in the seller's words."""
    if error.kind == "output":
        return _(
            "it renders more than %(limit)s characters; an email must stay shorter.",
            limit=format_decimal(error.limit),
        )
    if error.kind == "iterations":
        return _(
            "its loops run more than %(limit)s times in all.",
            limit=format_decimal(error.limit),
        )
    if error.kind == "time":
        return _("it takes longer than %(limit)s s to render.", limit=format_decimal(error.limit))
    return _("it uses a number too large for an email (a width, a repeat count or a power).")


def _variable_lines(source: str, names: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for node in _parser.parse(source).find_all(nodes.Name):
        if node.ctx == "load" and node.name in names:
            found[node.name] = min(found.get(node.name, node.lineno), node.lineno)
    return found


class TemplateRenderError(Exception):
    """The template parsed but failed while rendering the sample invoice."""

    def __init__(self, part: str, line: int | None, detail: str):
        super().__init__(detail)
        self.part, self.line, self.detail = part, line, detail

    def describe(self) -> str:
        if self.line:
            return f"{self.part}: " + _(
                "error on line %(line)s: %(detail)s", line=self.line, detail=self.detail
            )
        return f"{self.part}: {self.detail}"


def render_sample(subject: str, text: str, html: str) -> templating.RenderedEmail:
    """Render the given template against the newest invoice, else built-in sample values."""
    variables = sample_variables()
    limits = templating.Limits.from_config(current_app.config)
    sources = {"subject": subject, "text": text, "html": html}
    labels = {"subject": _("Subject"), "text": _("Plain-text body"), "html": _("HTML body")}
    rendered = {}
    for part, label in labels.items():
        # Render each part alone, so that an error names the part that failed.
        only = {key: (value if key == part else "") for key, value in sources.items()}
        try:
            result = templating.render_email(
                only["subject"], only["text"], only["html"], variables, limits
            )
        except templating.TemplateLimitError as error:
            raise TemplateRenderError(label, None, limit_reason(error)) from error
        # Seller-written code may raise anything the sandbox lets through (TypeError,
        # ZeroDivisionError, SecurityError, UndefinedError...): report it, never a 500.
        except Exception as error:  # noqa: BLE001
            raise TemplateRenderError(label, _template_line(error), str(error)) from error
        rendered[part] = getattr(result, part)
    return templating.RenderedEmail(**rendered)


def _template_line(error: Exception) -> int | None:
    """The template line Jinja's rewritten traceback points at, if any."""
    lines = [
        f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == "<template>"
    ]
    return lines[-1] if lines else None


def sample_variables() -> dict[str, str]:
    """The newest invoice's values, or built-in sample values when there is no invoice yet."""
    invoice = db.session.scalar(db.select(Invoice).order_by(Invoice.id.desc()).limit(1))
    if invoice is None:
        invoice = Invoice(
            form=1, series="K26TAA", number=123, issued_on=date.today(),
            seller_name="Công ty TNHH Ánh Dương", seller_tax_code="0101234567",
            buyer_name="Công ty Cổ phần Nguyễn Hoàng", buyer_person="Nguyễn Văn An",
            total_amount=Decimal("1089000"), currency="VND",
            amount_in_words="Một triệu không trăm tám mươi chín nghìn đồng",
            lookup_code="ABCD234567",
        )  # fmt: skip
    return service.template_variables(invoice, "", service.buyer_link("…"))


def save_template(subject: str, text: str, html: str) -> EmailTemplate:
    """Store the seller's invoice email template (the caller checked it)."""
    with write():
        row = db.session.scalar(db.select(EmailTemplate).filter_by(key="invoice"))
        if row is None:
            row = EmailTemplate(key="invoice")
            db.session.add(row)
        row.subject, row.body_text, row.body_html = subject, text, html
        audit.record("settings.changed", target=row,
                     details={"section": "email_template", "changes": audit.changes(row)})  # fmt: skip
        row.updated_at = utcnow()
    return row


def restore_default_template() -> None:
    """Drop the seller's template, so the built-in one is used again."""
    with write():
        db.session.execute(db.delete(EmailTemplate).filter_by(key="invoice"))
        audit.record("settings.changed", target=("email_template", None, ""),
                     details={"section": "email_template", "restored_default": True})  # fmt: skip
