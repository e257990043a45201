"""Queue deliveries and hand them to the mail server: the email kind of the outbox."""

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy.exc import IntegrityError

from portal import audit
from portal.database import write
from portal.extensions import db
from portal.i18n import format_date, format_money
from portal.inputs import recipients_error
from portal.invoices import projection
from portal.models import Delivery, DeliveryAttempt, EmailTemplate, Invoice, MailSettings
from portal.outbox import service as outbox
from portal.sending import mailer, templating
from portal.sending.addresses import AddressList, clean_display_name, parse_addresses
from portal.sending.secrets_box import decrypt
from portal.statuses import ACTIVE, OutboxStatus
from portal.tax.service import ensure_submission, waits_for_acceptance
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

    @property
    def count(self) -> int:
        return len(self.to.addresses) + len(self.cc.addresses) + len(self.bcc.addresses)


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
    from portal.buyer.service import lookup_address

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
        "lookup_url": lookup_address(),
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
        templating.Limits.from_config(current_app.config),
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


def deliveries_of(invoice_id: int) -> list[Delivery]:
    """Every delivery of an invoice, newest first (its sending history)."""
    return list(
        db.session.scalars(
            db.select(Delivery).filter_by(invoice_id=invoice_id).order_by(Delivery.id.desc())
        )
    )


def active_delivery(invoice_id: int) -> Delivery | None:
    return db.session.scalar(
        db.select(Delivery).filter(Delivery.invoice_id == invoice_id, Delivery.status.in_(ACTIVE))
    )


def queue_delivery(
    invoice_id: int, user_id: int | None, recipients: Recipients, method: str = "email"
) -> QueueResult:
    """Commit a delivery and the invoice's tax submission together; the job is enqueued after.

    A second request while one is in flight finds the first. A "copy link" delivery is sent
    at once: the seller pastes the link into a chat app.
    """
    from flask_babel import gettext as _

    from portal.buyer.service import link_expiry

    link = None
    with write():
        invoice = db.session.get(Invoice, invoice_id)
        if invoice is None or not invoice.is_current:
            raise NotSendable(
                _("This invoice was replaced, adjusted or cancelled and is not sent.")
            )
        if method == "email":
            if recipients.errors or not recipients.to.addresses:
                raise NotSendable(_("Enter at least one valid recipient email."))
            if too_many := recipients_error(recipients.count):
                raise NotSendable(too_many)
            if mail_settings() is None:
                raise NotSendable(_("Set up the invoice email settings before sending."))
        active = active_delivery(invoice_id)
        if active is not None:
            return QueueResult(active, created=False)
        sent_before = db.session.scalar(
            db.select(Delivery.id).filter_by(invoice_id=invoice_id).limit(1)
        )
        # The seller may have chosen that emails wait for the tax authority's acceptance.
        held = method == "email" and waits_for_acceptance(invoice_id)
        delivery = Delivery(
            invoice_id=invoice.id,
            method=method,
            recipient_name=recipients.name,
            to_addresses=recipients.to.joined,
            cc_addresses=recipients.cc.joined,
            bcc_addresses=recipients.bcc.joined,
            created_by_id=user_id,
        )
        if method == "link":
            token, delivery.token_hash = new_link_token()
            link = buyer_link(token)
            delivery.expires_at = link_expiry()
            delivery.status = OutboxStatus.SENT
            delivery.finished_at = utcnow()
        elif held:
            delivery.status = OutboxStatus.HELD
        try:
            # A savepoint: on PostgreSQL a concurrent request may win the one-active index.
            with db.session.begin_nested():
                db.session.add(delivery)
        except IntegrityError:
            return QueueResult(active_delivery(invoice_id), created=False)
        audit.record("invoice.resent" if sent_before else "invoice.sent", target=invoice,
                     details={"delivery_id": delivery.id, "method": method,
                              "to": delivery.to_addresses, "cc": delivery.cc_addresses,
                              "bcc": delivery.bcc_addresses})  # fmt: skip
        ensure_submission(invoice.id, delivery.id, user_id)
        projection.refresh([invoice.id])
        if method == "email" and not held:
            outbox.enqueue_after_commit(DELIVERIES, [delivery.id])
    return QueueResult(delivery, created=True, link=link)


def retry_intervals() -> list[int]:
    """Seconds before each retry of a temporary failure (SEND_RETRY_INTERVALS)."""
    raw = str(current_app.config.get("SEND_RETRY_INTERVALS", "30,120,600"))
    return [int(x) for x in raw.split(",") if x.strip()]


# One kept SMTP connection per worker thread, reused across consecutive sends.
connections = mailer.SmtpConnections()


def perform_delivery(delivery_id: int, held: outbox.Claim) -> outbox.Outcome:
    """Build the email with its files and a new buyer link, and hand it to the mail server."""
    from portal.buyer.service import link_expiry

    delivery = db.session.get(Delivery, delivery_id)
    invoice = delivery.invoice
    settings = mail_settings()
    if settings is None:
        return outbox.Outcome.permanent("no_settings")
    smtp = smtp_settings(settings)
    # The files first: a first-time PDF render stores its cache row in a unit of work of its own.
    files = attachments(invoice)
    token, token_hash = new_link_token()
    message_id = mailer.new_message_id(smtp.sender_email)
    link = buyer_link(token)
    try:
        rendered = render_invoice_email(invoice, delivery.recipient_name, link)
    except templating.TemplateLimitError as error:
        # Checked on the sample when saved, yet over a limit for this invoice's data: trying
        # again would do the same (docs/decisions.md, "Settings").
        return outbox.Outcome.permanent("template_limit", None, str(error))
    # The open signal: a weak one, since mail apps and proxies fetch images by themselves.
    html = rendered.html + f'<img src="{link}/o.gif" width="1" height="1" alt="">'
    message = mailer.build_message(
        smtp,
        recipient_name=delivery.recipient_name,
        to=delivery.recipients,
        cc=[a for a in delivery.cc_addresses.split(";") if a],
        bcc=[a for a in delivery.bcc_addresses.split(";") if a],
        subject=rendered.subject,
        text=rendered.text,
        html=html,
        attachments=files,
        message_id=message_id,
    )
    expires_at = link_expiry()
    db.session.rollback()  # hold no read snapshot while the mail server talks

    def before_data() -> bool:
        # The link and Message-ID are stored before the server can have the message.
        return held.mark_data_sent(
            token_hash=token_hash, message_id=message_id, expires_at=expires_at
        )

    connections.idle_timeout = float(current_app.config.get("SMTP_IDLE_TIMEOUT", 30))
    try:
        code, answer = connections.send(smtp, message, before_data)
    except mailer.SendError as error:
        log.info("delivery %s: %s %s %s", delivery_id, error.outcome, error.code, error.message)
        if error.outcome == mailer.UNKNOWN:
            return outbox.Outcome.unknown(error.kind, error.code, error.message)
        if error.outcome == mailer.TEMPORARY and error.code in SLOW_DOWN:
            # "Slow down": the whole account pauses a while; not a failure of this email.
            wait = throttle(error.code, error.message)
            return outbox.Outcome(OutboxStatus.RETRYING, "throttled", error.code, error.message,
                                  wait=wait, counts=False)  # fmt: skip
        if error.outcome == mailer.TEMPORARY:
            return outbox.Outcome.temporary(error.kind, error.code, error.message)
        return outbox.Outcome.permanent(error.kind, error.code, error.message)
    return outbox.Outcome.sent(code, answer)


# Answers by which a mail server asks the sender to slow down (RFC 5321, 3463).
SLOW_DOWN = (421, 450, 454)


def throttle(code: int, message: str) -> float:
    """Pause the account's sends after a "slow down" answer; return the pause in seconds.

    Every email starts no earlier than THROTTLE_SECONDS (60) after the last such answer.
    """
    wait = float(current_app.config.get("THROTTLE_SECONDS", 60))
    with write():
        settings = mail_settings()
        if settings is not None:
            settings.throttled_until = utcnow() + timedelta(seconds=wait)
            settings.throttle_note = f"{code} {message}"[:500]
    return wait


def pace_wait(settings: MailSettings, now) -> float:
    """Seconds until the account may start another email: a pause it was asked for, its rates."""
    if settings.throttled_until is not None and settings.throttled_until > now:
        return (settings.throttled_until - now).total_seconds()
    for limit, window in ((settings.rate_per_minute, 60), (settings.rate_per_day, 86400)):
        if not limit:
            continue
        since = now - timedelta(seconds=window)
        started = db.session.execute(
            db.select(db.func.count(), db.func.min(Delivery.claimed_at))
            .where(Delivery.claimed_at > since, Delivery.method == "email")
        ).one()  # fmt: skip
        if started[0] >= limit and started[1] is not None:
            return max(1.0, (started[1] + timedelta(seconds=window) - now).total_seconds())
    return 0.0


def pace(now) -> float:
    """The deliveries' pace (inside the claim's unit of work)."""
    query = _PACE
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update()  # one claim at a time counts the window
    settings = db.session.connection().execute(query).first()
    if settings is None or not (settings.rate_per_minute or settings.rate_per_day
                                or settings.throttled_until):  # fmt: skip
        return 0.0
    return pace_wait(settings, now)


# The account's limits, read as a row on every claim (the ORM's load was a third of a claim).
_PACE = (
    db.select(MailSettings.rate_per_minute, MailSettings.rate_per_day, MailSettings.throttled_until)
    .order_by(MailSettings.id)
    .limit(1)
)


def log_attempt(held, result, status, now) -> None:
    """Keep one attempt with the mail server's answer (or our reason); watch its batch."""
    if status == OutboxStatus.FAILED:
        from portal.bulk.service import check_failures

        delivery = db.session.get(Delivery, held.item_id, populate_existing=True)
        if delivery.batch_id is not None:
            check_failures(delivery)
    db.session.connection().execute(_ATTEMPT, {
        "delivery_id": held.item_id, "started_at": held.claimed_at, "finished_at": now,
        "outcome": status, "error_kind": result.kind, "smtp_code": result.code,
        "smtp_message": result.message, "data_sent": held.data_sent,
    })  # fmt: skip


_ATTEMPT = db.insert(DeliveryAttempt)


def refresh_invoices(delivery_ids: list[int]) -> None:
    """Refresh the status columns of these deliveries' invoices."""
    db.session.flush()
    found = db.session.connection().execute(_INVOICES_OF, {"ids": delivery_ids}).scalars()
    projection.refresh(list(found))


# Built once: every email runs it twice (README, "Measured").
_INVOICES_OF = db.select(Delivery.invoice_id).where(
    Delivery.id.in_(db.bindparam("ids", expanding=True))
)


def maintain() -> dict[str, int]:
    from portal.bulk.service import maintain as batches

    return batches()


DELIVERIES = outbox.Kind(
    name="delivery",
    model=Delivery,
    perform=perform_delivery,
    retry_intervals=retry_intervals,
    log_attempt=log_attempt,
    on_change=refresh_invoices,
    timeout=180,
    maintain=maintain,
    pace=pace,
)


def ensure_mail_settings() -> MailSettings | None:
    """Create the first mail settings from MAIL_* (the local catcher under `make run`)."""
    config = current_app.config
    with write():
        settings = mail_settings()
        if settings is not None and config.get("MAIL_CATCHER_DIR") and settings.host == "127.0.0.1":
            # The catcher may have had to take another port this time.
            settings.port = int(config["MAIL_PORT"])
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
    with write():
        db.session.add(settings)
    return settings
