"""Gửi hóa đơn cho KH hàng loạt: the draft page, its previews and pre-flight, and the batch page."""

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.auth.views import role_required
from portal.bulk import merge, service
from portal.bulk.forms import ConditionsForm
from portal.extensions import db
from portal.invoices import service as listing
from portal.models import Batch, Invoice
from portal.sending import service as sending
from portal.statuses import BatchStatus, tax_labels
from portal.web import ids_of, render

bp = Blueprint("bulk", __name__, url_prefix="/bulk")


def _batch(batch_id: int, draft: bool | None = None) -> Batch:
    batch = db.session.get(Batch, batch_id)
    if batch is None or (draft is not None and (batch.status == BatchStatus.DRAFT) != draft):
        abort(404)
    return batch


def _form(**kwargs) -> ConditionsForm:
    form = ConditionsForm(**kwargs)
    form.set_choices(listing.series_choices(), tax_labels())
    return form


@bp.get("/")
@role_required("sender")
def index():
    """The bulk page: conditions to load invoices by, and the latest batches."""
    return render_template("bulk/index.html", form=_form(), batches=service.batches(10))


@bp.post("/load")
@role_required("sender")
def load():
    """Lấy dữ liệu: a draft of the invoices matching the conditions, shown page by page."""
    form = _form()
    if not form.validate():
        return render("bulk/index.html", "bulk/_conditions_errors.html", form=form,
                      batches=service.batches(10)), 422  # fmt: skip
    filters = listing.Filters(
        tab=form.tab.data, period=form.period.data, date_from=form.date_from.data,
        date_to=form.date_to.data, q=(form.q.data or "").strip(), series=form.series.data or "",
        tax_status=form.tax_status.data if form.tax_status.data in tax_labels() else "",
        received=form.received.data if form.received.data in ("yes", "no") else "",
    )  # fmt: skip
    if filters.date_from or filters.date_to:
        filters.period = "custom"
    batch = service.create_draft(current_user.id, filters)
    if not request.htmx:
        return redirect(url_for("bulk.draft", batch_id=batch.id))
    return _draft_fragment(batch, 1)


def _draft_fragment(batch: Batch, page: int, template: str = "bulk/_draft.html"):
    rows = service.rows_page(batch, page)
    return render_template(template, batch=batch, page=rows, summary=service.summary(batch))


@bp.get("/drafts/<int:batch_id>")
@role_required("sender")
def draft(batch_id: int):
    """A draft's invoices, one page at a time."""
    batch = _batch(batch_id, draft=True)
    page = request.args.get("page", 1, type=int)
    rows = service.rows_page(batch, page)
    return render("bulk/draft.html", "bulk/_draft.html", batch=batch, page=rows,
                  summary=service.summary(batch), form=_form())  # fmt: skip


@bp.post("/drafts/<int:batch_id>/rows/<int:invoice_id>")
@role_required("sender")
def edit_row(batch_id: int, invoice_id: int):
    """Keep a row's recipients as typed; answer the row (its errors inline) and the totals."""
    batch = _batch(batch_id, draft=True)
    form = request.form
    row = service.edit_row(batch.id, invoice_id, form.get("name", ""), form.get("to", ""),
                           form.get("cc", ""), form.get("save") == "1")  # fmt: skip
    return render_template("bulk/_row.html", batch=batch, row=row, summary=service.summary(batch),
                           oob_summary=True)  # fmt: skip


@bp.post("/drafts/<int:batch_id>/tick")
@role_required("sender")
def tick(batch_id: int):
    """Tick or untick rows (one, or the page's); answer the totals."""
    batch = _batch(batch_id, draft=True)
    ids = ids_of(request.form.getlist("ids"), 500)
    service.tick(batch.id, ids, request.form.get("selected") == "1")
    return render_template("bulk/_summary.html", batch=batch, summary=service.summary(batch),
                           oob=False)  # fmt: skip


@bp.post("/drafts/<int:batch_id>/tick-all")
@role_required("sender")
def tick_all(batch_id: int):
    """Tick all invoices that match the conditions (every page), or none."""
    batch = _batch(batch_id, draft=True)
    service.tick_all(batch.id, request.form.get("selected") == "1")
    return _draft_fragment(db.session.get(Batch, batch.id), request.form.get("page", 1, type=int))


@bp.get("/drafts/<int:batch_id>/preflight")
@role_required("sender")
def preflight(batch_id: int):
    """Before anything goes: how many, sent before, bad addresses, limits, the time it takes."""
    batch = _batch(batch_id, draft=True)
    return render_template("bulk/_preflight.html", batch=batch, check=service.preflight(batch),
                           settings=sending.mail_settings())  # fmt: skip


@bp.get("/drafts/<int:batch_id>/rows/<int:invoice_id>/preview")
@role_required("sender")
def preview(batch_id: int, invoice_id: int):
    """Xem: the invoice and its email exactly as they will go out."""
    batch = _batch(batch_id, draft=True)
    invoice = db.session.get(Invoice, invoice_id) or abort(404)
    name, to, cc, _errors = service.recipients(batch, [invoice_id])[invoice_id]
    recipients = sending.parse_recipients(name, to, cc)
    link = sending.buyer_link("<" + _("personal link created when sending") + ">")
    return render("bulk/preview.html", "sending/_preview.html", invoice=invoice, batch=batch,
                  email=sending.render_invoice_email(invoice, recipients.name, link),
                  files=sending.attachments(invoice), recipients=recipients,
                  settings=sending.mail_settings())  # fmt: skip


@bp.get("/drafts/<int:batch_id>/invoices.pdf")
@role_required("sender")
def selected_pdf(batch_id: int):
    """Xem hóa đơn đã chọn: every selected invoice in one PDF, a page or more each."""
    batch = _batch(batch_id, draft=True)
    ids = service.selected_ids(batch)
    if not ids:
        flash(_("Select the invoices to view."), "error")
        return redirect(url_for("bulk.draft", batch_id=batch.id))
    data = merge.selected_pdf(ids)
    response = Response(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="hoa-don-da-chon-{batch.id}.pdf"'
    return response


@bp.get("/drafts/<int:batch_id>/emails")
@role_required("sender")
def emails(batch_id: int):
    """The emails of the selected invoices, as they will go out, ten a page."""
    batch = _batch(batch_id, draft=True)
    ids = service.selected_ids(batch)
    per_page = 10
    pages = max(1, -(-len(ids) // per_page))
    page = min(max(1, request.args.get("page", 1, type=int)), pages)
    chosen = ids[(page - 1) * per_page : page * per_page]
    who = service.recipients(batch, chosen)
    link = sending.buyer_link("<" + _("personal link created when sending") + ">")
    items = []
    for invoice_id in chosen:
        invoice = db.session.get(Invoice, invoice_id)
        name, to, cc, errors = who[invoice_id]
        recipients = sending.parse_recipients(name, to, cc)
        items.append((invoice, recipients, errors,
                      sending.render_invoice_email(invoice, recipients.name, link)))  # fmt: skip
    return render("bulk/emails.html", "bulk/_emails.html", batch=batch, items=items, page=page,
                  pages=pages, count=len(ids), settings=sending.mail_settings())  # fmt: skip


@bp.post("/drafts/<int:batch_id>/send")
@role_required("sender")
def send(batch_id: int):
    """Send the batch: stored at once, then worked to its end whatever the browser does."""
    batch = _batch(batch_id, draft=True)
    if sending.mail_settings() is None:
        flash(_("Set up the invoice email settings before sending."), "error")
        return redirect(url_for("bulk.draft", batch_id=batch.id))
    started = service.start(batch.id, current_user.id)
    message = _("%(count)s invoices are being sent.", count=started.queued)
    if started.skipped_in_flight:
        message += " " + _("%(count)s already being sent were left alone.",
                           count=started.skipped_in_flight)  # fmt: skip
    if started.skipped_without_address:
        message += " " + _("%(count)s without a valid address were not sent.",
                           count=started.skipped_without_address)  # fmt: skip
    flash(message)
    target = url_for("bulk.batch", batch_id=batch.id)
    if request.htmx:
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


@bp.get("/batches")
@role_required("viewer")
def batches():
    """Every batch: who started it, when, and how it went."""
    rows = [(batch, service.stats(batch)) for batch in service.batches(200)]
    return render_template("bulk/batches.html", rows=rows)


@bp.get("/batches/<int:batch_id>")
@role_required("viewer")
def batch(batch_id: int):
    """The batch page: progress, rate, time left, what sets the pace, and every row's status."""
    batch = _batch(batch_id, draft=False)
    page = request.args.get("page", 1, type=int)
    rows, page, pages = service.batch_rows(batch, page)
    return render_template("bulk/batch.html", batch=batch, stats=service.stats(batch), rows=rows,
                           page=page, pages=pages)  # fmt: skip


@bp.get("/batches/<int:batch_id>/progress")
@role_required("viewer")
def progress(batch_id: int):
    """The batch page's one poller: the progress, and the rows of the page shown (out of band)."""
    batch = _batch(batch_id, draft=False)
    rows, page, pages = service.batch_rows(batch, request.args.get("page", 1, type=int))
    return render_template("bulk/_progress.html", batch=batch, stats=service.stats(batch),
                           rows=rows, page=page, pages=pages, oob_rows=True)  # fmt: skip


def _act(batch_id: int, action, done: str):
    batch = _batch(batch_id, draft=False)
    action(batch.id)
    flash(done)
    return redirect(url_for("bulk.batch", batch_id=batch.id))


@bp.post("/batches/<int:batch_id>/pause")
@role_required("sender")
def pause(batch_id: int):
    return _act(batch_id, lambda i: service.pause(i, user_id=current_user.id),
                _("Paused: emails in flight finish, nothing new starts."))  # fmt: skip


@bp.post("/batches/<int:batch_id>/resume")
@role_required("sender")
def resume(batch_id: int):
    return _act(batch_id, service.resume, _("Resumed where it stopped."))


@bp.post("/batches/<int:batch_id>/cancel")
@role_required("sender")
def cancel(batch_id: int):
    return _act(batch_id, service.cancel, _("The rest of the batch was cancelled."))


@bp.post("/batches/<int:batch_id>/retry-failed")
@role_required("sender")
def retry_failed(batch_id: int):
    return _act(batch_id, lambda i: service.retry_failed(i, current_user.id),
                _("The failed invoices are being sent again."))  # fmt: skip


PACES = {
    "account": _l("the account's rate per minute sets the pace"),
    "daily": _l("the account's daily limit is reached: the rest goes tomorrow"),
    "throttled": _l("the mail server asked to slow down"),
    "pdf": _l("the PDFs are being rendered"),
    "workers": _l("the workers set the pace"),
}


@bp.app_template_global()
def pace_label(pace: str) -> str:
    return str(PACES.get(pace, ""))


@bp.app_template_filter()
def duration(seconds: float | None) -> str:
    """Seconds in the reader's words: "2 h 5 min", "3 min 20 s", "40 s"."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return _("%(h)s h %(m)s min", h=hours, m=minutes)
    if minutes:
        return _("%(m)s min %(s)s s", m=minutes, s=seconds)
    return _("%(s)s s", s=seconds)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
