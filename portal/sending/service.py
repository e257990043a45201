"""Queue deliveries, run them through the mail server, and keep their status true."""

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from portal.database import begin_write
from portal.extensions import db
from portal.i18n import format_date, format_money
from portal.models import (
    ACTIVE_DELIVERY,
    Delivery,
    DeliveryAttempt,
    EmailTemplate,
    Invoice,
    MailSettings,
)
from portal.sending import mailer, templating
from portal.sending.addresses import AddressList, clean_display_name, parse_addresses
from portal.sending.secrets_box import decrypt
from portal.signals import delivery_queued
from portal.types import utcnow

log = logging.getLogger(__name__)

BUYER_PATH = "/hd/"


class NotSendable(Exception):
    """The invoice cannot be sent now; the message says why (already translated)."""


@dataclass
class Recipients:
    name: str
    to: AddressList
    cc: AddressList
    bcc: AddressList

    @property
    def errors(self) -> dict[str, list[tuple[str, str]]]:
        found = {"to": self.to.errors, "cc": self.cc.errors, "bcc": self.bcc.errors}
        return {key: value for key, value in found.items() if value}


@dataclass
class QueueResult:
    delivery: Delivery
    created: bool
    link: str | None = None  # the buyer link, shown once for the "copy link" method
    notes: list[str] = field(default_factory=list)


def parse_recipients(name: str, to: str, cc: str = "", bcc: str = "") -> Recipients:
    return Recipients(
        clean_display_name(name), parse_addresses(to), parse_addresses(cc), parse_addresses(bcc)
    )


def mail_settings() -> MailSettings | None:
    return db.session.scalar(db.select(MailSettings).order_by(MailSettings.id).limit(1))


def smtp_settings(settings: MailSettings) -> mailer.SmtpSettings:
    password = decrypt(settings.password_encrypted)
    return mailer.SmtpSettings(
        host=settings.host,
        port=settings.port,
        security=settings.security,
        username=settings.username,
        password=password or "",
        sender_name=settings.sender_name,
        sender_email=settings.sender_email,
        reply_to=settings.reply_to,
        timeout=float(current_app.config.get("SMTP_TIMEOUT", 30)),
    )


def email_template() -> EmailTemplate:
    """The invoice email template: the seller's, else the default (not stored)."""
    found = db.session.scalar(db.select(EmailTemplate).filter_by(key="invoice"))
    return found or EmailTemplate(
        key="invoice",
        subject=templating.DEFAULT_SUBJECT,
        body_text=templating.DEFAULT_TEXT,
        body_html=templating.DEFAULT_HTML,
    )


def template_variables(invoice: Invoice, recipient_name: str, link: str) -> dict[str, str]:
    return {
        "seller_name": invoice.seller_name,
        "seller_tax_code": invoice.seller_tax_code,
        "buyer_name": invoice.buyer_name,
        "recipient_name": recipient_name or invoice.buyer_person or invoice.buyer_name,
        "form_series": invoice.series_label,
        "number": invoice.number_label,
        "issue_date": format_date(invoice.issued_on),
        "total": format_money(invoice.total_amount),
        "currency": invoice.currency,
        "amount_in_words": invoice.amount_in_words,
        "lookup_code": invoice.lookup_code,
        "buyer_link": link,
    }


def render_invoice_email(
    invoice: Invoice, recipient_name: str, link: str
) -> templating.RenderedEmail:
    template = email_template()
    return templating.render_email(
        template.subject,
        template.body_text,
        template.body_html,
        template_variables(invoice, recipient_name, link),
    )


def attachments(invoice: Invoice) -> list[mailer.Attachment]:
    """The PDF and the signed XML, exactly as the invoice page serves them."""
    from portal.rendering.service import file_name, invoice_pdf, invoice_xml

    return [
        mailer.Attachment(file_name(invoice, "pdf"), "application/pdf", invoice_pdf(invoice)),
        mailer.Attachment(file_name(invoice, "xml"), "application/xml", invoice_xml(invoice)),
    ]


def new_link_token() -> tuple[str, str]:
    """Return a buyer-link token (about 190 random bits) and the hash we keep of it."""
    token = secrets.token_urlsafe(24)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def buyer_link(token: str) -> str:
    return current_app.config["PORTAL_BASE_URL"].rstrip("/") + BUYER_PATH + token


def last_delivery(invoice_id: int) -> Delivery | None:
    return db.session.scalar(
        db.select(Delivery).filter_by(invoice_id=invoice_id).order_by(Delivery.id.desc()).limit(1)
    )


def queue_delivery(
    invoice_id: int, user_id: int | None, recipients: Recipients, method: str = "email"
) -> QueueResult:
    """Commit a queued delivery, then enqueue its job; a second request finds the first."""
    from flask_babel import gettext as _

    begin_write()
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None or not invoice.is_current:
        db.session.rollback()
        raise NotSendable(_("This invoice was replaced, adjusted or cancelled and is not sent."))
    if method == "email":
        if recipients.errors or not recipients.to.addresses:
            db.session.rollback()
            raise NotSendable(_("Enter at least one valid recipient email."))
        if mail_settings() is None:
            db.session.rollback()
            raise NotSendable(_("Set up the invoice email settings before sending."))
    link = None
    delivery = Delivery(
        invoice_id=invoice.id,
        method=method,
        recipient_name=recipients.name,
        to_addresses=recipients.to.joined,
        cc_addresses=recipients.cc.joined,
        bcc_addresses=recipients.bcc.joined,
        created_by_id=user_id,
        status="queued" if method == "email" else "sent",
    )
    if method == "link":
        # The seller pastes the link into a chat app: nothing to queue.
        token, delivery.token_hash = new_link_token()
        link = buyer_link(token)
        from portal.buyer.service import set_expiry

        set_expiry(delivery)
        delivery.finished_at = utcnow()
    db.session.add(delivery)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        active = db.session.scalar(
            db.select(Delivery).filter(
                Delivery.invoice_id == invoice_id, Delivery.status.in_(ACTIVE_DELIVERY)
            )
        )
        if active is None:
            raise
        return QueueResult(active, created=False)
    if method == "email":
        invoice.send_status = "queued"
    db.session.commit()
    if method == "email":
        enqueue_delivery(delivery.id)
        delivery_queued.send(
            current_app._get_current_object(), invoice_id=invoice.id, delivery_id=delivery.id
        )
    return QueueResult(delivery, created=True, link=link)


def enqueue_delivery(delivery_id: int) -> bool:
    """Put the delivery's job on the queue; if Redis is down the reconciler does it later."""
    from rq import Retry

    from portal.runtime.queue import get_queue

    intervals = [
        int(x) for x in str(current_app.config.get("SEND_RETRY_INTERVALS", "30,120,600")).split(",")
    ]
    try:
        get_queue().enqueue(
            "portal.sending.jobs.deliver_invoice",
            delivery_id,
            job_id=f"delivery-{delivery_id}",
            retry=Retry(max=len(intervals), interval=intervals),
            job_timeout=int(current_app.config.get("SEND_JOB_TIMEOUT", 180)),
            failure_ttl=7 * 24 * 3600,
        )
    except Exception:  # redis.ConnectionError and friends: the row is safe, retry later
        log.warning(
            "could not enqueue delivery %s; the reconciler will", delivery_id, exc_info=True
        )
        return False
    return True


def claim(delivery_id: int) -> bool:
    """Move a delivery from queued to sending; only one worker can win."""
    begin_write()
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == "queued")
        .values(status="sending", claimed_at=utcnow(), attempts=Delivery.attempts + 1)
    )
    db.session.commit()
    return result.rowcount == 1


def finish(
    delivery: Delivery, attempt: DeliveryAttempt, status: str, code, message: str, kind: str = ""
) -> None:
    """Record the outcome on the attempt, the delivery and the invoice's send status."""
    now = utcnow()
    attempt.finished_at = now
    attempt.outcome = {"queued": "temporary", "failed": "permanent"}.get(status, status)
    attempt.smtp_code = code
    attempt.smtp_message = message
    delivery.status = status
    delivery.smtp_code = code
    delivery.smtp_message = message
    delivery.error_kind = kind
    if status != "queued":
        delivery.finished_at = now
    invoice = delivery.invoice
    if last_delivery(invoice.id).id == delivery.id:
        invoice.send_status = status
        if status == "sent":
            invoice.sent_at = now


def reconcile() -> dict[str, int]:
    """Re-enqueue deliveries Redis lost; mark ones a dead worker left mid-send as unknown."""
    config = current_app.config
    now = utcnow()
    counts = {"requeued": 0, "unknown": 0}
    stale_sending = now - timedelta(seconds=int(config.get("SENDING_STALE_AFTER", 600)))
    begin_write()
    stuck = db.session.scalars(
        db.select(Delivery).filter(
            Delivery.status == "sending", Delivery.claimed_at < stale_sending
        )
    ).all()
    for delivery in stuck:
        attempt = DeliveryAttempt(delivery=delivery, started_at=delivery.claimed_at)
        db.session.add(attempt)
        finish(delivery, attempt, "unknown", None, "worker stopped during the send", "no_answer")
        counts["unknown"] += 1
    db.session.commit()
    queued_before = now - timedelta(seconds=int(config.get("QUEUED_STALE_AFTER", 60)))
    ids = db.session.scalars(
        db.select(Delivery.id).filter(
            Delivery.status == "queued", Delivery.queued_at < queued_before
        )
    ).all()
    for delivery_id in ids:
        if not _job_pending(delivery_id) and enqueue_delivery(delivery_id):
            counts["requeued"] += 1
    return counts


def _job_pending(delivery_id: int) -> bool:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    from portal.runtime.queue import get_redis

    try:
        job = Job.fetch(f"delivery-{delivery_id}", connection=get_redis())
    except NoSuchJobError:
        return False
    return job.get_status() in (
        JobStatus.QUEUED,
        JobStatus.SCHEDULED,
        JobStatus.STARTED,
        JobStatus.DEFERRED,
    )


def ensure_mail_settings() -> MailSettings | None:
    """Create the first mail settings from MAIL_* (the local catcher under `make run`)."""
    settings = mail_settings()
    config = current_app.config
    if settings is not None and config.get("MAIL_CATCHER_DIR") and settings.host == "127.0.0.1":
        # The catcher may have had to take another port this time.
        settings.port = int(config["MAIL_PORT"])
        db.session.commit()
    if settings is not None or not config.get("MAIL_SERVER"):
        return settings
    from portal.models import Seller
    from portal.sending.secrets_box import encrypt

    seller = db.session.scalar(db.select(Seller).limit(1))
    security = (
        "ssl"
        if config.get("MAIL_USE_SSL")
        else "starttls"
        if config.get("MAIL_USE_TLS")
        else "none"
    )
    settings = MailSettings(
        host=config["MAIL_SERVER"],
        port=int(config["MAIL_PORT"]),
        security=security,
        username=config.get("MAIL_USERNAME") or "",
        password_encrypted=encrypt(config.get("MAIL_PASSWORD") or ""),
        sender_name=config.get("MAIL_SENDER_NAME") or (seller.name if seller else ""),
        sender_email=os.environ.get("MAIL_DEFAULT_SENDER")
        or (seller.email if seller else "")
        or config["MAIL_DEFAULT_SENDER"],
    )
    db.session.add(settings)
    db.session.commit()
    return settings
