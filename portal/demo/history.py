"""What a demo seller has done this month: sends that went, one that failed, one the buyer got.

And the sample files a newcomer can import: invoices signed with the demo seller's own
certificate, so that the import page shows an import that succeeds.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import current_app

from portal.einvoice.document import Document, Line, Party
from portal.extensions import db
from portal.invoices import projection
from portal.issuing.service import Signer, seller_party, sign_document, signing_moment
from portal.models import Delivery, DeliveryAttempt, Invoice, ReceiptEvent, Seller, User
from portal.sending.service import new_link_token
from portal.statuses import OutboxStatus

SENT = 6  # this month's sends that went, the buyer's receipt among them
SAMPLES_FOLDER = "demo-samples"
SAMPLE_ZIP = "hoa-don-mau.zip"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
# The one answer a newcomer sees on a failed send: a mistyped mailbox, refused by its server.
REFUSED = "5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    """That time of the day in Vietnam, but never later than two hours ago (no future sends)."""
    zone = ZoneInfo(current_app.config["PORTAL_TIMEZONE"])
    at = datetime.combine(day, time(hour, minute), zone).astimezone(UTC)
    return min(at, datetime.now(UTC) - timedelta(hours=2, minutes=minute))


def record_history(today: date) -> list[int]:
    """Give this month's demo invoices a history, once; return the invoices it touched.

    Written as the outbox and the buyer's page leave their rows, inside the caller's unit of
    work, and the invoices' status columns refreshed by their one writer.
    """
    if db.session.scalar(db.select(Delivery.id).limit(1)) is not None:
        return []
    month = today.replace(day=1)
    invoices = db.session.scalars(
        db.select(Invoice)
        .where(Invoice.issued_on >= month, Invoice.buyer_email != "")
        # Invoices of earlier days first: a send of today's could not have happened yet.
        .order_by(Invoice.issued_on >= today, Invoice.issued_on, Invoice.id)
    ).all()
    if len(invoices) < SENT + 2:
        return []  # too few for a story; the list still shows what there is
    sender = db.session.scalar(db.select(User).filter_by(username="ketoan"))
    touched = []
    for index, invoice in enumerate(invoices[:SENT]):
        at = _local(invoice.issued_on, 9 + index % 6, 5 * index % 60)
        delivery = _delivery(invoice, sender, at)
        delivery.status = OutboxStatus.SENT
        _attempt(delivery, at, OutboxStatus.SENT, "", 250, "2.0.0 Ok: queued")
        if index == 0:
            # The buyer opened the link on a phone the next morning and confirmed.
            seen = min(at + timedelta(hours=20), datetime.now(UTC) - timedelta(minutes=30))
            db.session.flush()
            for kind, after in (
                ("page_shown", 0),
                ("pdf_downloaded", 40),
                ("receipt_confirmed", 75),
            ):
                db.session.add(ReceiptEvent(invoice_id=invoice.id, delivery_id=delivery.id, kind=kind,
                                            at=seen + timedelta(seconds=after), ip="113.161.72.15",
                                            user_agent=PHONE))  # fmt: skip
        touched.append(invoice.id)
    failed = invoices[SENT]
    local_part, _at, domain = failed.buyer_email.partition("@")
    mistyped = f"{local_part}.ketoan@{domain}"
    at = _local(failed.issued_on, 16, 20)
    delivery = _delivery(failed, sender, at, to=mistyped)
    delivery.status = OutboxStatus.FAILED
    answer = REFUSED.format(address=mistyped)
    delivery.error_kind, delivery.reply_code, delivery.reply_message = (
        "recipient_refused",
        550,
        answer,
    )
    _attempt(delivery, at, OutboxStatus.FAILED, "recipient_refused", 550, answer)
    touched.append(failed.id)
    db.session.flush()
    projection.refresh(touched)
    return touched


def _delivery(invoice: Invoice, sender: User | None, at: datetime, to: str = "") -> Delivery:
    delivery = Delivery(
        invoice_id=invoice.id,
        recipient_name=invoice.buyer_person or invoice.buyer_name,
        to_addresses=to or invoice.buyer_email,
        created_by_id=sender.id if sender else None,
        created_at=at,
        next_attempt_at=at,
        claimed_at=at,
        data_sent_at=at + timedelta(seconds=1),
        finished_at=at + timedelta(seconds=2),
        attempts=1,
        message_id=f"<demo-{invoice.id}@anhduong.vn>",
        token_hash=new_link_token()[1],
    )
    db.session.add(delivery)
    return delivery


def _attempt(delivery: Delivery, at, outcome: str, kind: str, code: int, message: str) -> None:
    delivery.attempt_log.append(
        DeliveryAttempt(started_at=at, finished_at=at + timedelta(seconds=2), outcome=outcome,
                        error_kind=kind, smtp_code=code, smtp_message=message, data_sent=True)
    )  # fmt: skip


# --- sample files to import ---------------------------------------------------------------


def samples_folder() -> Path:
    return Path(current_app.instance_path) / SAMPLES_FOLDER


def sample_files() -> list[str]:
    """The sample files made for this instance's demo seller, if any."""
    folder = samples_folder()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".xml", ".zip"))


def write_samples(seller: Seller, signer: Signer, today: date) -> list[Path]:
    """Sign sample invoices for the demo seller, as its former software would have issued them.

    They use a series of their own (form 1, K<yy>TDD), which the portal never issues in, so an
    import of them never takes a number the portal will give. Made once per instance.
    """
    folder = samples_folder()
    if folder.is_dir() and sample_files():
        return [folder / name for name in sample_files()]
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    series = f"K{today.year % 100:02d}TDD"
    party = seller_party(seller)
    files = {}
    for number, (buyer, lines) in enumerate(SAMPLE_INVOICES, 1):
        doc = Document(form=1, series=series, number=number, issued_on=today, seller=party,
                       buyer=buyer, lines=[Line(i, **line) for i, line in enumerate(lines, 1)],
                       title="Hóa đơn giá trị gia tăng", payment_method="TM/CK",
                       data_id=f"sample-{series}-{number}")  # fmt: skip
        files[f"{doc.form}{series}_{number:08d}.xml"] = sign_document(
            doc, signer, signing_moment(doc)
        )
    first = next(iter(files))
    (folder / first).write_bytes(files[first])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    (folder / SAMPLE_ZIP).write_bytes(buffer.getvalue())
    return [folder / first, folder / SAMPLE_ZIP]


def _line(name: str, unit: str, quantity: int, price: int, rate: str) -> dict:
    return dict(name=name, unit=unit, quantity=Decimal(quantity), unit_price=Decimal(price),
                vat_rate=rate)  # fmt: skip


SAMPLE_INVOICES = [
    (
        Party(
            name="Công ty TNHH Kiến trúc Nhà Xanh",
            tax_code="0316789012",
            address="88 Pasteur, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh",
            email="ketoan@nhaxanh.vn",
            person="Lê Thu Hà",
        ),  # fmt: skip
        [
            _line("Giấy in A4 Double A 80gsm", "Ram", 20, 72_000, "10%"),
            _line("Cà phê rang xay Buôn Ma Thuột", "Kg", 5, 320_000, "8%"),
        ],
    ),
    (
        Party(
            name="Công ty Cổ phần Dịch vụ Sao Mai",
            tax_code="0108765432",
            address="25 Láng Hạ, Quận Đống Đa, Hà Nội",
            email="hoadon@saomai.vn",
            person="Phạm Minh Quân",
        ),  # fmt: skip
        [_line("Dịch vụ bảo trì phần mềm quý", "Quý", 1, 12_000_000, "10%")],
    ),
    (
        Party(
            name="Chị Nguyễn Thị Lan",
            address="12 Trần Hưng Đạo, Quận 5, TP. Hồ Chí Minh",
            email="lan.nguyen@example.com",
        ),  # fmt: skip
        [_line("Sách giáo khoa Tiếng Việt lớp 1", "Bộ", 2, 98_000, "KCT")],
    ),
]
