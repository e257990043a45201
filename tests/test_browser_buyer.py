"""A buyer opens the link on a phone, in Zalo's in-app browser, downloads the PDF and confirms."""

import re

import pytest
from rq import SimpleWorker

from portal.extensions import db
from portal.models import Invoice, MailSettings, ReceiptEvent
from portal.runtime.queue import get_queue, get_redis
from portal.sending import service
from tests.conftest import LiveServer, browser_login
from tests.factories import make_invoice

pytestmark = pytest.mark.browser

ZALO = (
    "Mozilla/5.0 (Linux; Android 13; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.230 Mobile Safari/537.36 Zalo android/12110801 ZaloTheme/light"
)


def test_buyer_opens_link_on_a_phone_downloads_and_confirms(app, smtp_server, browser, shop):
    live, invoice_id = shop
    with app.app_context():
        number = db.session.get(Invoice, invoice_id).number_label
        service.queue_delivery(invoice_id, None, service.parse_recipients("An", "an@example.com"))
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)
    text = smtp_server.messages[-1].message.get_body(("plain",)).get_content()
    link = re.search(re.escape(live.url) + r"/hd/\S+", text).group(0)

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="vi-VN",
        user_agent=ZALO,  # the link pasted into Zalo, opened in its in-app browser
        accept_downloads=True,
    )  # fmt: skip
    page = phone.new_page()
    page.goto(link)
    assert page.get_by_text("Công ty Cổ phần Nguyễn Hoàng").first.is_visible()
    assert page.get_by_text(number).first.is_visible()
    # The page fits the phone's width: no horizontal scroll of the whole page.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    with page.expect_download() as download:
        page.get_by_role("link", name="Tải PDF").click()
    assert download.value.suggested_filename.endswith(".pdf")
    with open(download.value.path(), "rb") as pdf:
        assert pdf.read(4) == b"%PDF"
    page.get_by_role("button", name="Xác nhận đã nhận hóa đơn").click()
    page.get_by_text("Cảm ơn Quý khách").wait_for()
    phone.close()

    with app.app_context():
        kinds = {
            e.kind
            for e in db.session.scalars(db.select(ReceiptEvent).filter_by(invoice_id=invoice_id))
        }
        assert {"link_opened", "page_shown", "pdf_downloaded", "receipt_confirmed"} <= kinds
        confirmed = db.session.scalar(db.select(ReceiptEvent).filter_by(
            invoice_id=invoice_id, kind="receipt_confirmed"))  # fmt: skip
        assert confirmed.possibly_automatic is False
        assert db.session.get(Invoice, invoice_id).received_at is not None

    seller = browser.new_context(locale="vi-VN")
    page = seller.new_page()
    browser_login(page, live, "viewer")
    page.goto(f"{live.url}/?period=all")
    row = page.locator(f"tr:has-text('{number}')").first
    assert row.locator("[data-received]").count() == 1
    assert (
        "Đã xem" in row.locator("[data-received]").get_attribute("title")
        or "Đã" in row.inner_text()
    )
    seller.close()


PHONE = {
    "viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
    "locale": "vi-VN", "user_agent": ZALO,
}  # fmt: skip


@pytest.fixture
def shop(app, redis_url, smtp_server, users):
    """A live portal with mail settings and one invoice; yields (live server, invoice id)."""
    with LiveServer(app) as live:
        app.config.update(
            REDIS_URL=redis_url, RQ_QUEUE="test-browser-buyer", PORTAL_BASE_URL=live.url
        )
        with app.app_context():
            get_redis().flushdb()
            db.session.add(MailSettings(host="127.0.0.1", port=smtp_server.port, security="none",
                                        sender_email="hoadon@anhduong.vn"))  # fmt: skip
            db.session.commit()
            invoice_id = make_invoice(buyer_name="Công ty Cổ phần Nguyễn Hoàng").id
        yield live, invoice_id


def newest_link(smtp_server, live) -> str:
    text = smtp_server.messages[-1].message.get_body(("plain",)).get_content()
    return re.search(re.escape(live.url) + r"/hd/\S+", text).group(0)


def work(app):
    with app.app_context():
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)


def test_a_resend_leaves_the_first_link_working_and_tat_turns_it_off(
    app, shop, smtp_server, browser
):
    live, invoice_id = shop
    with app.app_context():
        service.queue_delivery(
            invoice_id, None, service.parse_recipients("An", "an@example.com; binh@example.com")
        )
    work(app)
    first = newest_link(smtp_server, live)

    # The seller sends the invoice again, to one address only, from the invoice's page.
    seller = browser.new_context(locale="vi-VN")
    desk = seller.new_page()
    browser_login(desk, live, "sender")
    desk.goto(f"{live.url}/invoices/{invoice_id}")
    desk.get_by_role("link", name="Gửi HĐ cho KH").first.click()
    dialog = desk.locator("dialog#send-dialog")
    dialog.wait_for()
    notice = dialog.locator("[data-sent-before]").inner_text()
    assert "Đã gửi trước đây: lúc" in notice and "an@example.com; binh@example.com" in notice
    assert "Kết quả:" in notice and dialog.locator("input[type=checkbox][disabled]").count() == 0
    dialog.locator("[name=to]").fill("an@example.com")
    desk.wait_for_load_state("networkidle")
    dialog.get_by_role("button", name="Gửi", exact=True).click()
    dialog.wait_for(state="detached")
    work(app)
    second = newest_link(smtp_server, live)
    assert second != first

    # binh@example.com never got the new email: the first link still shows the invoice.
    phone = browser.new_context(**PHONE)
    buyer = phone.new_page()
    for link in (first, second):
        buyer.goto(link)
        buyer.get_by_role("link", name="Tải PDF").wait_for()
        assert buyer.get_by_text("Công ty Cổ phần Nguyễn Hoàng").first.is_visible()

    # The dialog lists both live links; Tắt turns the first one off, in place.
    desk.reload()
    desk.get_by_role("link", name="Gửi HĐ cho KH").first.click()
    rows = desk.locator("dialog#send-dialog [data-live-link]")
    rows.nth(1).wait_for()
    assert rows.count() == 2
    oldest = rows.nth(1)
    assert "binh@example.com" in oldest.inner_text() and "Chưa mở" not in oldest.inner_text()
    oldest.get_by_role("button", name="Tắt").click()
    desk.get_by_text("Đã tắt đường dẫn của người mua.").wait_for()
    assert desk.locator("dialog#send-dialog [data-live-link]").count() == 1
    assert desk.locator("dialog#send-dialog").is_visible()  # the dialog stays open
    seller.close()

    buyer.goto(first)
    buyer.get_by_text("Đường dẫn này đã bị tắt").wait_for()
    assert buyer.get_by_text("Công ty Cổ phần Nguyễn Hoàng").count() == 0
    buyer.goto(second)
    buyer.get_by_role("link", name="Tải PDF").wait_for()
    phone.close()


def test_the_printed_lookup_address_code_and_qr_lead_to_the_invoice(
    app, shop, smtp_server, browser, tmp_path
):
    import segno

    from tests.test_buyer import LOOKUP_LINE, pdf_text, qr_in_pdf

    live, invoice_id = shop
    with app.app_context():
        service.queue_delivery(invoice_id, None, service.parse_recipients("An", "an@example.com"))
    work(app)
    phone = browser.new_context(**PHONE, accept_downloads=True)
    page = phone.new_page()
    page.goto(newest_link(smtp_server, live))
    with page.expect_download() as download:
        page.get_by_role("link", name="Tải PDF").click()
    with open(download.value.path(), "rb") as handle:
        pdf = handle.read()
    address, code = LOOKUP_LINE.search(pdf_text(pdf, tmp_path)).groups()
    assert address == f"{live.url}/tra-cuu"

    # The buyer's page leads to the lookup; a wrong code keeps what was typed.
    page.locator("[data-lookup-link]").click()
    page.wait_for_url(address)
    page.get_by_text("bằng mã tra cứu in trên hóa đơn").wait_for()
    page.get_by_label("Mã tra cứu").fill(code[:-1] + "Q")
    page.get_by_role("button", name="Tra cứu").click()
    page.get_by_text("Không tìm thấy hóa đơn với mã tra cứu này.").wait_for()
    assert page.get_by_label("Mã tra cứu").input_value() == code[:-1] + "Q"
    page.get_by_label("Mã tra cứu").fill(code)
    page.get_by_role("button", name="Tra cứu").click()
    page.get_by_role("link", name="Tải PDF").wait_for()
    assert page.get_by_text("Công ty Cổ phần Nguyễn Hoàng").first.is_visible()

    # The QR code printed in the PDF is the lookup with this code: opening it shows the invoice.
    target = f"{address}?code={code}"
    assert qr_in_pdf(pdf) == [
        [bool(m) for m in row] for row in segno.make(target, error="m").matrix
    ]
    page.goto(target)
    page.get_by_role("link", name="Tải PDF").wait_for()
    assert page.get_by_text("Công ty Cổ phần Nguyễn Hoàng").first.is_visible()
    phone.close()
