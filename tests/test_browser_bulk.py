"""Bulk send in Debian's chromium: load, edit a row, preview, send 50, pause, resume, done."""

import io
from datetime import date

import pikepdf
import pytest

from portal.extensions import db
from portal.models import Batch
from portal.runtime.queue import get_redis
from tests.conftest import browser_login
from tests.factories import make_invoice
from tests.helpers import add_mail_settings, start_worker, stop, wait_for, worker_env

pytestmark = pytest.mark.browser
COUNT = 50


def test_bulk_send_from_conditions_to_done(app, users, live_server, page, redis_url, smtp_server):
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE="test-browser-bulk",
                      PORTAL_BASE_URL=live_server.url)  # fmt: skip
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port)
        ids = [make_invoice(issued_on=date(2026, 4, 1 + n % 28), buyer_email=f"kh{n}@example.com").id
               for n in range(COUNT)]  # fmt: skip
    # The server takes a moment per message, so that the batch can be paused midway.
    smtp_server.handler.data_delay = 0.15
    browser_login(page, live_server, "sender")
    page.goto(live_server.url + "/bulk/")
    page.select_option("#conditions [name=period]", "custom")
    page.fill("#conditions [name=date_from]", "01/04/2026")
    page.fill("#conditions [name=date_to]", "30/04/2026")
    page.get_by_role("button", name="Lấy dữ liệu").click()
    page.get_by_text(f"Chọn tất cả {COUNT} hóa đơn phù hợp").wait_for()

    # One row's email becomes two addresses; a bad one is refused inline.
    first = page.locator(f"#bulk-row-{ids[0]}")
    first.locator("[name=to]").fill("an@nguyenhoang.vn; sai-dia-chi")
    first.locator("[name=to]").dispatch_event("change")
    page.locator(f"#bulk-row-{ids[0]} .field-error", has_text="“sai-dia-chi”").wait_for()
    first = page.locator(f"#bulk-row-{ids[0]}")
    first.locator("[name=to]").fill("an@nguyenhoang.vn; ketoan@nguyenhoang.vn")
    first.locator("[name=to]").dispatch_event("change")
    page.locator(f"#bulk-row-{ids[0]} .field-error").wait_for(state="detached")

    page.get_by_role("button", name=f"Chọn tất cả {COUNT} hóa đơn phù hợp").click()
    page.locator("#bulk-summary", has_text=f"{COUNT} hóa đơn được chọn").wait_for()

    # Xem hóa đơn đã chọn: one PDF, one page per invoice.
    pdf = page.request.get(f"{live_server.url}/bulk/drafts/{_draft_id(app)}/invoices.pdf")
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    with pikepdf.Pdf.open(io.BytesIO(pdf.body())) as merged:
        assert len(merged.pages) == COUNT

    page.get_by_role("button", name="Kiểm tra và gửi").click()
    page.get_by_text(f"{COUNT} hóa đơn sẽ được gửi.").wait_for()
    workers = start_worker(worker_env(app), workers=2)
    try:
        page.get_by_role("button", name=f"Gửi {COUNT} hóa đơn").click()
        page.wait_for_url("**/bulk/batches/*")
        done = page.locator("#batch-progress [data-done]")
        wait_for(lambda: int(done.inner_text()) >= 5, timeout=60)
        page.locator("button[data-action=pause]").click()
        page.locator("#batch-progress[data-status=paused]").wait_for()
        # In-flight emails finish; then nothing new starts.
        wait_for(lambda: not _sending(app), timeout=30)
        paused_at = len(smtp_server.messages)
        assert paused_at < COUNT
        page.wait_for_timeout(1500)
        assert len(smtp_server.messages) == paused_at
        page.locator("button[data-action=resume]").click()
        page.locator("#batch-progress[data-status=done]").wait_for(timeout=120_000)
        assert page.locator("#batch-progress progress").get_attribute("value") == str(COUNT)
    finally:
        stop(workers)
    # Each invoice exactly once, to its recipients.
    received = sorted(tuple(sorted(m.rcpt_tos)) for m in smtp_server.messages)
    expected = sorted([("an@nguyenhoang.vn", "ketoan@nguyenhoang.vn")]
                      + [(f"kh{n}@example.com",) for n in range(1, COUNT)])  # fmt: skip
    assert received == expected


def _draft_id(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(Batch.id).order_by(Batch.id.desc()))


def _sending(app) -> int:
    from portal.models import Delivery

    with app.app_context():
        return db.session.scalar(
            db.select(db.func.count()).select_from(Delivery).where(Delivery.status == "sending")
        )
