"""The buyer portal: personal links, what they reveal, receipt events, the lookup page."""

import re
from datetime import timedelta

import pytest
from rq import SimpleWorker

from portal.extensions import db
from portal.models import Delivery, Invoice, MailSettings, ReceiptEvent
from portal.runtime.queue import get_queue, get_redis
from portal.sending import service
from portal.types import utcnow
from tests.conftest import login, make_app
from tests.factories import make_invoice

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


@pytest.fixture
def portal_app(app, redis_url, smtp_server):
    app.config.update(
        REDIS_URL=redis_url, RQ_QUEUE="test-buyer", SEND_RETRY_INTERVALS="0",
        PORTAL_BASE_URL="http://localhost",
    )  # fmt: skip
    with app.app_context():
        get_redis().flushdb()
        db.session.add(MailSettings(host="127.0.0.1", port=smtp_server.port, security="none",
                                    sender_email="hoadon@anhduong.vn"))  # fmt: skip
        db.session.commit()
    return app


def send(app, smtp_server, invoice_id=None, **invoice):
    """Send an invoice through the real worker and return (invoice_id, token from the email)."""
    with app.app_context():
        invoice_id = invoice_id or make_invoice(**invoice).id
        service.queue_delivery(invoice_id, None, service.parse_recipients("", "an@example.com"))
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)
    text = smtp_server.messages[-1].message.get_body(("plain",)).get_content()
    return invoice_id, re.search(r"http://localhost/hd/(\S+)", text).group(1)


def attachments(smtp_server):
    message = smtp_server.messages[-1].message
    return {
        part.get_filename().rsplit(".", 1)[1]: part.get_content()
        for part in message.iter_attachments()
    }


def events(app, invoice_id):
    with app.app_context():
        rows = db.session.scalars(
            db.select(ReceiptEvent).filter_by(invoice_id=invoice_id).order_by(ReceiptEvent.id)
        )
        return [(e.kind, e.possibly_automatic) for e in rows]


def backdate_delivery(app, invoice_id, seconds=60):
    """Move the send into the past, so that opens are not 'within seconds of delivery'."""
    with app.app_context():
        for delivery in db.session.scalars(db.select(Delivery).filter_by(invoice_id=invoice_id)):
            delivery.finished_at = utcnow() - timedelta(seconds=seconds)
        db.session.commit()


def test_the_link_shows_its_invoice_and_nothing_else(portal_app, smtp_server):
    client = portal_app.test_client()
    first_id, first_token = send(portal_app, smtp_server, buyer_name="Công ty Một")
    _, second_token = send(portal_app, smtp_server, buyer_name="Công ty Hai")
    page = client.get(f"/hd/{first_token}", headers={"User-Agent": PHONE})
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Công ty Một" in body and "Công ty Hai" not in body
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in page.headers["X-Robots-Tag"] and 'name="robots" content="noindex' in body
    assert "http://" not in re.sub(
        r'http://localhost[^"]*', "", body.split("<body")[0]
    )  # no third-party
    assert "Công ty Hai" in client.get(f"/hd/{second_token}").get_data(as_text=True)


def test_downloads_are_the_files_the_email_carried(portal_app, smtp_server):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    carried = attachments(smtp_server)
    assert client.get(f"/hd/{token}/pdf").data == carried["pdf"]
    assert client.get(f"/hd/{token}/xml").data == carried["xml"]
    assert [kind for kind, _ in events(portal_app, invoice_id)] == [
        "pdf_downloaded",
        "xml_downloaded",
    ]


def test_events_tick_buyer_received_on_the_first_real_one(portal_app, smtp_server):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    # An open within seconds of delivery may be a scanner: kept, flagged, ticks nothing.
    client.get(f"/hd/{token}/o.gif")
    with portal_app.app_context():
        assert db.session.get(Invoice, invoice_id).received_at is None
    backdate_delivery(portal_app, invoice_id)
    client.get(f"/hd/{token}/o.gif", headers={"User-Agent": PHONE})
    with portal_app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice.received_kind == "email_opened" and invoice.received_at is not None
    client.get(
        f"/hd/{token}", headers={"User-Agent": "Mozilla/5.0 (compatible; Barracuda scanner)"}
    )
    client.get(f"/hd/{token}", headers={"User-Agent": PHONE})
    client.post(f"/hd/{token}/shown", headers={"User-Agent": PHONE})
    client.post(f"/hd/{token}/confirm", headers={"User-Agent": PHONE})
    assert events(portal_app, invoice_id) == [
        ("email_opened", True),
        ("email_opened", False),
        ("link_opened", True),
        ("link_opened", False),
        ("page_shown", False),
        ("receipt_confirmed", False),
    ]
    with portal_app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        # Upgraded from the open: the tick says the strongest thing the buyer did, and is
        # dated by the first sign of receipt (the page shown).
        assert invoice.received_kind == "receipt_confirmed"
        shown = db.session.scalar(db.select(ReceiptEvent.at).filter_by(kind="page_shown"))
        assert invoice.received_at == shown


ZALO = (
    "Mozilla/5.0 (Linux; Android 13; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.230 Mobile Safari/537.36 Zalo android/12110801 ZaloTheme/light"
)
MESSENGER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/440.0.0.33.117;FBBV/540000000;FBDV/iPhone14,5]"
)


@pytest.mark.parametrize("agent", [ZALO, MESSENGER])
def test_a_chat_apps_in_app_browser_is_a_person(portal_app, smtp_server, agent):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    backdate_delivery(portal_app, invoice_id)
    client.get(f"/hd/{token}", headers={"User-Agent": agent})
    client.get(f"/hd/{token}/pdf", headers={"User-Agent": agent})
    assert events(portal_app, invoice_id) == [("link_opened", False), ("pdf_downloaded", False)]
    with portal_app.app_context():
        assert db.session.get(Invoice, invoice_id).received_kind == "pdf_downloaded"


def test_a_chat_apps_preview_fetcher_is_automatic(portal_app, smtp_server):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    backdate_delivery(portal_app, invoice_id)
    for agent in ("WhatsApp/2.23.20.0 A", "Zalo", "Viber/20.3.0", "TelegramBot (like TwitterBot)"):
        client.get(f"/hd/{token}", headers={"User-Agent": agent})
    assert events(portal_app, invoice_id) == [("link_opened", True)] * 4
    with portal_app.app_context():
        assert db.session.get(Invoice, invoice_id).received_at is None


def test_the_confirmation_button_always_counts(portal_app, smtp_server):
    """Pressed seconds after delivery, from any browser: only a person presses it."""
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    client.post(f"/hd/{token}/confirm", headers={"User-Agent": "HeadlessChrome preview"})
    assert events(portal_app, invoice_id) == [("receipt_confirmed", False)]
    with portal_app.app_context():
        assert db.session.get(Invoice, invoice_id).received_kind == "receipt_confirmed"


def test_the_sellers_own_look_records_nothing(portal_app, smtp_server, users):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    login(client, "sender")
    assert client.get(f"/hd/{token}").status_code == 200
    client.get(f"/hd/{token}/pdf")
    assert events(portal_app, invoice_id) == []


def test_a_resend_leaves_the_links_sent_before_working(portal_app, smtp_server):
    """The second recipient and the CC of the first email never got the new one."""
    client = portal_app.test_client()
    invoice_id, old = send(portal_app, smtp_server, buyer_name="Công ty Một")
    _, new = send(portal_app, smtp_server, invoice_id=invoice_id)
    assert old != new
    for token in (old, new):
        page = client.get(f"/hd/{token}", headers={"User-Agent": PHONE})
        assert page.status_code == 200 and "Công ty Một" in page.get_data(as_text=True)
        assert client.get(f"/hd/{token}/pdf").data.startswith(b"%PDF")


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ("replaced", "Hóa đơn này đã bị thay thế"),
        ("adjusted", "Hóa đơn này đã bị điều chỉnh"),
        ("cancelled", "Hóa đơn này đã bị hủy"),
    ],
)
def test_links_stop_when_the_invoice_is_replaced_adjusted_or_cancelled(
    portal_app, smtp_server, state, words
):
    client = portal_app.test_client()
    invoice_id, first = send(portal_app, smtp_server, buyer_name="Công ty Một")
    _, second = send(portal_app, smtp_server, invoice_id=invoice_id)
    with portal_app.app_context():
        db.session.get(Invoice, invoice_id).state = state
        db.session.commit()
    for token in (first, second):
        gone = client.get(f"/hd/{token}")
        body = gone.get_data(as_text=True)
        assert gone.status_code == 410 and words in body and "Công ty Một" not in body
        assert client.get(f"/hd/{token}/pdf").status_code == 410


def test_a_refused_emails_link_finds_nothing(portal_app, smtp_server):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    with portal_app.app_context():
        db.session.scalar(db.select(Delivery).filter_by(invoice_id=invoice_id)).status = "failed"
        db.session.commit()
    assert client.get(f"/hd/{token}").status_code == 404


def test_revoked_and_expired_links_reveal_nothing(portal_app, smtp_server):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server, buyer_name="Công ty Một")
    with portal_app.app_context():
        delivery = db.session.scalar(db.select(Delivery).filter_by(invoice_id=invoice_id))
        delivery.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    for path in ("", "/pdf", "/xml"):
        response = client.get(f"/hd/{token}{path}")
        assert response.status_code == 410 and b"%PDF" not in response.data
        assert "Công ty Một" not in response.get_data(as_text=True)
    with portal_app.app_context():
        delivery = db.session.scalar(db.select(Delivery).filter_by(invoice_id=invoice_id))
        delivery.expires_at, delivery.revoked_at = None, utcnow()
        db.session.commit()
    assert client.get(f"/hd/{token}").status_code == 410


def test_guessed_tokens_find_nothing_and_get_rate_limited(
    portal_app, smtp_server, tmp_path, migrated_db
):
    _, token = send(portal_app, smtp_server)
    # The same database, served by an app with rate limits on.
    uri = portal_app.config["SQLALCHEMY_DATABASE_URI"]
    (tmp_path / "limited").mkdir()
    client = make_app(tmp_path / "limited", migrated_db, RATELIMIT_ENABLED=True,
                      SQLALCHEMY_DATABASE_URI=uri).test_client()  # fmt: skip
    guesses = [token[:-1] + ("A" if token[-1] != "A" else "B")] + [f"{n:032d}" for n in range(40)]
    statuses = [client.get(f"/hd/{guess}").status_code for guess in guesses]
    assert 200 not in statuses
    assert statuses[0] == 404 and 429 in statuses


def test_lookup_code_finds_the_invoice_and_wrong_codes_look_alike(app):
    with app.app_context():
        make_invoice(lookup_code="ABCD234567", buyer_name="Công ty Một")
        make_invoice(lookup_code="ZZZZ999999")
    client = app.test_client()
    found = client.post("/tra-cuu", data={"code": "abcd 234567"})
    assert found.status_code == 302
    page = client.get(found.headers["Location"])
    assert "Công ty Một" in page.get_data(as_text=True)
    codes = ("ABCD234568", "ZZZZ99999", "X")
    wrong = [client.post("/tra-cuu", data={"code": code}) for code in codes]
    # Apart from the code typed, kept in its field, the answer is the same whatever exists.
    answers = {
        (r.status_code, r.get_data(as_text=True).replace(f'value="{code}"', 'value=""'))
        for r, code in zip(wrong, codes, strict=True)
    }
    assert len(answers) == 1 and wrong[0].status_code == 404
    assert 'value="ZZZZ99999"' in wrong[1].get_data(as_text=True)


def test_lookup_is_rate_limited(tmp_path, migrated_db):
    client = make_app(tmp_path, migrated_db, RATELIMIT_ENABLED=True).test_client()
    statuses = [
        client.post("/tra-cuu", data={"code": f"GUESS{n:05d}"}).status_code for n in range(15)
    ]
    assert statuses[:10] == [404] * 10 and statuses[-1] == 429


def test_the_seller_can_turn_a_link_off(portal_app, smtp_server, users):
    invoice_id, token = send(portal_app, smtp_server, buyer_name="Công ty Một")
    seller = portal_app.test_client()
    login(seller, "sender")
    page = seller.get(f"/invoices/{invoice_id}").get_data(as_text=True)
    assert "Tắt đường dẫn của người mua" in page
    with portal_app.app_context():
        delivery_id = db.session.scalar(db.select(Delivery.id).filter_by(invoice_id=invoice_id))
    assert seller.post(f"/deliveries/{delivery_id}/revoke").status_code == 302
    gone = portal_app.test_client().get(f"/hd/{token}")
    assert gone.status_code == 410 and "Công ty Một" not in gone.get_data(as_text=True)
    viewer = portal_app.test_client()
    login(viewer, "viewer")
    assert viewer.post(f"/deliveries/{delivery_id}/revoke").status_code == 403


def test_pages_answer_and_limits_still_count_while_redis_is_down(tmp_path, migrated_db):
    # The rate-limit storage is a Redis that does not answer: the limiter counts in memory.
    client = make_app(tmp_path, migrated_db, RATELIMIT_ENABLED=True,
                      RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0").test_client()  # fmt: skip
    assert client.get("/tra-cuu").status_code == 200
    assert client.get("/login").status_code == 200
    statuses = [
        client.post("/tra-cuu", data={"code": f"GUESS{n:05d}"}).status_code for n in range(15)
    ]
    assert 500 not in statuses and statuses[-1] == 429


def test_the_send_dialog_lists_the_live_links_and_turns_one_off(portal_app, smtp_server, users):
    invoice_id, first = send(portal_app, smtp_server, buyer_name="Công ty Một")
    _, second = send(portal_app, smtp_server, invoice_id=invoice_id)
    buyer = portal_app.test_client()
    buyer.get(f"/hd/{first}", headers={"User-Agent": PHONE})
    seller = portal_app.test_client()
    login(seller, "sender")
    htmx = {"HX-Request": "true"}
    dialog = seller.get(f"/invoices/{invoice_id}/send", headers=htmx).get_data(as_text=True)
    live = dialog.split('id="live-links"', 1)[1].split("</section>", 1)[0]
    with portal_app.app_context():
        older, newer = db.session.scalars(
            db.select(Delivery.id).filter_by(invoice_id=invoice_id).order_by(Delivery.id)
        ).all()
    # Both links, newest first, to whom, and when each was last opened (the first only).
    assert live.index(f'data-live-link="{newer}"') < live.index(f'data-live-link="{older}"')
    assert live.count("an@example.com") == 2 and live.count("Chưa mở") == 1
    assert live.count(">Tắt</button>") == 2 and 'name="csrf_token"' in live
    answer = seller.post(f"/deliveries/{older}/revoke", headers=htmx).get_data(as_text=True)
    assert f'data-live-link="{older}"' not in answer and f'data-live-link="{newer}"' in answer
    assert "Đã tắt đường dẫn của người mua." in answer
    gone = buyer.get(f"/hd/{first}")
    assert gone.status_code == 410 and "Đường dẫn này đã bị tắt" in gone.get_data(as_text=True)
    assert buyer.get(f"/hd/{second}").status_code == 200


def shift_events(app, invoice_id, delta):
    """Move the invoice's receipt events (and its sends) into the past by `delta`."""
    with app.app_context():
        for event in db.session.scalars(db.select(ReceiptEvent).filter_by(invoice_id=invoice_id)):
            event.at -= delta
        for delivery in db.session.scalars(db.select(Delivery).filter_by(invoice_id=invoice_id)):
            delivery.finished_at -= delta
        db.session.commit()


def told(app, invoice_id):
    from portal.buyer.service import visits

    with app.app_context():
        return [(v.kinds, v.headline, v.automatic) for v in visits(invoice_id)]


def test_one_visit_is_one_entry_and_its_tick_says_what_happened(portal_app, smtp_server, users):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    # A person who opens the email at once: seconds after delivery, and still a person.
    client.get(f"/hd/{token}", headers={"User-Agent": PHONE})
    client.post(f"/hd/{token}/shown", headers={"User-Agent": PHONE})
    client.get(f"/hd/{token}/pdf", headers={"User-Agent": PHONE})
    client.post(f"/hd/{token}/confirm", headers={"User-Agent": PHONE})
    # A mail scanner on the same link, at the same time: its own entry, told as automatic.
    client.get(f"/hd/{token}", headers={"User-Agent": "Mozilla/5.0 (compatible; Barracuda)"})
    assert events(portal_app, invoice_id)[0] == ("link_opened", False)
    shift_events(portal_app, invoice_id, timedelta(hours=2))
    # Back two hours later: a visit of its own.
    client.get(f"/hd/{token}", headers={"User-Agent": PHONE})
    client.post(f"/hd/{token}/shown", headers={"User-Agent": PHONE})
    assert told(portal_app, invoice_id) == [
        (["page_shown", "pdf_downloaded", "receipt_confirmed"], "receipt_confirmed", False),
        (["link_opened"], "link_opened", True),
        (["page_shown"], "page_shown", False),
    ]
    seller = portal_app.test_client()
    login(seller, "viewer")
    page = seller.get(f"/invoices/{invoice_id}").get_data(as_text=True)
    story = page.split('id="receipt-timeline"', 1)[1].split("</section>", 1)[0]
    assert "✓ <b>Đã xác nhận</b>" in story  # the invoice's tick
    assert story.count("data-visit") == 3 and story.count("data-automatic") == 1
    ticks = re.findall(r"<span data-tick>✓ ([^<]+)</span>", story)
    assert ticks == ["Đã xác nhận", "Đã xem"]
    assert story.count("qua đường dẫn gửi tới an@example.com") == 3
    assert "Đã xem hóa đơn, Đã tải PDF, Khách hàng xác nhận đã nhận" in story
    list_page = seller.get("/?period=all&tab=all").get_data(as_text=True)
    assert 'title="Đã xác nhận · ' in list_page


def test_a_link_opened_seconds_after_delivery_by_no_browser_is_automatic(portal_app, smtp_server):
    """A scanner that follows the link at delivery runs no script and takes nothing."""
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    client.get(f"/hd/{token}", headers={"User-Agent": PHONE})
    assert told(portal_app, invoice_id) == [(["link_opened"], "link_opened", True)]
    backdate_delivery(portal_app, invoice_id, seconds=3600)
    # The same open later is a person's, told as such (it ticks nothing: no page was shown).
    client.get(f"/hd/{token}", headers={"User-Agent": "Mozilla/5.0 (X11; Linux) Firefox/128.0"})
    assert told(portal_app, invoice_id)[1] == (["link_opened"], "link_opened", False)
    with portal_app.app_context():
        assert db.session.get(Invoice, invoice_id).received_at is None


LOOKUP_LINE = re.compile(r"Tra cứu hóa đơn tại: (\S+) - Mã tra cứu: (\S+)")


def pdf_text(data: bytes, tmp_path) -> str:
    """The PDF's text as pdftotext reads it (poppler), on one line."""
    from tests.test_rendering import flat, poppler

    return flat(poppler("pdftotext", data, tmp_path))


def qr_in_pdf(data: bytes) -> list[list[bool]]:
    """Read the QR code image out of the PDF back into its modules (dark = True).

    The image is drawn at 4 pixels per module with a 2-module quiet zone
    (portal.buyer.service.lookup_qr).
    """
    import io

    from pypdf import PdfReader

    (image,) = PdfReader(io.BytesIO(data)).pages[0].images
    picture = image.image.convert("L")
    scale, border = 4, 2
    size = picture.width // scale - 2 * border
    assert picture.width == picture.height == (size + 2 * border) * scale
    return [
        [
            picture.getpixel(((border + x) * scale + 1, (border + y) * scale + 1)) < 128
            for x in range(size)
        ]
        for y in range(size)
    ]


def test_the_pdf_the_page_and_the_email_print_where_to_look_the_invoice_up(
    portal_app, smtp_server, tmp_path
):
    import segno

    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server, buyer_name="Công ty Một")
    with portal_app.app_context():
        code = db.session.get(Invoice, invoice_id).lookup_code
    printed = f"Tra cứu hóa đơn tại: http://localhost/tra-cuu - Mã tra cứu: {code}"
    message = smtp_server.messages[-1].message
    assert printed in message.get_body(("plain",)).get_content()
    assert "http://localhost/tra-cuu</a> - Mã tra cứu: <b>" + code in (
        message.get_body(("html",)).get_content()
    )
    page = client.get(f"/hd/{token}", headers={"User-Agent": PHONE}).get_data(as_text=True)
    assert "Tra cứu hóa đơn tại: " in page and f"Mã tra cứu: <b>{code}</b>" in page
    assert '<img src="data:image/png;base64,' in page

    # Read back from the PDF the email carried: the address and the code lead to the invoice.
    address, printed_code = LOOKUP_LINE.search(
        pdf_text(attachments(smtp_server)["pdf"], tmp_path)
    ).groups()
    assert (address, printed_code) == ("http://localhost/tra-cuu", code)
    found = client.post(address.removeprefix("http://localhost"), data={"code": printed_code})
    assert "Công ty Một" in client.get(found.headers["Location"]).get_data(as_text=True)
    # The QR code is the lookup with the code filled in, and opening it shows the invoice.
    target = f"{address}?code={code}"
    expected = [[bool(m) for m in row] for row in segno.make(target, error="m").matrix]
    assert qr_in_pdf(attachments(smtp_server)["pdf"]) == expected
    opened = client.get(target.removeprefix("http://localhost"))
    assert opened.status_code == 302
    assert "Công ty Một" in client.get(opened.headers["Location"]).get_data(as_text=True)


def test_the_lookup_page_says_what_it_is_for_and_the_buyers_pages_lead_to_it(
    portal_app, smtp_server
):
    client = portal_app.test_client()
    _, token = send(portal_app, smtp_server)
    page = client.get(f"/hd/{token}", headers={"User-Agent": PHONE}).get_data(as_text=True)
    assert 'href="/tra-cuu" data-lookup-link' in page
    lookup = client.get("/tra-cuu").get_data(as_text=True)
    assert "Xem hóa đơn điện tử và tải tệp PDF, XML bằng mã tra cứu in trên hóa đơn" in lookup
    wrong = client.get("/tra-cuu?code=ABCD-1234")
    assert wrong.status_code == 404 and 'value="ABCD-1234"' in wrong.get_data(as_text=True)


def test_lookups_by_the_qr_address_count_against_the_limit(tmp_path, migrated_db):
    client = make_app(tmp_path, migrated_db, RATELIMIT_ENABLED=True).test_client()
    statuses = [client.get(f"/tra-cuu?code=GUESS{n:05d}").status_code for n in range(12)]
    assert statuses[:10] == [404] * 10 and statuses[-1] == 429
    assert client.get("/tra-cuu").status_code == 200  # the page itself is not a guess


def test_the_open_image_keeps_one_open_per_delivery_a_minute(portal_app, smtp_server):
    client = portal_app.test_client()
    invoice_id, token = send(portal_app, smtp_server)
    # A scanner's fetches right after delivery: one flagged open is kept.
    for _ in range(3):
        assert client.get(f"/hd/{token}/o.gif").mimetype == "image/gif"
    backdate_delivery(portal_app, invoice_id, seconds=30)
    # The buyer's own looks a few seconds later: still counted once, not hidden by the scan.
    for _ in range(5):
        answer = client.get(f"/hd/{token}/o.gif", headers={"User-Agent": PHONE})
        assert answer.status_code == 200 and answer.mimetype == "image/gif"
    assert events(portal_app, invoice_id) == [("email_opened", True), ("email_opened", False)]
    with portal_app.app_context():
        assert db.session.get(Invoice, invoice_id).received_kind == "email_opened"
        # A minute on, the next look is an open of its own.
        for event in db.session.scalars(db.select(ReceiptEvent).filter_by(invoice_id=invoice_id)):
            event.at -= timedelta(seconds=61)
        db.session.commit()
    for _ in range(3):
        client.get(f"/hd/{token}/o.gif", headers={"User-Agent": PHONE})
    assert [flagged for _, flagged in events(portal_app, invoice_id)] == [True, False, False]


def test_the_open_image_is_rate_limited(portal_app, smtp_server, tmp_path, migrated_db):
    invoice_id, token = send(portal_app, smtp_server)
    backdate_delivery(portal_app, invoice_id)
    uri = portal_app.config["SQLALCHEMY_DATABASE_URI"]
    (tmp_path / "limited").mkdir()
    client = make_app(tmp_path / "limited", migrated_db, RATELIMIT_ENABLED=True,
                      SQLALCHEMY_DATABASE_URI=uri).test_client()  # fmt: skip
    statuses = [
        client.get(f"/hd/{token}/o.gif", headers={"User-Agent": PHONE}).status_code
        for _ in range(40)
    ]
    assert statuses[:30] == [200] * 30 and statuses[30:] == [429] * 10
    assert events(portal_app, invoice_id) == [("email_opened", False)]
