"""What a seller clicks, in Debian's chromium: the list's filters and the send dialog."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from rq import SimpleWorker

from portal.extensions import db
from portal.models import MailSettings
from portal.runtime.queue import get_queue, get_redis
from tests.conftest import browser_login
from tests.factories import make_invoice

pytestmark = pytest.mark.browser


def today_in_vietnam(app) -> date:
    # From 17:00 UTC on a month's last day, Vietnam is already in the next month.
    return datetime.now(ZoneInfo(app.config["PORTAL_TIMEZONE"])).date()


@pytest.fixture
def seeded(app, users):
    today = today_in_vietnam(app)
    last_year = today.replace(year=today.year - 1)
    with app.app_context():
        make_invoice(issued_on=today, buyer_name="Công ty Nguyễn Hoàng", send_status="not_sent")
        make_invoice(issued_on=today, buyer_name="Cửa hàng Bình Minh", send_status="sent")
        make_invoice(
            issued_on=today,
            buyer_name="Đại lý Trần Gia",
            send_status="failed",
            total_amount=Decimal(5500),
        )
        make_invoice(issued_on=last_year, buyer_name="Công ty Năm Cũ")
    return app


def rows(page):
    return page.locator("#invoice-table tbody tr").all_inner_texts()


def test_filters_swap_the_table_without_a_page_load(seeded, live_server, page):
    browser_login(page, live_server, "viewer")
    page.goto(live_server.url + "/")
    page.evaluate("window.__sameDocument = true")
    assert any("Nguyễn Hoàng" in r for r in rows(page)) and not any(
        "Năm Cũ" in r for r in rows(page)
    )

    page.click("a[data-tab=failed]")
    page.wait_for_url("**tab=failed**")
    page.locator("#invoice-table tbody tr").first.wait_for()
    assert [r for r in rows(page) if "Trần Gia" in r] and not any(
        "Bình Minh" in r for r in rows(page)
    )

    page.click("a[data-tab=all]")
    page.wait_for_url("**tab=all**")
    page.select_option("select[name=period]", "all")
    page.wait_for_url("**period=all**")
    page.get_by_text("Công ty Năm Cũ").wait_for()

    page.fill("#filter-q", "binh minh")
    page.wait_for_url(lambda url: "q=binh" in url)
    page.wait_for_function("document.querySelectorAll('#invoice-table tbody tr').length === 1")
    assert "Cửa hàng Bình Minh" in rows(page)[0]
    assert page.evaluate("window.__sameDocument") is True  # no full page load happened

    page.go_back()
    page.wait_for_function("!location.search.includes('q=binh')")
    page.get_by_text("Công ty Năm Cũ").wait_for()
    page.reload()
    page.get_by_text("Công ty Năm Cũ").wait_for()  # the URL holds the filters


def test_the_list_works_without_javascript(seeded, live_server, browser):
    context = browser.new_context(java_script_enabled=False, locale="vi-VN")
    page = context.new_page()
    browser_login(page, live_server, "viewer")
    page.goto(live_server.url + "/")
    page.select_option("select[name=period]", "all")
    page.fill("#filter-q", "năm cũ")
    page.click("form#filters button[type=submit]")
    page.wait_for_url("**q=**")
    assert [r for r in rows(page) if "Công ty Năm Cũ" in r] and len(rows(page)) == 1
    page.click("a[data-tab=not_sent]")
    assert "tab=not_sent" in page.url
    context.close()


def test_send_dialog_from_the_list(app, users, live_server, page, redis_url, smtp_server):
    app.config.update(
        REDIS_URL=redis_url, RQ_QUEUE="test-browser-send", PORTAL_BASE_URL=live_server.url
    )
    with app.app_context():
        get_redis().flushdb()
        db.session.add(MailSettings(host="127.0.0.1", port=smtp_server.port, security="none",
                                    sender_name="Ánh Dương", sender_email="hoadon@anhduong.vn"))  # fmt: skip
        db.session.commit()
        other_id = make_invoice(issued_on=today_in_vietnam(app), buyer_name="Công ty Bình Minh",
                                buyer_email="ketoan@binhminh.vn").id  # fmt: skip
        invoice = make_invoice(issued_on=today_in_vietnam(app), buyer_name="Công ty Nguyễn Hoàng",
                               buyer_person="Nguyễn Văn An", buyer_email="an@nguyenhoang.vn")  # fmt: skip
        invoice_id = invoice.id
    browser_login(page, live_server, "sender")
    page.goto(live_server.url + "/?tab=not_sent")
    page.evaluate("window.__sameDocument = true")
    page.locator("a[data-tab=not_sent] .count", has_text="2").wait_for()

    # Open the dialog on one row and cancel: the next row's dialog opens as well.
    page.click(f"#invoice-{other_id} .actions a")
    dialog = page.locator("dialog#send-dialog")
    dialog.wait_for()
    assert dialog.locator("[name=to]").input_value() == "ketoan@binhminh.vn"
    dialog.get_by_role("button", name="Hủy").click()
    dialog.wait_for(state="detached")
    page.click(f"#invoice-{invoice_id} .actions a")
    dialog = page.locator("dialog#send-dialog")
    dialog.wait_for()
    assert dialog.locator("[name=recipient_name]").input_value() == "Nguyễn Văn An"
    assert dialog.locator("[name=to]").input_value() == "an@nguyenhoang.vn"

    # Sending with no address keeps the dialog open and says why.
    dialog.locator("[name=to]").fill("")
    page.wait_for_load_state("networkidle")
    dialog.get_by_role("button", name="Gửi", exact=True).click()
    page.get_by_text("Nhập ít nhất một email người nhận.").first.wait_for()
    dialog = page.locator("dialog#send-dialog")

    # Typing checks the addresses as the seller goes (htmx, after a short pause).
    dialog.locator("[name=to]").fill("an@nguyenhoang.vn; sai-dia-chi")
    page.get_by_text("“sai-dia-chi” không phải địa chỉ email hợp lệ").wait_for()
    page.wait_for_load_state("networkidle")
    dialog.locator("[name=to]").fill("an@nguyenhoang.vn; ketoan@nguyenhoang.vn")
    page.get_by_text("“sai-dia-chi”").wait_for(state="detached")

    # The preview shows what was typed, and again after an edit, CC and BCC included.
    dialog.get_by_role("button", name="Xem trước email").click()
    preview = page.locator(".email-preview")
    preview.get_by_text("ketoan@nguyenhoang.vn").wait_for()
    assert ".pdf (" in preview.inner_text()
    dialog.locator("[name=cc]").fill("giamdoc@nguyenhoang.vn")
    dialog.locator("[name=bcc]").fill("luu@anhduong.vn")
    page.wait_for_load_state("networkidle")
    dialog.get_by_role("button", name="Xem trước email").click()
    page.locator(".email-preview").get_by_text("giamdoc@nguyenhoang.vn").wait_for()
    assert "luu@anhduong.vn" in page.locator(".email-preview").inner_text()

    dialog.get_by_role("button", name="Gửi", exact=True).click()
    status = page.locator(f"#send-status-{invoice_id}")
    status.get_by_text("Đang gửi").wait_for()
    page.locator("dialog#send-dialog").wait_for(state="detached")

    with app.app_context():
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True)
    # The page's poller follows the send: the row stays in this tab showing how it ended,
    # its button becomes "send again", and the tab counts follow.
    status.get_by_text("Đã gửi HĐ cho KH").wait_for(timeout=10000)
    page.locator(f"#actions-{invoice_id}", has_text="Gửi lại").wait_for()
    page.locator("a[data-tab=sent] .count", has_text="1").wait_for()
    page.locator("a[data-tab=not_sent] .count", has_text="1").wait_for()
    assert page.evaluate("window.__sameDocument") is True
    assert sorted(smtp_server.messages[0].rcpt_tos) == [
        "an@nguyenhoang.vn",
        "giamdoc@nguyenhoang.vn",
        "ketoan@nguyenhoang.vn",
        "luu@anhduong.vn",
    ]


def test_dates_typed_dd_mm_yyyy_filter_the_list_whatever_the_browser_language(
    app, users, live_server, browser
):
    with app.app_context():
        make_invoice(issued_on=date(2026, 3, 4), buyer_name="Công ty Ngày Bốn")
        make_invoice(issued_on=date(2026, 3, 12), buyer_name="Công ty Ngày Mười Hai")
        make_invoice(issued_on=date(2026, 4, 3), buyer_name="Công ty Tháng Tư")
    # An American browser: <input type=date> would show and take mm/dd/yyyy there.
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    browser_login(page, live_server, "viewer")
    page.goto(live_server.url + "/")
    date_from = page.locator("input[name=date_from]")
    assert date_from.get_attribute("type") == "text"
    assert date_from.get_attribute("placeholder") == "dd/mm/yyyy"
    date_from.fill("05/03/2026")
    page.fill("input[name=date_to]", "03/04/2026")
    page.press("input[name=date_to]", "Enter")
    page.wait_for_url(lambda url: "date_to=03%2F04%2F2026" in url)
    page.get_by_text("05/03/2026 – 03/04/2026").wait_for()
    found = " ".join(rows(page))
    assert "Mười Hai" in found and "Tháng Tư" in found and "Ngày Bốn" not in found
    assert "05/03/2026 – 03/04/2026" in page.locator("#invoice-table").inner_text()
    # Reloaded (and from an ISO date in an old link), the boxes show dd/mm/yyyy.
    page.reload()
    assert page.locator("input[name=date_from]").input_value() == "05/03/2026"
    page.goto(live_server.url + "/?date_from=2026-03-12&date_to=2026-03-12")
    assert page.locator("input[name=date_from]").input_value() == "12/03/2026"
    assert [r for r in rows(page) if "Mười Hai" in r] and len(rows(page)) == 1
    # Buttons keep their words on one line; addresses wrap only after "@" and dots.
    assert (
        page.evaluate("getComputedStyle(document.querySelector('form#filters button')).whiteSpace")
        == "nowrap"
    )
    cell = page.locator("td.email").first
    assert cell.evaluate("e => getComputedStyle(e).overflowWrap") == "normal"
    assert "@<wbr>nguyenhoang.<wbr>vn" in cell.inner_html()
    assert page.locator("link[rel=icon]").get_attribute("href").endswith("favicon.svg")
    assert page.request.get(live_server.url + "/static/favicon.svg").ok
    # A date the server cannot read says how to type it, in the reader's language.
    page.goto(live_server.url + "/?date_from=2026/13/45")
    assert "dd/mm/yyyy" in page.locator("#invoice-table").inner_text()
    context.close()
