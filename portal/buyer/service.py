"""Resolve buyer links and lookup codes; record what shows the buyer received an invoice."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, request
from flask_login import current_user

from portal.database import write
from portal.extensions import db
from portal.invoices import projection
from portal.models import Delivery, Invoice, ReceiptEvent
from portal.sending.service import hash_token
from portal.types import utcnow

# Events that show a person has the invoice; an email open is a weak signal of its own.
STRONG, WEAK = projection.STRONG_RECEIPTS, projection.WEAK_RECEIPTS
KINDS = ("email_opened", "link_opened", *STRONG)

# Mail security scanners and link-preview bots open links by themselves.
SCANNER = re.compile(
    r"bot\b|crawler|spider|preview|scan|barracuda|mimecast|proofpoint|safelinks|"
    r"symantec|trendmicro|fortiguard|sophos|python-requests|curl/|wget/|go-http-client|"
    r"headlesschrome|slackbot|facebookexternalhit",
    re.IGNORECASE,
)
# Chat apps fetch a pasted link's preview under their own name, without a browser's
# "Mozilla/" prefix; their in-app browsers (Zalo, Messenger, WhatsApp, Viber) carry a full
# browser agent with the app's name added, and are people (docs/decisions.md, buyer portal).
CHAT_PREVIEW = re.compile(r"^(whatsapp|zalo|viber|telegram|line/)", re.IGNORECASE)
# Only a person presses the confirmation button: it counts whatever the browser says.
ALWAYS_A_PERSON = ("receipt_confirmed",)


def looks_automatic(agent: str) -> bool:
    return bool(SCANNER.search(agent) or CHAT_PREVIEW.match(agent))


AUTOMATIC_WITHIN = timedelta(seconds=10)


@dataclass
class LinkState:
    """What a token resolves to: an open delivery, or why it shows nothing."""

    delivery: Delivery | None
    problem: str = ""  # "", "unknown", "revoked", "expired", "replaced"


def resolve(token: str) -> LinkState:
    if not token or len(token) > 100:
        return LinkState(None, "unknown")
    delivery = db.session.scalar(db.select(Delivery).filter_by(token_hash=hash_token(token)))
    if delivery is None:
        return LinkState(None, "unknown")
    if delivery.revoked_at is not None:
        return LinkState(None, "revoked")
    if delivery.expires_at is not None and delivery.expires_at < utcnow():
        return LinkState(None, "expired")
    newer = db.session.scalar(
        db.select(Delivery.id)
        .filter(
            Delivery.invoice_id == delivery.invoice_id,
            Delivery.id > delivery.id,
            Delivery.token_hash.is_not(None),
            Delivery.status.in_(("sent", "unknown")),
        )
        .limit(1)
    )
    if newer is not None:
        return LinkState(None, "replaced")
    return LinkState(delivery)


def find_by_lookup_code(code: str) -> Invoice | None:
    code = re.sub(r"[\s-]", "", code or "").upper()
    if not code or len(code) > 32:
        return None
    return db.session.scalar(db.select(Invoice).filter_by(lookup_code=code))


def record(invoice_id: int, delivery: Delivery | None, kind: str) -> ReceiptEvent | None:
    """Keep one event with time, address and browser; the invoice's "received" follows from it.

    Nothing is recorded while a logged-in seller looks: their previews never count.
    """
    if current_user.is_authenticated:
        return None
    now = utcnow()
    agent = (request.user_agent.string or "")[:500]
    automatic = (
        kind not in ALWAYS_A_PERSON
        and looks_automatic(agent)
        or (
            delivery is not None
            and delivery.finished_at is not None
            and now - delivery.finished_at < AUTOMATIC_WITHIN
            and kind in ("email_opened", "link_opened")
        )
    )
    event = ReceiptEvent(
        invoice_id=invoice_id,
        delivery_id=delivery.id if delivery else None,
        kind=kind,
        at=now,
        ip=(request.remote_addr or "")[:64],
        user_agent=agent,
        possibly_automatic=automatic,
    )
    with write():
        db.session.add(event)
        db.session.flush()
        projection.refresh([invoice_id])
    return event


def link_expiry() -> datetime | None:
    """When a buyer link made now stops working (BUYER_LINK_DAYS; 0 means never)."""
    days = current_app.config.get("BUYER_LINK_DAYS", 0)
    return utcnow() + timedelta(days=days) if days else None
