"""The send dialog: prefilled recipients, inline address errors, preview, send, sent before."""

import pytest

from portal.extensions import db
from portal.models import Delivery, EmailTemplate, MailSettings
from portal.runtime.queue import get_redis
from tests.conftest import login
from tests.factories import make_invoice

HTMX = {"HX-Request": "true"}


@pytest.fixture
def sender(app, users, redis_url):
    app.config.update(
        REDIS_URL=redis_url, RQ_QUEUE="test-views", PORTAL_BASE_URL="https://hd.example.vn"
    )
    with app.app_context():
        get_redis().flushdb()
        db.session.add(MailSettings(host="127.0.0.1", port=2525, security="none",
                                    sender_name="Ánh Dương", sender_email="hoadon@anhduong.vn"))  # fmt: skip
        db.session.commit()
        invoice_id = make_invoice(buyer_person="Nguyễn Văn An", buyer_email="an@nguyenhoang.vn").id
    client = app.test_client()
    login(client, "sender")
    client.invoice_id = invoice_id
    return client


def test_dialog_is_prefilled_from_the_buyer(sender):
    page = sender.get(f"/invoices/{sender.invoice_id}/send", headers=HTMX).get_data(as_text=True)
    assert "<html" not in page and "<dialog" in page
    assert 'value="Nguyễn Văn An"' in page and "an@nguyenhoang.vn" in page
    assert "data-sent-before" not in page and "Đã gửi trước đây" not in page


def test_each_bad_address_gets_its_own_message(sender):
    data = {"recipient_name": "An", "to": "an@nguyenhoang.vn; sai-dia-chi; b@", "method": "email"}
    page = sender.post(f"/invoices/{sender.invoice_id}/send/check", data=data).get_data(
        as_text=True
    )
    assert "“sai-dia-chi” không phải địa chỉ email hợp lệ" in page
    assert "“b@” không phải địa chỉ email hợp lệ" in page
    response = sender.post(f"/invoices/{sender.invoice_id}/send", data=data, headers=HTMX)
    assert response.status_code == 422
    with sender.application.app_context():
        assert db.session.query(Delivery).count() == 0


def test_send_queues_one_delivery_and_swaps_the_row_status(sender):
    data = {
        "recipient_name": "An",
        "to": "an@nguyenhoang.vn, ketoan@nguyenhoang.vn",
        "cc": "",
        "bcc": "",
        "method": "email",
    }
    response = sender.post(f"/invoices/{sender.invoice_id}/send", data=data, headers=HTMX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert f'id="send-status-{sender.invoice_id}"' in body and 'hx-swap-oob="true"' in body
    assert f'id="actions-{sender.invoice_id}"' in body
    # The row joins the page's one poller (it does not poll by itself).
    assert f'name="ids" value="{sender.invoice_id}" data-pending' in body
    poller = body.split('id="status-poller"')[1].split(">")[0]
    assert 'hx-trigger="every 2s"' in poller and "/invoices/statuses" in poller
    assert "Đang gửi" in body
    # A double click finds the first delivery.
    again = sender.post(f"/invoices/{sender.invoice_id}/send", data=data, headers=HTMX).get_data(
        as_text=True
    )
    assert "Hóa đơn này đang được gửi." in again
    with sender.application.app_context():
        (delivery,) = db.session.scalars(db.select(Delivery)).all()
        assert delivery.to_addresses == "an@nguyenhoang.vn;ketoan@nguyenhoang.vn"


def test_status_stops_polling_once_finished(sender):
    sender.post(
        f"/invoices/{sender.invoice_id}/send",
        data={"to": "an@nguyenhoang.vn", "method": "email"},
        headers=HTMX,
    )
    with sender.application.app_context():
        delivery = db.session.scalar(db.select(Delivery))
        delivery.status = delivery.invoice.send_status = "failed"
        delivery.error_kind, delivery.reply_code, delivery.reply_message = (
            "recipient_refused",
            550,
            "No such user",
        )
        db.session.commit()
    status = sender.get(f"/invoices/{sender.invoice_id}/send-status").get_data(as_text=True)
    assert "hx-trigger" not in status and "Gửi lỗi" in status
    assert "Hộp thư người nhận không tồn tại" in status and "550 No such user" in status
    # The invoice page's sending history follows the ended send.
    assert 'id="send-history" hx-swap-oob="true"' in status


def test_dialog_says_when_and_to_whom_it_was_sent_before(sender):
    sender.post(
        f"/invoices/{sender.invoice_id}/send",
        data={"to": "an@nguyenhoang.vn", "method": "email"},
        headers=HTMX,
    )
    with sender.application.app_context():
        delivery = db.session.scalar(db.select(Delivery))
        delivery.status = delivery.invoice.send_status = "sent"
        db.session.commit()
    page = sender.get(f"/invoices/{sender.invoice_id}/send", headers=HTMX).get_data(as_text=True)
    notice = page.split("data-sent-before", 1)[1].split("</div>", 1)[0]
    # In words, not a greyed ticked box: when, to whom, by whom, with what result.
    assert "checkbox" not in notice
    assert "Đã gửi trước đây: lúc " in notice and " tới an@nguyenhoang.vn, người gửi " in notice
    assert "Kết quả:" in notice and "Đã gửi HĐ cho KH" in notice


def test_preview_shows_the_email_as_it_will_go_out(sender):
    page = sender.get(
        f"/invoices/{sender.invoice_id}/send/preview",
        query_string={"recipient_name": "Chị Lan", "to": "lan@x.vn"},
        headers=HTMX,
    ).get_data(as_text=True)
    assert (
        "gửi hóa đơn điện tử số" in page
        and "1K26TAA_" in page
        and ".pdf (" in page
        and ".xml (" in page
    )
    assert "Chị Lan" in page and "lan@x.vn" in page and "hoadon@anhduong.vn" in page


def test_a_preview_over_the_template_limits_says_so_instead_of_failing(sender):
    """Within its limits on the sample when saved, too long for this one buyer's invoice."""
    body = '{% if buyer_name == "Công ty Dài" %}{{ "x" * 9000000 }}{% endif %}Số {{ number }}'
    with sender.application.app_context():
        db.session.add(EmailTemplate(key="invoice", subject="HĐ {{ number }}", body_text=body,
                                     body_html="<p>{{ number }}</p>"))  # fmt: skip
        db.session.commit()
        long_one = make_invoice(buyer_name="Công ty Dài", buyer_email="dai@x.vn").id
    for headers in (HTMX, {}):
        answer = sender.get(f"/invoices/{long_one}/send/preview", headers=headers)
        page = answer.get_data(as_text=True)
        assert answer.status_code == 422 and "data-template-limit" in page
        assert "mẫu email vượt giới hạn" in page and "ký tự" in page
        assert ("<html" in page) == (headers == {})
    # Other invoices preview as before.
    other = sender.get(f"/invoices/{sender.invoice_id}/send/preview", headers=HTMX)
    assert other.status_code == 200 and "Số " in other.get_data(as_text=True)


def test_copy_link_gives_a_working_buyer_link_once(sender):
    page = sender.post(
        f"/invoices/{sender.invoice_id}/send", data={"method": "link", "to": ""}, headers=HTMX
    )
    link = page.get_data(as_text=True).split('value="https://hd.example.vn')[1].split('"')[0]
    anonymous = sender.application.test_client()
    assert anonymous.get(link).status_code == 200


def test_viewers_cannot_send(app, users):
    client = app.test_client()
    login(client, "viewer")
    with app.app_context():
        invoice_id = make_invoice().id
    assert client.get(f"/invoices/{invoice_id}/send").status_code == 403
    assert client.post(f"/invoices/{invoice_id}/send", data={"to": "a@b.vn"}).status_code == 403


def test_sending_without_settings_links_to_them(app, users, redis_url):
    app.config.update(REDIS_URL=redis_url)
    client = app.test_client()
    login(client, "sender")
    with app.app_context():
        invoice_id = make_invoice().id
    page = client.get(f"/invoices/{invoice_id}/send").get_data(as_text=True)
    assert "Chưa thiết lập email gửi hóa đơn." in page and "/settings/email" in page
    refused = client.post(
        f"/invoices/{invoice_id}/send", data={"to": "a@b.vn", "method": "email"}, headers=HTMX
    )
    assert (
        refused.status_code == 409
        and "Vui lòng thiết lập email gửi hóa đơn trước khi gửi." in refused.get_data(as_text=True)
    )


def test_no_js_send_redirects_to_the_list(sender):
    response = sender.post(
        f"/invoices/{sender.invoice_id}/send", data={"to": "an@nguyenhoang.vn", "method": "email"}
    )
    assert response.status_code == 302
    assert "đang được gửi" in sender.get(response.headers["Location"]).get_data(as_text=True)


def test_the_list_poller_swaps_the_rows_it_follows_and_the_tab_counts(sender):
    sender.post(f"/invoices/{sender.invoice_id}/send",
                data={"to": "an@nguyenhoang.vn", "method": "email"}, headers=HTMX)  # fmt: skip
    query = {"ids": sender.invoice_id, "tab": "not_sent", "period": "all"}
    pending = sender.get("/invoices/statuses", query_string=query, headers=HTMX)
    body = pending.get_data(as_text=True)
    assert f'id="send-status-{sender.invoice_id}" class="send-status" hx-swap-oob="true"' in body
    assert 'id="invoice-tabs"' in body and "hx-get=" in body.split('id="status-poller"')[1]
    with sender.application.app_context():
        from portal.invoices import projection

        delivery = db.session.scalar(db.select(Delivery))
        delivery.status, delivery.error_kind = "failed", "recipient_refused"
        projection.refresh([delivery.invoice_id])
        db.session.commit()
    ended = sender.get("/invoices/statuses", query_string=query, headers=HTMX).get_data(
        as_text=True
    )
    assert "Gửi lỗi" in ended and "Gửi lại" in ended  # the row and its button follow
    assert 'data-tab="failed">Gửi lỗi <span class="count">1</span>' in ended
    assert "hx-get" not in ended.split('id="status-poller"')[1].split(">")[0]  # nothing left


def test_a_delivery_address_leads_to_its_invoice(sender):
    sender.post(f"/invoices/{sender.invoice_id}/send",
                data={"to": "an@nguyenhoang.vn", "method": "email"}, headers=HTMX)  # fmt: skip
    with sender.application.app_context():
        delivery_id = db.session.scalar(db.select(Delivery.id))
    response = sender.get(f"/deliveries/{delivery_id}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(
        f"/invoices/{sender.invoice_id}#delivery-{delivery_id}"
    )
    assert sender.get("/deliveries/999999").status_code == 404


def test_the_poller_counts_under_the_dates_typed_in(sender):
    from datetime import date

    with sender.application.app_context():
        other = make_invoice(issued_on=date(2025, 6, 10)).id
    sender.post(f"/invoices/{other}/send",
                data={"to": "an@nguyenhoang.vn", "method": "email"}, headers=HTMX)  # fmt: skip
    # The form still says "this month" beside the dates: the dates decide, as in the list.
    query = {"ids": other, "period": "this_month", "date_from": "2025-06-01",
             "date_to": "2025-06-30"}  # fmt: skip
    body = sender.get("/invoices/statuses", query_string=query, headers=HTMX).get_data(as_text=True)
    assert 'data-tab="all">Tất cả <span class="count">1</span>' in body
