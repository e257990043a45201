"""The seller's home (the issued-invoice list) and the invoice page with its files."""

from flask import Blueprint, abort, render_template, request
from flask_babel import lazy_gettext as _l

from portal.auth.views import role_required
from portal.extensions import db
from portal.invoices import service
from portal.invoices.forms import FilterForm
from portal.models import Invoice
from portal.rendering.service import invoice_file
from portal.statuses import SendStatus, tax_labels
from portal.web import ids_of, render

bp = Blueprint("invoices", __name__)

TAB_LABELS = {
    "all": _l("All"),
    "not_sent": _l("Not sent to customer"),
    "failed": _l("Send failed"),
    "sent": _l("Invoice sent to customer"),
}


STATE_LABELS = {
    "replaced": _l("Replaced"),
    "adjusted": _l("Adjusted"),
    "cancelled": _l("Cancelled"),
}


@bp.app_template_global()
def invoice_state_label(state: str) -> str:
    return str(STATE_LABELS.get(state, state))


def _filters(form: FilterForm) -> service.Filters:
    """The list's filters from the query string, every value checked or defaulted."""
    period = form.period.data if form.period.data in service.PERIODS else "this_month"
    tab = form.tab.data if form.tab.data in service.TABS else "all"
    filters = service.Filters(
        tab=tab,
        period=period,
        date_from=form.date_from.data if not form.date_from.errors else None,
        date_to=form.date_to.data if not form.date_to.errors else None,
        q=(form.q.data or "").strip()[:100],
        series=form.series.data or "",
        tax_status=form.tax_status.data if form.tax_status.data in tax_labels() else "",
        received=form.received.data if form.received.data in ("yes", "no") else "",
        sort=sort if (sort := form.sort.data or "").lstrip("-") in service.SORTS else "-date",
        page=form.page.data if isinstance(form.page.data, int) and not form.page.errors else 1,
    )
    if filters.date_from or filters.date_to:
        # Dates typed in mean a custom period, whatever the period box says.
        filters.period = "custom"
    return filters


@bp.get("/")
@role_required("viewer")
def index():
    """List issued invoices by tab, period, search and filters."""
    form = FilterForm(request.args)
    form.set_choices(service.series_choices(), tax_labels())
    form.validate()
    filters = _filters(form)
    # The hidden fields carry the cleaned values on, not whatever the URL held.
    form.tab.data, form.sort.data, form.period.data = filters.tab, filters.sort, filters.period
    page = service.list_invoices(filters)
    return render(
        "invoices/index.html",
        "invoices/_table.html",
        form=form,
        filters=filters,
        page=page,
        tabs=TAB_LABELS,
        last_deliveries=service.last_deliveries(_explained(page.items)),
        tax_alarms=_tax_alarms(page.items),
    )


def _tax_alarms(invoices: list[Invoice]) -> dict[int, str]:
    from portal.tax.service import alarms

    return alarms([i.id for i in invoices if i.tax_status == "tax_pending"])


def _explained(invoices: list[Invoice]) -> list[int]:
    """The invoices whose row shows a reason (failed, unknown, waiting to retry)."""
    return [i.id for i in invoices if SendStatus(i.send_status).has_reason]


@bp.get("/invoices/statuses")
@role_required("viewer")
def statuses():
    """Answer the list's poller: the rows it follows (status and actions) and the tab counts."""
    form = FilterForm(request.args)
    form.validate()
    filters = _filters(form)
    ids = ids_of(request.args.getlist("ids"), 200)
    invoices = db.session.scalars(db.select(Invoice).where(Invoice.id.in_(ids))).all()
    pending = [i for i in invoices if SendStatus(i.send_status).is_active]
    counts, over = service.tab_counts(filters)
    page = service.Page(invoices, 0, 1, 1, 1, counts=counts, over=over)
    return render_template(
        "invoices/_statuses.html",
        invoices=invoices,
        pending=pending,
        filters=filters,
        page=page,
        tabs=TAB_LABELS,
        last_deliveries=service.last_deliveries(_explained(invoices)),
        tax_alarms=_tax_alarms(invoices),
    )


@bp.app_template_global()
def list_url(**changes) -> str:
    """The list's URL with the current filters and some changed (back to page 1 unless given)."""
    from flask import url_for

    args = {k: v for k, v in request.args.items() if v and k not in ("page", "ids")}
    args.update({k: v for k, v in changes.items() if v is not None})
    return url_for("invoices.index", **args)


def _invoice(invoice_id: int) -> Invoice:
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


@bp.get("/invoices/<int:invoice_id>")
@role_required("viewer")
def show(invoice_id: int):
    """The invoice in its legal layout, with its sending history and the buyer's receipt."""
    from portal.buyer.views import timeline
    from portal.sending.service import deliveries_of
    from portal.tax.service import view as tax_view

    invoice = _invoice(invoice_id)
    return render_template(
        "invoices/show.html", invoice=invoice, deliveries=deliveries_of(invoice.id),
        visits=timeline(invoice.id), tax=tax_view(invoice.id),
    )  # fmt: skip


@bp.get("/invoices/<int:invoice_id>/<any(pdf, xml):kind>")
@role_required("viewer")
def file(invoice_id: int, kind: str):
    """The invoice's PDF (shown in the browser) or its signed XML, byte for byte."""
    return invoice_file(_invoice(invoice_id), kind, inline=kind == "pdf")
