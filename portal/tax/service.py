"""Tax submissions: the row that says an invoice's data is owed to the tax authority.

A send writes it in the same unit of work as the delivery (docs/domain.md: the data goes to
the tax authority at the same time as the invoice goes to the buyer), with its message id
(MTDiep) chosen before anything is sent.
"""

import uuid

from flask import current_app
from sqlalchemy import select

from portal.extensions import db
from portal.models import TaxSubmission
from portal.statuses import ACTIVE, OutboxStatus

# A submission in one of these states covers the invoice: no second one is written.
COVERING = {*ACTIVE, OutboxStatus.SENT, OutboxStatus.UNKNOWN}


def new_message_code() -> str:
    """MTDiep: the sender's code followed by 32 uppercase hex digits (a UUID4, no dashes)."""
    return current_app.config["TVAN_SENDER_CODE"] + uuid.uuid4().hex.upper()


def ensure_submission(
    invoice_id: int, delivery_id: int | None = None, user_id: int | None = None
) -> TaxSubmission:
    """Return the invoice's covering submission, writing a queued one if there is none.

    Call inside a unit of work. A resend finds the first one: an invoice's data goes to the
    tax authority once (it refuses a repeat with 20609).
    """
    found = db.session.scalar(
        select(TaxSubmission)
        .where(TaxSubmission.invoice_id == invoice_id, TaxSubmission.status.in_(COVERING))
        .order_by(TaxSubmission.id.desc())
        .limit(1)
    )
    if found is not None:
        return found
    submission = TaxSubmission(
        invoice_id=invoice_id,
        delivery_id=delivery_id,
        created_by_id=user_id,
        message_code=new_message_code(),
    )
    db.session.add(submission)
    return submission
