"""Settings pages: the invoice email (with a test send) and the email template editor."""

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import audit
from portal.auth.views import role_required
from portal.certificates import service as certificate_service
from portal.database import write
from portal.extensions import db
from portal.models import InvoiceSeries, Seller
from portal.sending import service, templating
from portal.settings import service as settings_service
from portal.settings.forms import (
    CertificateFileForm,
    CompanyForm,
    MailSettingsForm,
    Pkcs12Form,
    SeriesForm,
    TaxSettingsForm,
    TemplateForm,
)
from portal.tax import service as tax_service
from portal.tax.gateway import PROVIDERS
from portal.web import render

bp = Blueprint("settings", __name__, url_prefix="/settings")
# base.html calls it for admins: a banner when the signing certificate expires soon.
bp.add_app_template_global(certificate_service.expiry_warning, "signing_certificate_warning")


@bp.app_template_global()
def last_mail_test(settings) -> str:
    """The last test email's reason (in the reader's language) and the server's answer."""
    return settings_service.last_test_summary(settings)


@bp.route("/email", methods=["GET", "POST"])
@role_required("admin")
def email():
    """Show and save the invoice email settings (Thiết lập email gửi hóa đơn)."""
    settings = service.mail_settings()
    form = MailSettingsForm(obj=settings)
    if form.validate_on_submit():
        if problem := settings_service.password_needed_again(form.values()):
            form.password.errors = [problem]
            return _email_page(form, settings, status=422)
        settings_service.save_mail_settings(form.values())
        flash(_("Email settings saved."))
        return redirect(url_for("settings.email"))
    return _email_page(form, settings)


def _email_page(form: MailSettingsForm, settings, result=None, status=200, tested=False):
    return render(
        "settings/email.html", "settings/_test_result.html",
        form=form, settings=settings, result=result, tested=tested,
        password_lost=settings_service.password_unreadable(settings),
    ), status  # fmt: skip


@bp.post("/email/test")
@role_required("admin")
def test_email():
    """Send a test email with the form's values (the stored password if the field is empty)."""
    form = MailSettingsForm()
    if not form.validate():
        return _email_page(form, service.mail_settings(), status=422, tested=True)
    if problem := settings_service.password_needed_again(form.values()):
        form.password.errors = [problem]
        return _email_page(form, service.mail_settings(), status=422, tested=True)
    to = form.test_to.data or form.sender_email.data
    result = settings_service.send_test(form.values(), to)
    return _email_page(form, service.mail_settings(), result, tested=True)


@bp.route("/email-template", methods=["GET", "POST"])
@role_required("admin")
def email_template():
    """Edit the invoice email's subject and bodies; unknown variables are refused."""
    form = TemplateForm(obj=service.email_template())
    problems = []
    if form.validate_on_submit():
        problems = settings_service.template_problems(*_sources(form))
        if not problems:
            settings_service.save_template(*_sources(form))
            flash(_("Email template saved."))
            return redirect(url_for("settings.email_template"))
    preview, preview_problems = _preview(form) if not problems else (None, [])
    return render_template(
        "settings/template.html", form=form, errors=problems or preview_problems,
        variables=templating.VARIABLES, preview=preview,
    )  # fmt: skip


@bp.post("/email-template/default")
@role_required("admin")
def restore_template():
    """Go back to the built-in template."""
    settings_service.restore_default_template()
    flash(_("The default email template is back."))
    return redirect(url_for("settings.email_template"))


@bp.post("/email-template/preview")
@role_required("admin")
def preview_template():
    """Render the form's current template against a sample invoice (htmx, as the seller types)."""
    preview, problems = _preview(TemplateForm())
    return render_template("settings/_template_preview.html", errors=problems, preview=preview)


def _sources(form: TemplateForm) -> tuple[str, str, str]:
    return form.subject.data or "", form.body_text.data or "", form.body_html.data or ""


def _preview(form: TemplateForm):
    problems = settings_service.template_problems(*_sources(form))
    if problems:
        return None, problems
    return settings_service.render_sample(*_sources(form)), []


@bp.route("/company", methods=["GET", "POST"])
@role_required("admin")
def company():
    """The seller's company profile, which invoices are issued and imported for."""
    seller = db.session.scalar(db.select(Seller).limit(1))
    form = CompanyForm(obj=seller)
    if form.validate_on_submit():
        with write():
            seller = db.session.scalar(db.select(Seller).limit(1))
            if seller is None:
                seller = Seller(name="", tax_code="")
                db.session.add(seller)
            form.populate_obj(seller)
            audit.record("settings.changed", target=seller,
                         details={"section": "company", "changes": audit.changes(seller)})  # fmt: skip
        flash(_("Company profile saved."))
        return redirect(url_for("settings.company"))
    return render_template("settings/company.html", form=form, seller=seller)


@bp.route("/series", methods=["GET", "POST"])
@role_required("admin")
def series():
    """The invoice forms and series (1K26TAA) and the next number each will hand out."""
    form = SeriesForm()
    if form.validate_on_submit():
        with write():
            exists = db.session.scalar(
                db.select(InvoiceSeries.id).filter_by(
                    form=int(form.form.data), series=form.series.data
                )
            )
            if not exists:
                row = InvoiceSeries(form=int(form.form.data), series=form.series.data)
                db.session.add(row)
                audit.record("settings.changed", target=row,
                             details={"section": "series", "changes": audit.changes(row)})  # fmt: skip
        if exists:
            form.series.errors.append(_("This series exists already."))
        else:
            flash(_("Series added."))
            return redirect(url_for("settings.series"))
    rows = db.session.scalars(db.select(InvoiceSeries).order_by(InvoiceSeries.series)).all()
    return render_template("settings/series.html", form=form, rows=rows)


def _tax_form(settings=None, **kwargs) -> TaxSettingsForm:
    form = TaxSettingsForm(obj=settings, **kwargs)
    form.provider.choices = [(key, label) for key, (label, _adapter) in PROVIDERS.items()]
    if settings is not None and request.method == "GET":
        form.wait_for_acceptance.data = "1" if settings.wait_for_acceptance else "0"
        form.show_holidays(settings.holidays)
    return form


def _tax_values(form: TaxSettingsForm) -> tax_service.TaxValues:
    return tax_service.TaxValues(
        provider=form.provider.data, endpoint=form.endpoint.data, username=form.username.data or "",
        password=form.password.data or "", sender_code=form.sender_code.data,
        callback_secret=form.callback_secret.data or "",
        wait_for_acceptance=form.wait_for_acceptance.data == "1", holidays=form.holidays.data or "",
    )  # fmt: skip


def _tax_page(form, settings, result=None, status=200):
    callback = None
    if settings is not None:
        callback = current_app.config["PORTAL_BASE_URL"].rstrip("/") + url_for(
            "tax.callback", provider=settings.provider
        )
    return render(
        "settings/tax.html", "settings/_tax_test.html", form=form, settings=settings,
        result=result, callback=callback,
    ), status  # fmt: skip


@bp.route("/tax", methods=["GET", "POST"])
@role_required("admin")
def tax():
    """Thiết lập kết nối CQT: the T-VAN, its credentials, and whether emails wait for CQT."""
    settings = tax_service.tax_settings()
    form = _tax_form(settings)
    if form.validate_on_submit():
        tax_service.save_tax_settings(_tax_values(form))
        flash(_("Tax authority connection saved."))
        return redirect(url_for("settings.tax"))
    return _tax_page(form, settings)


@bp.post("/tax/test")
@role_required("admin")
def test_tax():
    """Test the connection with the form's values; show the provider's exact answer."""
    form = _tax_form()
    if not form.validate():
        return _tax_page(form, tax_service.tax_settings(), status=422)
    result = tax_service.test_connection(_tax_values(form))
    return _tax_page(form, tax_service.tax_settings(), result)


def _certificates_page(p12_form=None, cert_form=None, status=200):
    rows = [
        (row, certificate_service.validity(row.not_before, row.not_after))
        for row in certificate_service.certificates()
    ]
    return render_template(
        "settings/certificates.html", rows=rows,
        p12_form=p12_form or Pkcs12Form(prefix="p12"),
        cert_form=cert_form or CertificateFileForm(prefix="cert"),
        warning_days=certificate_service.EXPIRY_WARNING_DAYS,
    ), status  # fmt: skip


@bp.get("/certificates")
@role_required("admin")
def certificates():
    """Chữ ký số: the registered certificates, and forms to register more."""
    return _certificates_page()


@bp.post("/certificates/p12")
@role_required("admin")
def add_pkcs12():
    """Register a PKCS#12 file: its certificate signs the invoices we issue."""
    form = Pkcs12Form(prefix="p12")
    if not form.validate():
        return _certificates_page(p12_form=form, status=422)
    try:
        row = certificate_service.register_pkcs12(
            form.file.data.read(), form.password.data or "", current_user.id
        )
    except certificate_service.CertificateRefused as exc:
        form.file.errors = [str(exc)]
        return _certificates_page(p12_form=form, status=422)
    flash(
        _(
            "Certificate %(serial)s registered; it signs the invoices issued here.",
            serial=row.serial,
        )
    )
    return redirect(url_for("settings.certificates"))


@bp.post("/certificates/file")
@role_required("admin")
def add_certificate():
    """Register a certificate alone: invoices signed with it by other software count."""
    form = CertificateFileForm(prefix="cert")
    if not form.validate():
        return _certificates_page(cert_form=form, status=422)
    try:
        row = certificate_service.register_certificate(form.file.data.read(), current_user.id)
    except certificate_service.CertificateRefused as exc:
        form.file.errors = [str(exc)]
        return _certificates_page(cert_form=form, status=422)
    flash(_("Certificate %(serial)s registered.", serial=row.serial))
    return redirect(url_for("settings.certificates"))


@bp.post("/certificates/<int:certificate_id>/remove")
@role_required("admin")
def remove_certificate(certificate_id: int):
    """Remove a certificate: its signatures stop counting (a lost token, a revoked key)."""
    row = certificate_service.remove(certificate_id) or abort(404)
    flash(_("Certificate %(serial)s removed; its signatures no longer count.", serial=row.serial))
    return redirect(url_for("settings.certificates"))
