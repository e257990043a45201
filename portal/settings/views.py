"""Settings pages: the invoice email (with a test send) and the email template editor."""

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _

from portal.auth.views import role_required
from portal.database import begin_write
from portal.extensions import db
from portal.models import EmailTemplate, Invoice, InvoiceSeries, MailSettings, Seller
from portal.sending import mailer, service, templating
from portal.sending.reasons import explain
from portal.sending.secrets_box import decrypt, encrypt
from portal.settings.forms import CompanyForm, MailSettingsForm, SeriesForm, TemplateForm
from portal.types import utcnow

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.route("/email", methods=["GET", "POST"])
@role_required("admin")
def email():
    """Show and save the invoice email settings (Thiết lập email gửi hóa đơn)."""
    settings = service.mail_settings()
    form = MailSettingsForm(obj=settings)
    if form.validate_on_submit():
        begin_write()
        settings = service.mail_settings()
        if settings is None:
            settings = MailSettings(host="", sender_email="")
            db.session.add(settings)
        for name in (
            "host",
            "port",
            "security",
            "username",
            "sender_name",
            "sender_email",
            "reply_to",
        ):
            setattr(settings, name, getattr(form, name).data or ("" if name != "port" else 587))
        if form.clear_password.data:
            settings.password_encrypted = ""
        elif form.password.data:
            settings.password_encrypted = encrypt(form.password.data)
        settings.updated_at = utcnow()
        db.session.commit()
        flash(_("Email settings saved."))
        return redirect(url_for("settings.email"))
    password_lost = settings is not None and decrypt(settings.password_encrypted) is None
    return render_template(
        "settings/email.html", form=form, settings=settings, password_lost=password_lost
    )


@bp.post("/email/test")
@role_required("admin")
def test_email():
    """Send a test email with the form's values (the stored password if the field is empty)."""
    form = MailSettingsForm()
    if not form.validate():
        return render_template("settings/_test_result.html", ok=False, errors=form.errors), 422
    stored = service.mail_settings()
    password = form.password.data or (decrypt(stored.password_encrypted) if stored else "") or ""
    smtp = mailer.SmtpSettings(
        host=form.host.data, port=form.port.data, security=form.security.data,
        username=form.username.data or "", password=password,
        sender_name=form.sender_name.data or "", sender_email=form.sender_email.data,
        reply_to=form.reply_to.data or "", timeout=15,
    )  # fmt: skip
    to = form.test_to.data or form.sender_email.data
    message = mailer.build_message(
        smtp, recipient_name="", to=[to], cc=[], bcc=[],
        subject=_("Test email from hoadon-portal"),
        text=_("The invoice email settings work."), html="<p>" + _("The invoice email settings work.") + "</p>",
        attachments=[], message_id=mailer.new_message_id(smtp.sender_email),
    )  # fmt: skip
    try:
        code, answer = mailer.send(smtp, message)
        ok, text = True, f"{code} {answer}"
    except mailer.SendError as error:
        ok, text = False, explain(error.kind, error.code, error.message)
    if stored is not None:
        begin_write()
        stored = service.mail_settings()
        stored.last_test_at, stored.last_test_ok, stored.last_test_message = (
            utcnow(),
            ok,
            text[:1000],
        )
        db.session.commit()
    return render_template("settings/_test_result.html", ok=ok, text=text, to=to)


def _sample_invoice() -> Invoice:
    newest = db.session.scalar(db.select(Invoice).order_by(Invoice.id.desc()).limit(1))
    if newest is not None:
        return newest
    from datetime import date
    from decimal import Decimal

    return Invoice(
        form=1, series="K26TAA", number=123, issued_on=date.today(),
        seller_name="Công ty TNHH Ánh Dương", seller_tax_code="0101234567",
        buyer_name="Công ty Cổ phần Nguyễn Hoàng", buyer_person="Nguyễn Văn An",
        total_amount=Decimal("1089000"), currency="VND",
        amount_in_words="Một triệu không trăm tám mươi chín nghìn đồng", lookup_code="ABCD234567",
    )  # fmt: skip


@bp.route("/email-template", methods=["GET", "POST"])
@role_required("admin")
def email_template():
    """Edit the invoice email's subject and bodies; unknown variables are refused."""
    current = service.email_template()
    form = TemplateForm(obj=current)
    errors = []
    if form.validate_on_submit():
        errors = _template_errors(form)
        if not errors:
            begin_write()
            row = db.session.scalar(db.select(EmailTemplate).filter_by(key="invoice"))
            if row is None:
                row = EmailTemplate(key="invoice")
                db.session.add(row)
            row.subject, row.body_text, row.body_html = (
                form.subject.data,
                form.body_text.data,
                form.body_html.data,
            )
            row.updated_at = utcnow()
            db.session.commit()
            flash(_("Email template saved."))
            return redirect(url_for("settings.email_template"))
    return render_template(
        "settings/template.html", form=form, errors=errors, variables=templating.VARIABLES,
        preview=_preview(form) if not errors else None,
    )  # fmt: skip


@bp.post("/email-template/default")
@role_required("admin")
def restore_template():
    """Go back to the built-in template."""
    begin_write()
    db.session.execute(db.delete(EmailTemplate).filter_by(key="invoice"))
    db.session.commit()
    flash(_("The default email template is back."))
    return redirect(url_for("settings.email_template"))


@bp.post("/email-template/preview")
@role_required("admin")
def preview_template():
    """Render the form's current template against a sample invoice (htmx, as the seller types)."""
    form = TemplateForm()
    errors = _template_errors(form)
    return render_template("settings/_template_preview.html", errors=errors,
                           preview=None if errors else _preview(form))  # fmt: skip


def _template_errors(form: TemplateForm) -> list[str]:
    errors = []
    for field, html in ((form.subject, False), (form.body_text, False), (form.body_html, True)):
        try:
            templating.check_template(field.data or "", html=html)
        except templating.TemplateError as error:
            if error.unknown:
                reason = _("unknown variable %(names)s", names=", ".join(error.unknown))
            else:
                reason = _(
                    "syntax error on line %(line)s: %(detail)s",
                    line=error.line,
                    detail=error.detail,
                )
            errors.append(f"{field.label.text}: {reason}")
    return errors


def _preview(form: TemplateForm) -> templating.RenderedEmail:
    invoice = _sample_invoice()
    variables = service.template_variables(invoice, invoice.buyer_person, service.buyer_link("…"))
    return templating.render_email(form.subject.data or "", form.body_text.data or "",
                                   form.body_html.data or "", variables)  # fmt: skip


@bp.route("/company", methods=["GET", "POST"])
@role_required("admin")
def company():
    """The seller's company profile, which invoices are issued and imported for."""
    seller = db.session.scalar(db.select(Seller).limit(1))
    form = CompanyForm(obj=seller)
    if form.validate_on_submit():
        begin_write()
        seller = db.session.scalar(db.select(Seller).limit(1))
        if seller is None:
            seller = Seller(name="", tax_code="")
            db.session.add(seller)
        form.populate_obj(seller)
        db.session.commit()
        flash(_("Company profile saved."))
        return redirect(url_for("settings.company"))
    return render_template("settings/company.html", form=form, seller=seller)


@bp.route("/series", methods=["GET", "POST"])
@role_required("admin")
def series():
    """The invoice forms and series (1K26TAA) and the next number each will hand out."""
    form = SeriesForm()
    if form.validate_on_submit():
        begin_write()
        exists = db.session.scalar(
            db.select(InvoiceSeries.id).filter_by(form=int(form.form.data), series=form.series.data)
        )
        if exists:
            form.series.errors.append(_("This series exists already."))
            db.session.rollback()
        else:
            db.session.add(InvoiceSeries(form=int(form.form.data), series=form.series.data))
            db.session.commit()
            flash(_("Series added."))
            return redirect(url_for("settings.series"))
    rows = db.session.scalars(db.select(InvoiceSeries).order_by(InvoiceSeries.series)).all()
    return render_template("settings/series.html", form=form, rows=rows)
