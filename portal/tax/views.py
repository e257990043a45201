"""Transfer to the tax authority: the seller's action, the provider's callback, the messages kept."""

import hashlib
import hmac

from flask import Blueprint, Flask, Response, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.auth.views import role_required
from portal.extensions import csrf, db, limiter
from portal.models import TaxExchange, TaxSubmission
from portal.outbox import service as outbox
from portal.sending.secrets_box import decrypt
from portal.tax import service
from portal.web import ids_of, safe_target

bp = Blueprint("tax", __name__)

MAX_SELECTED = 5000


@bp.post("/tax/transfer")
@role_required("sender")
def transfer():
    """Chuyển dữ liệu HĐ đến CQT for the selected invoices (the list's boxes, or one invoice)."""
    ids = ids_of(request.form.getlist("ids"), MAX_SELECTED)
    back = safe_target(request.form.get("next"), url_for("invoices.index"))
    if not ids:
        flash(_("Select the invoices whose data to transfer."), "error")
        return redirect(back)
    result = service.transfer(ids, current_user.id)
    parts = []
    if result.queued:
        parts.append(_("%(count)s queued for the tax authority", count=result.queued))
    if result.retried:
        parts.append(_("%(count)s tried again", count=result.retried))
    if result.in_progress:
        parts.append(_("%(count)s already on their way", count=result.in_progress))
    if result.accepted:
        parts.append(_("%(count)s already accepted", count=result.accepted))
    if result.rejected:
        parts.append(
            _("%(count)s rejected before: not sent again unchanged (issue a replacing invoice)",
              count=result.rejected)
        )  # fmt: skip
    flash(_("Transfer to the tax authority: %(what)s.", what="; ".join(parts)))
    return redirect(back)


@bp.post("/tax/callback/<provider>")
@csrf.exempt
@limiter.limit("600/minute")
def callback(provider: str):
    """Answers the provider pushes: checked, stored and applied before they are acknowledged."""
    settings = service.tax_settings()
    if settings is None or settings.provider != provider:
        abort(404)
    secret = decrypt(settings.callback_secret_encrypted) or ""
    body = request.get_data(cache=False)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    given = request.headers.get("X-TVAN-Signature", "")
    if not secret or not hmac.compare_digest(expected, given):
        abort(403)
    if not service.record_answers([body], "callback"):
        return {"ok": False, "error": "not a 999 or 204"}, 422
    return {"ok": True}


@bp.get("/invoices/<int:invoice_id>/tax/<int:exchange_id>")
@role_required("viewer")
def exchange(invoice_id: int, exchange_id: int):
    """Download one message sent or received about this invoice, byte for byte."""
    item = db.session.get(TaxExchange, exchange_id)
    belongs = item is not None and db.session.scalar(
        db.select(TaxSubmission.id).where(
            TaxSubmission.invoice_id == invoice_id,
            TaxSubmission.message_id == item.tax_message_id,
        )
    )
    if not belongs:
        abort(404)
    response = Response(item.body, mimetype="application/xml")
    name = f"{item.message_type}_{item.message_code}.xml"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.app_template_global()
def tax_reason(message) -> str:
    from portal.tax.reasons import explain

    return explain(message.error_kind, message.reply_code, message.reply_message) if message else ""


@bp.app_template_global()
def tax_alarm_text(kind: str) -> str:
    from flask import current_app

    from portal.tax.reasons import alarm_text

    return alarm_text(kind, int(current_app.config.get("TAX_RECEIPT_ALARM_MINUTES", 10)))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    outbox.register(app, service.TAX)
