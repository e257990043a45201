"""The send dialog: prefilled recipients, preview, send, and the live send status."""

from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.auth.views import role_required
from portal.extensions import db
from portal.models import Delivery, Invoice
from portal.outbox import service as outbox
from portal.sending import service
from portal.sending.forms import SendForm
from portal.statuses import SendStatus
from portal.web import render

bp = Blueprint("sending", __name__)


def _invoice(invoice_id: int) -> Invoice:
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


def _dialog_context(invoice: Invoice, form: SendForm, **extra) -> dict:
    from portal.buyer.service import live_links

    return dict(
        invoice=invoice,
        form=form,
        last=service.last_delivery(invoice.id),
        sends=db.session.scalar(
            db.select(db.func.count(Delivery.id)).filter_by(invoice_id=invoice.id)
        ),
        live=live_links(invoice.id),
        settings_ready=service.mail_settings() is not None,
        **extra,
    )


@bp.get("/invoices/<int:invoice_id>/send")
@role_required("sender")
def dialog(invoice_id: int):
    """Show the send dialog prefilled with the invoice's buyer."""
    invoice = _invoice(invoice_id)
    last = service.last_delivery(invoice.id)
    form = SendForm(
        formdata=None,
        recipient_name=(last.recipient_name if last else "")
        or invoice.buyer_person
        or invoice.buyer_name,
        to=(
            last.to_addresses.replace(";", "; ")
            if last and last.to_addresses
            else invoice.buyer_email
        ),
        cc=last.cc_addresses.replace(";", "; ") if last else "",
    )
    return render("sending/dialog.html", "sending/_dialog.html", **_dialog_context(invoice, form))


@bp.post("/invoices/<int:invoice_id>/send/check")
@role_required("sender")
def check(invoice_id: int):
    """Validate the recipient fields as the seller types (htmx)."""
    invoice = _invoice(invoice_id)
    form = SendForm()
    form.validate()
    return render_template("sending/_field_errors.html", **_dialog_context(invoice, form))


@bp.get("/invoices/<int:invoice_id>/send/preview")
@role_required("sender")
def preview(invoice_id: int):
    """Show the email exactly as it will go out, with its attachments."""
    invoice = _invoice(invoice_id)
    args = request.args
    recipients = service.parse_recipients(
        args.get("recipient_name", ""), args.get("to", invoice.buyer_email),
        args.get("cc", ""), args.get("bcc", ""),
    )  # fmt: skip
    link = service.buyer_link("<" + _("personal link created when sending") + ">")
    email = service.render_invoice_email(invoice, recipients.name, link)
    files = service.attachments(invoice)
    settings = service.mail_settings()
    return render(
        "sending/preview.html",
        "sending/_preview.html",
        invoice=invoice,
        email=email,
        files=files,
        recipients=recipients,
        settings=settings,
    )


@bp.post("/invoices/<int:invoice_id>/send")
@role_required("sender")
def send(invoice_id: int):
    """Queue the delivery and close the dialog; the row then follows its status."""
    invoice = _invoice(invoice_id)
    form = SendForm()
    if not form.validate():
        return render(
            "sending/dialog.html", "sending/_dialog.html", **_dialog_context(invoice, form)
        ), 422
    recipients = service.parse_recipients(
        form.recipient_name.data, form.to.data, form.cc.data, form.bcc.data
    )
    try:
        result = service.queue_delivery(
            invoice.id, current_user.id, recipients, method=form.method.data
        )
    except service.NotSendable as error:
        context = _dialog_context(invoice, form, refusal=str(error))
        return render("sending/dialog.html", "sending/_dialog.html", **context), 409
    # On the invoice page the status polls itself; in the list the page's poller follows it.
    poll_self = _from_invoice_page()
    if result.link:
        return render(
            "sending/link.html", "sending/_link.html", invoice=invoice, link=result.link,
            last=result.delivery, poll_self=poll_self,
        )  # fmt: skip
    if not request.htmx:
        flash(
            _(
                "Invoice %(label)s is being sent.",
                label=f"{invoice.series_label} {invoice.number_label}",
            )
        )
        return redirect(url_for("invoices.index", tab="all"))
    return render_template(
        "sending/_sent.html", invoice=invoice, last=result.delivery, created=result.created,
        poll_self=poll_self,
    )  # fmt: skip


def _from_invoice_page() -> bool:
    """Whether the htmx request came from an invoice's own page (not the list)."""
    path = urlsplit(request.headers.get("HX-Current-URL", "")).path
    return path.startswith("/invoices/")


@bp.get("/invoices/<int:invoice_id>/send-status")
@role_required("viewer")
def status(invoice_id: int):
    """The row's send status; it polls itself only while a send is pending."""
    invoice = _invoice(invoice_id)
    last = service.last_delivery(invoice.id)
    answer = render_template("sending/_status.html", invoice=invoice, last=last, poll_self=True)
    if last is not None and not SendStatus(invoice.send_status).is_active:
        # The send ended: the page's sending history follows (out of band).
        deliveries = service.deliveries_of(invoice.id)
        answer += render_template("sending/_history.html", deliveries=deliveries, oob=True)
    return answer


@bp.get("/deliveries/<int:delivery_id>")
@role_required("viewer")
def show(delivery_id: int):
    """A delivery is shown in its invoice's sending history."""
    delivery = db.session.get(Delivery, delivery_id) or abort(404)
    return redirect(
        url_for("invoices.show", invoice_id=delivery.invoice_id, _anchor=f"delivery-{delivery.id}")
    )


@bp.post("/deliveries/<int:delivery_id>/revoke")
@role_required("sender")
def revoke(delivery_id: int):
    """Turn off a delivery's buyer link; the buyer then sees that it no longer works.

    From the send dialog (htmx) the answer is the dialog's list of links that still work.
    """
    from portal.buyer.service import live_links, turn_off

    delivery = turn_off(delivery_id) or abort(404)
    if request.htmx:
        return render_template(
            "sending/_live_links.html", live=live_links(delivery.invoice_id), turned_off=True
        )
    flash(_("The buyer link was turned off."))
    return redirect(url_for("invoices.show", invoice_id=delivery.invoice_id))


@bp.app_template_global()
def send_reason(delivery: Delivery | None) -> str:
    from portal.sending.reasons import explain

    if delivery is None or not delivery.error_kind:
        return ""
    return explain(
        delivery.error_kind, delivery.reply_code, delivery.reply_message, status=delivery.status
    )


@bp.app_template_global()
def attempt_reason(attempt) -> str:
    """The mail server's answer to an attempt that went through, else why it did not."""
    from portal.sending.reasons import explain

    if not attempt.error_kind:
        return f"{attempt.smtp_code or ''} {attempt.smtp_message}".strip()
    return explain(attempt.error_kind, attempt.smtp_code, attempt.smtp_message,
                   status=attempt.outcome)  # fmt: skip


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    outbox.register(app, service.DELIVERIES)
