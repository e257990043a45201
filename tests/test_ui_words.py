"""The seller's pages speak one language: Vietnamese words in Vietnamese, English in English."""

import re

import pytest

from portal.extensions import db
from portal.models import Invoice, MailSettings
from portal.web import email_breaks
from tests.conftest import login

# What a Vietnamese page must never show: codes, element names as labels, WTForms' English.
RAW = [
    "(admin)",
    "(sender)",
    "permanent",
    ">sent<",
    "NBan/MST:",
    "KHHDon:",
    "This field is required",
    "Not a valid",
    "Invalid email address",
    "Field cannot be longer",
    "Number must be between",
    "The domain name",
    "An email address must have",
    "@-sign",
]
VIETNAMESE = re.compile(
    r"[àáảãạăắằẳẵặâấầẩẫậèéẻẽẹêếềểễệìíỉĩịòóỏõọôốồổỗộơớờởỡợùúủũụưứừửữựỳýỷỹỵđ]", re.I
)


@pytest.fixture
def demo(app, users, smtp_server):
    assert app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "40"]).exit_code == 0
    client = app.test_client()
    login(client, "admin")
    return client


def text_of(response) -> str:
    assert response.status_code in (200, 422), response.status_code
    return response.get_data(as_text=True)


def assert_no_raw(html: str, where: str) -> None:
    found = [raw for raw in RAW if raw in html]
    assert not found, (where, found)


def main_pages(app, client) -> dict[str, str]:
    """Render the seller's main pages, with a failed send, form errors and import reasons."""
    with app.app_context():
        failed = db.session.scalar(db.select(Invoice.id).filter_by(send_status="failed"))
        sent = db.session.scalar(db.select(Invoice.id).filter_by(send_status="sent"))
    pages = {url: text_of(client.get(url)) for url in (
        "/", "/?tab=failed", "/?tab=sent", f"/invoices/{failed}", f"/invoices/{sent}",
        f"/invoices/{failed}/send", "/bulk/", "/import/", "/settings/company", "/settings/series",
        "/settings/email", "/settings/email-template", "/settings/tax", "/?date_from=31/02/2026",
    )}  # fmt: skip
    # Forms with mistakes: WTForms' own messages and the address validator's.
    pages["email settings, wrong"] = text_of(client.post("/settings/email", data=dict(
        host="", port="abc", security="none", sender_email="not-an-address",
        reply_to="x@", rate_per_minute="0", test_to="")))  # fmt: skip
    pages["company, wrong"] = text_of(
        client.post("/settings/company", data=dict(name="", tax_code="123", email="a@"))
    )
    pages["send, wrong"] = text_of(
        client.post(f"/invoices/{sent}/send", data=dict(method="email", to="ketoan@@x; abc"))
    )
    with (
        open("tests/data/c_series.xml", "rb") as handle,
        open("tests/data/wrong_seller.xml", "rb") as other,
    ):  # noqa: E501
        pages["import"] = text_of(client.post("/import/", data={
            "files": [(handle, "c_series.xml"), (other, "wrong_seller.xml")]},
            content_type="multipart/form-data"))  # fmt: skip
    return pages


def test_vietnamese_pages_show_no_codes_and_no_english_validator_texts(app, demo):
    pages = main_pages(app, demo)
    for where, html in pages.items():
        assert_no_raw(html, where)
    assert "Địa chỉ IP" not in pages["/settings/company"]
    assert "<label>Địa chỉ" in pages["/settings/company"] or "Địa chỉ" in pages["/settings/company"]
    assert "(Quản trị)" in pages["/"]
    # The mistakes are named in Vietnamese.
    assert "Vui lòng nhập trường này." in pages["email settings, wrong"]
    assert "Số phải nằm trong khoảng 1 đến 100000." in pages["email settings, wrong"]
    assert "Địa chỉ email không hợp lệ." in pages["email settings, wrong"]
    assert "thiếu ký tự @" in pages["send, wrong"] or "phần" in pages["send, wrong"]
    assert "Mã số thuế người bán (NBan/MST)" in pages["import"]
    assert "Ký hiệu (KHHDon)" in pages["import"]
    assert "không tồn tại" in pages["/?tab=failed"] or "Máy chủ thư" in pages["/?tab=failed"]


def test_english_pages_say_it_in_english(app, demo):
    demo.post("/lang/en")
    template = text_of(demo.get("/settings/email-template"))
    variables = re.search(r'<dl class="variables">(.*?)</dl>', template, re.S).group(1)
    descriptions = re.findall(r"<dd>(.*?)</dd>", variables)
    assert len(descriptions) >= 12 and "Seller" in descriptions[0]
    assert not [d for d in descriptions if VIETNAMESE.search(d)], descriptions
    series = text_of(demo.get("/settings/series"))
    assert "1 — VAT invoice" in series and "Hóa đơn giá trị gia tăng" not in series
    assert "(Administrator)" in text_of(demo.get("/"))
    wrong = text_of(demo.post("/settings/email", data=dict(host="", port="abc")))
    assert "This field is required." in wrong


def test_the_last_test_email_reason_is_shown_in_the_readers_language(app, demo, smtp_server):
    form = dict(host="127.0.0.1", port=smtp_server.port, security="none", username="",
                sender_name="Ánh Dương", sender_email="hoadon@anhduong.vn", test_to="")  # fmt: skip
    demo.post("/settings/email", data=form)
    smtp_server.handler.data_replies = ["554 5.7.1 Message rejected as spam"]
    demo.post("/settings/email/test", data=form)
    with app.app_context():
        stored = db.session.scalar(db.select(MailSettings)).last_test_message
    assert "rejected" in stored and not VIETNAMESE.search(stored.replace("Ánh Dương", ""))
    vietnamese = text_of(demo.get("/settings/email"))
    assert "Máy chủ thư từ chối email" in vietnamese or "từ chối" in vietnamese
    demo.post("/lang/en")
    english = text_of(demo.get("/settings/email"))
    assert "The mail server rejected the email" in english
    assert "554 5.7.1 Message rejected as spam" in english


def test_addresses_break_after_at_and_dots_only():
    assert str(email_breaks("ketoan36@example.com;b.c@d.vn")) == (
        "ketoan36@<wbr>example.<wbr>com; b.<wbr>c@<wbr>d.<wbr>vn"
    )
    assert "<script>" not in str(email_breaks("<script>@x.vn"))
