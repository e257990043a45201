"""The portal's tables: seller profile, series, customers, invoices and users."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from flask_login import UserMixin
from sqlalchemy import (
    Computed,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.statuses import ACTIVE, OutboxStatus, SendStatus, TaxStatus
from portal.types import Money, UTCDateTime, utcnow

ROLES = ("admin", "sender", "viewer")
INVOICE_STATES = ("issued", "replaced", "adjusted", "cancelled")
# SQL for "an outbox item is still in flight", for partial indexes.
ACTIVE_SQL = "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(ACTIVE)))


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Part of the session's user id: raising it (logout, a new password) ends every session
    # and remember-me cookie made before (docs/decisions.md, Login).
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)
        self.session_version = (self.session_version or 0) + 1

    def get_id(self) -> str:  # Flask-Login stores this in the session cookie
        return f"{self.id}:{self.session_version}"

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # Flask-Login reads this
        return self.active


class Seller(db.Model):
    """The company profile of the seller who runs this portal."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(400))
    tax_code: Mapped[str] = mapped_column(String(14), unique=True)
    address: Mapped[str] = mapped_column(String(400), default="")
    phone: Mapped[str] = mapped_column(String(50), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    bank_account: Mapped[str] = mapped_column(String(50), default="")
    bank_name: Mapped[str] = mapped_column(String(200), default="")
    currency: Mapped[str] = mapped_column(String(3), default="VND")


class InvoiceSeries(db.Model):
    """A form + series pair and the next number it hands out."""

    __table_args__ = (UniqueConstraint("form", "series"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    form: Mapped[int]
    series: Mapped[str] = mapped_column(String(6))
    next_number: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)

    @property
    def label(self) -> str:
        return f"{self.form}{self.series}"


class Customer(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(50), default="")
    name: Mapped[str] = mapped_column(String(400))
    tax_code: Mapped[str] = mapped_column(String(14), default="", index=True)
    address: Mapped[str] = mapped_column(String(400), default="")
    email: Mapped[str] = mapped_column(String(400), default="")
    phone: Mapped[str] = mapped_column(String(50), default="")
    contact_name: Mapped[str] = mapped_column(String(200), default="")


class Invoice(db.Model):
    """An issued invoice: the signed XML as issued, and what was read from it."""

    __table_args__ = (
        UniqueConstraint("seller_tax_code", "form", "series", "number", name="uq_invoice_identity"),
        Index("ix_invoice_issued", "issued_on", "id"),
        Index("ix_invoice_send_status", "send_status", "issued_on"),
        Index("ix_invoice_series", "series", "issued_on"),
        Index("ix_invoice_tax_status", "tax_status", "issued_on"),
        # The list's exact lookup of a typed number and its sort by total: money is text on
        # SQLite, so it sorts by the number the text holds (docs/decisions.md, "Invoice list").
        Index("ix_invoice_number", "number"),
        Index("ix_invoice_total", "total_amount", "id").ddl_if(dialect="postgresql"),
        Index("ix_invoice_total_sort", "total_sort", "id").ddl_if(dialect="sqlite"),
        # The accent-free search on PostgreSQL; SQLite has the invoice_search FTS5 table the
        # migration made, kept in step by triggers (portal/invoices/service.py).
        Index(
            "ix_invoice_search_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    form: Mapped[int]
    series: Mapped[str] = mapped_column(String(6))
    number: Mapped[int]
    issued_on: Mapped[date]
    version: Mapped[str] = mapped_column(String(8), default="2.1.0")
    title: Mapped[str] = mapped_column(String(200), default="")
    currency: Mapped[str] = mapped_column(String(3), default="VND")
    exchange_rate: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    payment_method: Mapped[str] = mapped_column(String(50), default="")

    seller_name: Mapped[str] = mapped_column(String(400))
    seller_tax_code: Mapped[str] = mapped_column(String(14))
    seller_address: Mapped[str] = mapped_column(String(400), default="")
    seller_phone: Mapped[str] = mapped_column(String(50), default="")
    seller_email: Mapped[str] = mapped_column(String(200), default="")
    seller_bank_account: Mapped[str] = mapped_column(String(50), default="")
    seller_bank_name: Mapped[str] = mapped_column(String(200), default="")

    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), nullable=True)
    buyer_name: Mapped[str] = mapped_column(String(400), default="")
    buyer_person: Mapped[str] = mapped_column(String(200), default="")
    buyer_tax_code: Mapped[str] = mapped_column(String(14), default="", index=True)
    buyer_address: Mapped[str] = mapped_column(String(400), default="")
    buyer_email: Mapped[str] = mapped_column(String(400), default="")
    buyer_phone: Mapped[str] = mapped_column(String(50), default="")
    buyer_code: Mapped[str] = mapped_column(String(50), default="")

    total_before_tax: Mapped[Decimal] = mapped_column(Money)
    total_tax: Mapped[Decimal] = mapped_column(Money)
    total_discount: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    total_fees: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    total_amount: Mapped[Decimal] = mapped_column(Money)
    amount_in_words: Mapped[str] = mapped_column(String(500))
    # The total as a number, computed by the database: SQLite keeps money as text, and the
    # list sorts by total through an index on this (on PostgreSQL by total_amount itself).
    total_sort: Mapped[float | None] = mapped_column(
        Float, Computed("CAST(total_amount AS FLOAT)"), nullable=True
    )

    lookup_code: Mapped[str] = mapped_column(String(32), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="issued")
    related_info: Mapped[str] = mapped_column(Text, default="")
    warnings: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), default="import")

    # The exact signed bytes as issued; never re-serialised (docs/domain.md).
    xml: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    xml_sha256: Mapped[str] = mapped_column(String(64))

    # Accent-free lower-case number, buyer, tax code and email for search (docs/stack.md, "SQLite").
    search_text: Mapped[str] = mapped_column(Text, default="")

    # A projection of the deliveries, receipt events and tax submissions, written only by
    # portal.invoices.projection.refresh() in the unit of work that changed them.
    send_status: Mapped[str] = mapped_column(String(16), default=SendStatus.NOT_SENT)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    received_kind: Mapped[str] = mapped_column(String(32), default="")
    tax_status: Mapped[str] = mapped_column(String(16), default=TaxStatus.NOT_SENT)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )
    vat_summaries: Mapped[list[VatSummary]] = relationship(
        back_populates="invoice", order_by="VatSummary.id", cascade="all, delete-orphan"
    )

    @property
    def series_label(self) -> str:
        return f"{self.form}{self.series}"

    @property
    def number_label(self) -> str:
        return f"{self.number:08d}"

    @property
    def is_current(self) -> bool:
        return self.state == "issued"

    @property
    def warning_list(self) -> list[str]:
        return [w for w in self.warnings.split("\n") if w]


class InvoiceLine(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoice.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    kind: Mapped[int] = mapped_column(default=1)
    code: Mapped[str] = mapped_column(String(50), default="")
    name: Mapped[str] = mapped_column(String(500))
    unit: Mapped[str] = mapped_column(String(50), default="")
    quantity: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    unit_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    discount_rate: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    discount_amount: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    amount: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    vat_rate: Mapped[str] = mapped_column(String(16), default="")

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class VatSummary(db.Model):
    """One rate's taxable amount and tax on an invoice (LTSuat)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoice.id", ondelete="CASCADE"), index=True
    )
    rate: Mapped[str] = mapped_column(String(16))
    taxable_amount: Mapped[Decimal] = mapped_column(Money)
    tax_amount: Mapped[Decimal] = mapped_column(Money)

    invoice: Mapped[Invoice] = relationship(back_populates="vat_summaries")


class InvoicePdf(db.Model):
    """The PDF rendered once from an invoice's signed XML, keyed by that XML's hash."""

    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoice.id", ondelete="CASCADE"), primary_key=True
    )
    xml_sha256: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(db.Model):
    """A token that lets other software (an ERP, a POS) issue invoices; kept as a hash."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(default=False)


class OutboxItem:
    """The columns of an item the portal owes the outside world (portal/outbox)."""

    status: Mapped[str] = mapped_column(String(10), default=OutboxStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    # When a worker may take it next: now for a new item, later after a temporary failure.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # host:pid:start-time of the worker process that holds the claim.
    claimed_by: Mapped[str] = mapped_column(String(120), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Attempts that did not count against the retries: the mail server asked to slow down.
    deferrals: Mapped[int] = mapped_column(default=0)
    # Set in the claim's attempt just before the data goes out: past it, "no answer" is unknown.
    data_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Why the last attempt did not succeed ("" when it did), and the other side's last answer
    # (or, for our own faults, what went wrong).
    error_kind: Mapped[str] = mapped_column(String(32), default="")
    reply_code: Mapped[int | None] = mapped_column(nullable=True)
    reply_message: Mapped[str] = mapped_column(Text, default="")

    @property
    def outbox_status(self) -> OutboxStatus:
        return OutboxStatus(self.status)


class MailSettings(db.Model):
    """The seller's SMTP settings (Thiết lập email gửi hóa đơn); the password encrypted."""

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    port: Mapped[int] = mapped_column(default=587)
    security: Mapped[str] = mapped_column(String(10), default="starttls")  # starttls|ssl|none
    username: Mapped[str] = mapped_column(String(200), default="")
    password_encrypted: Mapped[str] = mapped_column(Text, default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    sender_email: Mapped[str] = mapped_column(String(200))
    reply_to: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_test_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_test_ok: Mapped[bool | None] = mapped_column(nullable=True)
    last_test_message: Mapped[str] = mapped_column(Text, default="")
    # The account's limits (empty: none), and a pause the server asked for (421, 450, 454).
    rate_per_minute: Mapped[int | None] = mapped_column(nullable=True)
    rate_per_day: Mapped[int | None] = mapped_column(nullable=True)
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    throttle_note: Mapped[str] = mapped_column(Text, default="")


class Batch(db.Model):
    """A bulk send: first a draft (conditions, ticks, edited recipients), then its deliveries."""

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(10), default="draft")
    conditions: Mapped[str] = mapped_column(Text, default="{}")  # the filters, as JSON
    # All that match the conditions are ticked, but the rows unticked (else only those ticked).
    select_all: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    total: Mapped[int] = mapped_column(default=0)
    pause_reason: Mapped[str] = mapped_column(Text, default="")

    started_by: Mapped[User | None] = relationship(foreign_keys=[started_by_id])


class BatchRow(db.Model):
    """What the seller changed on one row of a draft: its tick, its recipients."""

    __table_args__ = (UniqueConstraint("batch_id", "invoice_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    selected: Mapped[bool | None] = mapped_column(nullable=True)  # None: as the draft says
    recipient_name: Mapped[str] = mapped_column(String(200), default="")
    to_addresses: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: the buyer's
    cc_addresses: Mapped[str] = mapped_column(Text, default="")
    save_to_customer: Mapped[bool] = mapped_column(default=False)


class EmailTemplate(db.Model):
    """The subject and bodies of the invoice email, with {{ variables }}."""

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(50), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def outbox_indexes(table: str) -> tuple[Index, Index]:
    """At most one item of an invoice in flight, and the reconciler's (status, due) index.

    The first makes a double click or a second tab find the item in flight instead of
    sending twice.
    """
    return (
        Index(
            f"uq_{table}_active_invoice",
            "invoice_id",
            unique=True,
            sqlite_where=db.text(ACTIVE_SQL),
            postgresql_where=db.text(ACTIVE_SQL),
        ),
        Index(f"ix_{table}_status_next", "status", "next_attempt_at"),
    )


class Delivery(OutboxItem, db.Model):
    """One request to send an invoice to its buyer, and what came of it."""

    __table_args__ = (
        *outbox_indexes("delivery"),
        Index("ix_delivery_batch_status", "batch_id", "status"),
        # The account's pace counts the sends claimed in the last minute and day.
        Index("ix_delivery_claimed_at", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    method: Mapped[str] = mapped_column(String(10), default="email")  # email|link
    recipient_name: Mapped[str] = mapped_column(String(200), default="")
    to_addresses: Mapped[str] = mapped_column(Text, default="")
    cc_addresses: Mapped[str] = mapped_column(Text, default="")
    bcc_addresses: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch.id"), nullable=True)
    message_id: Mapped[str] = mapped_column(String(300), default="")
    # The buyer's personal link: only a hash of its token is kept.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    invoice: Mapped[Invoice] = relationship()
    created_by: Mapped[User | None] = relationship()
    attempt_log: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="delivery", order_by="DeliveryAttempt.id", cascade="all, delete-orphan"
    )

    @property
    def recipients(self) -> list[str]:
        return [a for a in self.to_addresses.split(";") if a]

    @property
    def link_may_be_out(self) -> bool:
        """Whether this delivery's buyer link can be in someone's hands (so can be turned off)."""
        return self.token_hash is not None and self.status in (
            OutboxStatus.SENT,
            OutboxStatus.UNKNOWN,
        )


class DeliveryAttempt(db.Model):
    """One try at handing a delivery to the mail server, with the server's answer."""

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("delivery.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the attempt led to: the delivery's status after it (sent, retrying, failed, unknown).
    outcome: Mapped[str] = mapped_column(String(16), default="")
    error_kind: Mapped[str] = mapped_column(String(32), default="")
    smtp_code: Mapped[int | None] = mapped_column(nullable=True)
    smtp_message: Mapped[str] = mapped_column(Text, default="")
    data_sent: Mapped[bool] = mapped_column(default=False)

    delivery: Mapped[Delivery] = relationship(back_populates="attempt_log")


class TaxMessage(OutboxItem, db.Model):
    """One message of invoice data (TDiep 203) owed to the tax authority, and its answers.

    Its id (MTDiep) is chosen and its bytes built and stored before anything is sent, so a
    retry sends the very same message and, after a crash, the provider can be asked about it
    first (docs/domain.md, "Talking to a T-VAN"). It carries the invoices of one taxpayer,
    at most 2 MB.
    """

    __table_args__ = (Index("ix_tax_message_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_code: Mapped[str] = mapped_column(String(64), unique=True)
    seller_tax_code: Mapped[str] = mapped_column(String(14))
    invoice_count: Mapped[int] = mapped_column(default=1)
    payload: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The technical receipt (999): when it came and whether the message was taken.
    receipt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    receipt_ok: Mapped[bool | None] = mapped_column(nullable=True)
    # The authority's data-check notice (204).
    notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the provider was last asked about this message (lookups of a late answer).
    looked_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    submissions: Mapped[list[TaxSubmission]] = relationship(
        back_populates="message", order_by="TaxSubmission.id"
    )


class TaxSubmission(db.Model):
    """One invoice's data owed to the tax authority, in one message, and the authority's verdict."""

    __table_args__ = (
        # One submission of an invoice is pending or accepted at a time: a resend of the
        # invoice to its buyer does not send its data twice (the authority answers 20609).
        Index(
            "uq_tax_submission_covering_invoice",
            "invoice_id",
            unique=True,
            sqlite_where=db.text("result IN ('pending', 'accepted')"),
            postgresql_where=db.text("result IN ('pending', 'accepted')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    # Empty until the submission is packed into a message (a bulk send packs in a job).
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("tax_message.id"), index=True, nullable=True
    )
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id"), nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending (no verdict yet), accepted, or rejected (with the authority's reasons). Whether
    # a pending one is on its way or could not reach the provider is its message's status.
    result: Mapped[str] = mapped_column(String(10), default="pending")
    error_code: Mapped[str] = mapped_column(String(32), default="")  # MLoi
    error_text: Mapped[str] = mapped_column(Text, default="")  # MTLoi / MTa
    fix_hint: Mapped[str] = mapped_column(Text, default="")  # HDXLy
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    message: Mapped[TaxMessage | None] = relationship(back_populates="submissions")
    invoice: Mapped[Invoice] = relationship()


class TaxExchange(db.Model):
    """A message sent to or received from the tax authority, kept byte for byte."""

    __table_args__ = (UniqueConstraint("direction", "message_code", name="uq_tax_exchange_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tax_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("tax_message.id"), nullable=True, index=True
    )
    direction: Mapped[str] = mapped_column(String(3))  # out | in
    message_type: Mapped[str] = mapped_column(String(3))  # 203, 999, 204
    message_code: Mapped[str] = mapped_column(String(64))  # its own MTDiep
    reference: Mapped[str] = mapped_column(String(64), default="")  # MTDTChieu / MGDDTu
    via: Mapped[str] = mapped_column(String(10), default="")  # submit, lookup, poll, callback
    body: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[TaxMessage | None] = relationship()


class TaxSettings(db.Model):
    """The connection to the T-VAN provider (Thiết lập kết nối CQT); credentials encrypted."""

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), default="sandbox")
    endpoint: Mapped[str] = mapped_column(String(300), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    password_encrypted: Mapped[str] = mapped_column(Text, default="")
    sender_code: Mapped[str] = mapped_column(String(20), default="")
    # The secret the provider signs pushed answers with (our callback checks it).
    callback_secret_encrypted: Mapped[str] = mapped_column(Text, default="")
    # False: buyer emails go at once, at the same time as the data (the legal default).
    wait_for_acceptance: Mapped[bool] = mapped_column(default=False)
    # Days besides weekends that are not working days, as YYYY-MM-DD lines.
    holidays: Mapped[str] = mapped_column(Text, default="")
    poll_cursor: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_test_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_test_ok: Mapped[bool | None] = mapped_column(nullable=True)
    last_test_message: Mapped[str] = mapped_column(Text, default="")


class ReceiptEvent(db.Model):
    """Something that shows (strongly or weakly) that the buyer received an invoice."""

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    possibly_automatic: Mapped[bool] = mapped_column(default=False)


class SigningCertificate(db.Model):
    """A certificate registered as the seller's (Chữ ký số): only its signatures count.

    With a key (from a PKCS#12 file, or the demo's) it signs the invoices the portal issues;
    without one it vouches for invoices other software signed. The key is encrypted with a
    key derived from SECRET_KEY (portal/certificates/service.py).
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the DER bytes: how an imported file's embedded certificate is recognised.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    tax_code: Mapped[str] = mapped_column(String(14))
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(80))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    key_encrypted: Mapped[str] = mapped_column(Text, default="")
    # p12, certificate (uploaded alone), approved (from a pending import), demo.
    source: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def can_sign(self) -> bool:
        return bool(self.key_encrypted)

    @property
    def audit_label(self) -> str:
        return f"{self.serial} (MST {self.tax_code})"


class PendingImport(db.Model):
    """An imported file signed by a certificate nobody registered: it waits for an admin."""

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(String(400))
    xml: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    xml_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The invoice as the file tells it, for the list.
    form: Mapped[int]
    series: Mapped[str] = mapped_column(String(6))
    number: Mapped[int]
    issued_on: Mapped[date]
    buyer_name: Mapped[str] = mapped_column(String(400), default="")
    total_amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="VND")
    related_info: Mapped[str] = mapped_column(Text, default="")
    # The signer's certificate, what approving would register.
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    tax_code: Mapped[str] = mapped_column(String(14))
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(80))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    signing_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def series_label(self) -> str:
        return f"{self.form}{self.series}"

    @property
    def number_label(self) -> str:
        return f"{self.number:08d}"
