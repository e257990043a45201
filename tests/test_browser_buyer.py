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


def test_buyer_opens_link_on_a_phone_downloads_and_confirms(
    app, redis_url, smtp_server, browser, users
):
    with LiveServer(app) as live:
        app.config.update(
            REDIS_URL=redis_url, RQ_QUEUE="test-browser-buyer", PORTAL_BASE_URL=live.url
        )
        with app.app_context():
            get_redis().flushdb()
            db.session.add(MailSettings(host="127.0.0.1", port=smtp_server.port, security="none",
                                        sender_email="hoadon@anhduong.vn"))  # fmt: skip
            db.session.commit()
            invoice = make_invoice(buyer_name="Công ty Cổ phần Nguyễn Hoàng")
            invoice_id, number = invoice.id, invoice.number_label
            service.queue_delivery(
                invoice_id, None, service.parse_recipients("An", "an@example.com")
            )
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
                for e in db.session.scalars(
                    db.select(ReceiptEvent).filter_by(invoice_id=invoice_id)
                )
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
