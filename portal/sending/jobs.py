"""The mail worker's job: send one delivery, at most once."""

import logging

from rq import get_current_job

from portal.buyer.service import set_expiry
from portal.extensions import db
from portal.models import Delivery, DeliveryAttempt
from portal.sending import mailer, service
from portal.types import utcnow

log = logging.getLogger(__name__)


class TemporarySendFailure(Exception):
    """Raised so that RQ retries the job later."""


def deliver_invoice(delivery_id: int) -> str:
    """Send a queued delivery; a second run of a claimed or finished one does nothing."""
    if not service.claim(delivery_id):
        return "skipped"
    delivery = db.session.get(Delivery, delivery_id)
    invoice = delivery.invoice
    settings = service.mail_settings()
    attempt = DeliveryAttempt(delivery=delivery, started_at=utcnow())
    db.session.add(attempt)
    if settings is None:
        service.finish(delivery, attempt, "failed", None, "no mail settings", "no_settings")
        db.session.commit()
        return "failed"
    smtp = service.smtp_settings(settings)
    try:
        message = _build(delivery, invoice, smtp)
    except Exception as error:
        # A message we cannot build will not build on retry either: fail it visibly.
        db.session.rollback()
        delivery = db.session.get(Delivery, delivery_id)
        attempt = DeliveryAttempt(delivery=delivery, started_at=utcnow())
        db.session.add(attempt)
        service.finish(delivery, attempt, "failed", None, repr(error)[:500], "internal")
        db.session.commit()
        raise
    # The Message-ID and link are stored before the server sees the message.
    db.session.commit()
    try:
        code, answer = mailer.send(smtp, message)
    except mailer.SendError as error:
        return _record_failure(delivery, attempt, error)
    service.finish(delivery, attempt, "sent", code, answer)
    db.session.commit()
    return "sent"


def _build(delivery: Delivery, invoice, smtp: mailer.SmtpSettings):
    # First the files: a first-time PDF render commits its cache row, and nothing of this
    # attempt (link, Message-ID) should be committed with it before the message is built.
    files = service.attachments(invoice)
    token, delivery.token_hash = service.new_link_token()
    set_expiry(delivery)
    delivery.message_id = mailer.new_message_id(smtp.sender_email)
    link = service.buyer_link(token)
    rendered = service.render_invoice_email(invoice, delivery.recipient_name, link)
    # The open signal: a weak one, since mail apps and proxies fetch images by themselves.
    html = rendered.html + f'<img src="{link}/o.gif" width="1" height="1" alt="">'
    return mailer.build_message(
        smtp,
        recipient_name=delivery.recipient_name,
        to=delivery.recipients,
        cc=[a for a in delivery.cc_addresses.split(";") if a],
        bcc=[a for a in delivery.bcc_addresses.split(";") if a],
        subject=rendered.subject,
        text=rendered.text,
        html=html,
        attachments=files,
        message_id=delivery.message_id,
    )


def _record_failure(delivery: Delivery, attempt: DeliveryAttempt, error: mailer.SendError) -> str:
    if error.outcome == mailer.UNKNOWN:
        status = "unknown"
    elif error.outcome == mailer.TEMPORARY and _retries_left():
        status = "queued"
    else:
        status = "failed"
    # A retried attempt gets a new link; this one never reached the buyer.
    if status == "queued":
        delivery.token_hash = None
    service.finish(delivery, attempt, status, error.code, error.message, error.kind)
    db.session.commit()
    log.info("delivery %s: %s (%s %s)", delivery.id, status, error.code, error.message)
    if status == "queued":
        raise TemporarySendFailure(f"{error.kind}: {error.code} {error.message}")
    return status


def _retries_left() -> bool:
    job = get_current_job()
    return bool(job and job.retries_left)
