"""Resolve buyer links and lookup codes; record what shows the buyer received an invoice."""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

import segno
from flask import current_app, request
from flask_login import current_user

from portal import audit
from portal.database import write
from portal.extensions import db
from portal.invoices import projection
from portal.models import Delivery, Invoice, ReceiptEvent
from portal.sending.service import hash_token
from portal.statuses import OutboxStatus
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


# A request this soon after delivery is what mail scanners do; on its own it proves nothing.
AUTOMATIC_WITHIN = timedelta(seconds=10)
# The email-open image is fetched at every look at the email (and by anyone holding the
# link): one open per delivery a minute is kept, and the rest are not written at all.
OPEN_EVERY = timedelta(minutes=1)


@dataclass
class LinkState:
    """What a token resolves to: an open delivery, or why it shows nothing."""

    delivery: Delivery | None
    # "", "unknown", "revoked", "expired", or the invoice's state: "replaced", "adjusted",
    # "cancelled".
    problem: str = ""


def resolve(token: str) -> LinkState:
    """Find the delivery behind a buyer link, if the link still works.

    Every link sent stays valid for its invoice until the seller turns it off, it expires or
    the invoice itself is replaced, adjusted or cancelled: a resend to one address does not
    cut off the others, who never got the new email (docs/decisions.md, "Buyer portal").
    """
    if not token or len(token) > 100:
        return LinkState(None, "unknown")
    delivery = db.session.scalar(db.select(Delivery).filter_by(token_hash=hash_token(token)))
    # A refused email's link reached no one.
    if delivery is None or delivery.status == OutboxStatus.FAILED:
        return LinkState(None, "unknown")
    if delivery.revoked_at is not None:
        return LinkState(None, "revoked")
    if delivery.expires_at is not None and delivery.expires_at < utcnow():
        return LinkState(None, "expired")
    if not delivery.invoice.is_current:
        return LinkState(None, delivery.invoice.state)
    return LinkState(delivery)


@dataclass
class LiveLink:
    """A buyer link that works now: who received it, when, and when it was last opened."""

    delivery: Delivery
    last_opened: datetime | None


def live_links(invoice_id: int) -> list[LiveLink]:
    """The links of this invoice that work now, newest first, with their last open."""
    now = utcnow()
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None or not invoice.is_current:
        return []
    last_opened = (
        db.select(db.func.max(ReceiptEvent.at))
        .where(ReceiptEvent.delivery_id == Delivery.id, ReceiptEvent.possibly_automatic.is_(False))
        .scalar_subquery()
    )
    rows = db.session.execute(
        db.select(Delivery, last_opened)
        .where(
            Delivery.invoice_id == invoice_id,
            Delivery.token_hash.is_not(None),
            Delivery.status.in_((OutboxStatus.SENT, OutboxStatus.UNKNOWN)),
            Delivery.revoked_at.is_(None),
            db.or_(Delivery.expires_at.is_(None), Delivery.expires_at > now),
        )
        .order_by(Delivery.id.desc())
    ).all()
    return [LiveLink(delivery, opened) for delivery, opened in rows]


def turn_off(delivery_id: int) -> Delivery | None:
    """Turn off a delivery's buyer link (once); the buyer then sees that it no longer works."""
    with write():
        delivery = db.session.get(Delivery, delivery_id)
        if delivery is not None and delivery.revoked_at is None:
            delivery.revoked_at = utcnow()
            audit.record("link.revoked", target=delivery.invoice,
                         details={"delivery_id": delivery.id})  # fmt: skip
    return delivery


def find_by_lookup_code(code: str) -> Invoice | None:
    code = re.sub(r"[\s-]", "", code or "").upper()
    # Codes are letters and digits only; anything else (a NUL, which PostgreSQL refuses in a
    # query, or a stray symbol) cannot match and is not asked of the database.
    if not re.fullmatch(r"[A-Z0-9]{1,32}", code):
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
    # Scanners are recognised by what they do. Timing alone flags only an email open (an
    # image fetched within seconds of delivery, the weak signal); a page opened that soon is
    # judged with its visit: it is a person if the page's script ran (see `visits`).
    automatic = kind not in ALWAYS_A_PERSON and (
        looks_automatic(agent) or (kind == "email_opened" and soon_after_delivery(delivery, now))
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
        if (
            kind == "email_opened"
            and delivery is not None
            and _opened_lately(delivery, now, automatic)
        ):
            return None
        db.session.add(event)
        db.session.flush()
        projection.refresh([invoice_id])
    return event


def soon_after_delivery(delivery: Delivery | None, at: datetime) -> bool:
    return (
        delivery is not None
        and delivery.finished_at is not None
        and at - delivery.finished_at < AUTOMATIC_WITHIN
    )


# Events of one link and one browser with no gap longer than this are one visit.
VISIT_GAP = timedelta(minutes=30)
# What a visit did, strongest first: the visit is told by its strongest event.
STRENGTH = (
    "receipt_confirmed",
    "pdf_downloaded",
    "xml_downloaded",
    "page_shown",
    "email_opened",
    "link_opened",
)


@dataclass
class Visit:
    """One visit of the buyer's: a link opened, the page seen, files taken, receipt confirmed."""

    delivery: Delivery | None  # None: through the lookup page
    events: list[ReceiptEvent] = field(default_factory=list)

    @property
    def started_at(self) -> datetime:
        return self.events[0].at

    @property
    def ended_at(self) -> datetime:
        return self.events[-1].at

    @property
    def kinds(self) -> list[str]:
        """What happened, in order, each once; "opened the link" goes without saying once
        the page was seen."""
        kinds = list(dict.fromkeys(event.kind for event in self.events))
        if "link_opened" in kinds and len(kinds) > 1:
            kinds.remove("link_opened")
        return kinds

    @property
    def headline(self) -> str:
        """The strongest thing the visit did (by people, unless nothing else happened)."""
        people = [e.kind for e in self.events if not e.possibly_automatic] or [
            e.kind for e in self.events
        ]
        return min(people, key=STRENGTH.index)

    @property
    def automatic(self) -> bool:
        """Whether a scanner rather than a person made this visit.

        Every event flagged by its browser, or a link opened within seconds of delivery by a
        browser that never ran the page's script and took nothing.
        """
        if all(event.possibly_automatic for event in self.events):
            return True
        return self.kinds == ["link_opened"] and soon_after_delivery(self.delivery, self.started_at)

    @property
    def ip(self) -> str:
        return ", ".join(dict.fromkeys(event.ip for event in self.events if event.ip))

    @property
    def user_agent(self) -> str:
        return self.events[0].user_agent


def visits(invoice_id: int) -> list[Visit]:
    """The invoice's receipt events told as visits, oldest first.

    A visit is the events of one link (the lookup page counts as one link per address) and
    one browser (user agent) with no more than VISIT_GAP between one and the next: the page
    view, the downloads and the confirmation of one sitting make one entry. The address is
    not part of it, since a phone's address changes between networks.
    """
    events = db.session.scalars(
        db.select(ReceiptEvent)
        .filter_by(invoice_id=invoice_id)
        .order_by(ReceiptEvent.at, ReceiptEvent.id)
    ).all()
    deliveries = {
        d.id: d for d in db.session.scalars(db.select(Delivery).filter_by(invoice_id=invoice_id))
    }
    open_visits: dict[tuple, Visit] = {}
    told: list[Visit] = []
    for event in events:
        key = (event.delivery_id, event.user_agent, "" if event.delivery_id else event.ip)
        visit = open_visits.get(key)
        if visit is None or event.at - visit.ended_at > VISIT_GAP:
            visit = Visit(deliveries.get(event.delivery_id))
            open_visits[key] = visit
            told.append(visit)
        visit.events.append(event)
    return told


def lookup_address() -> str:
    """The lookup page's address as printed on the invoice (PORTAL_BASE_URL + /tra-cuu)."""
    return current_app.config["PORTAL_BASE_URL"].rstrip("/") + LOOKUP_PATH


def lookup_target(code: str) -> str:
    """The address a QR code on the invoice leads to: the lookup page with the code filled in."""
    return lookup_address() + "?" + urlencode({"code": code})


def lookup_qr(code: str) -> str:
    """A PNG data URI of the QR code to the invoice's lookup (one <img> for pages and the PDF)."""
    return segno.make(lookup_target(code), error="m").png_data_uri(scale=4, border=2)


def lookup_fingerprint() -> str:
    """A short hash of the printed lookup address: a PDF printed for another one is stale."""
    return hashlib.sha256(lookup_address().encode()).hexdigest()[:8]


LOOKUP_PATH = "/tra-cuu"


def _opened_lately(delivery: Delivery, now: datetime, automatic: bool) -> bool:
    """Whether an open of this delivery was kept in the last minute that this one would repeat.

    An open that counts is still kept after one flagged possibly automatic (a scanner's
    fetch right after delivery must not hide the buyer's own open a few seconds later).
    """
    # Opens of one delivery are written one after another (the row lock on PostgreSQL;
    # SQLite's writes are serial anyway), so two at once cannot both pass this check.
    db.session.execute(db.select(Delivery.id).filter_by(id=delivery.id).with_for_update())
    recent = db.select(ReceiptEvent.id).filter(
        ReceiptEvent.invoice_id == delivery.invoice_id,  # the indexed column
        ReceiptEvent.delivery_id == delivery.id,
        ReceiptEvent.kind == "email_opened",
        ReceiptEvent.at > now - OPEN_EVERY,
    )
    if not automatic:
        recent = recent.filter(ReceiptEvent.possibly_automatic.is_(False))
    return db.session.scalar(recent.limit(1)) is not None


def link_expiry() -> datetime | None:
    """When a buyer link made now stops working (BUYER_LINK_DAYS; 0 means never)."""
    days = current_app.config.get("BUYER_LINK_DAYS", 0)
    return utcnow() + timedelta(days=days) if days else None
