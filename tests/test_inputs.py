"""Inputs no one can break: unsafe text, absurd numbers and dates, wrong JSON types, absurd
list filters and too many recipients are refused with the field named, or fall back."""

import importlib
import pkgutil
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask_wtf import FlaskForm

import portal
from portal.bulk import service as bulk
from portal.extensions import db
from portal.inputs import CheckedForm
from portal.invoices.service import Filters
from portal.models import Delivery, EmailTemplate, Invoice, MailSettings, Seller, User
from portal.runtime.queue import get_redis
from portal.text import unsafe_character
from tests.conftest import login
from tests.factories import make_invoice
from tests.test_api import BODY, SERIES, setup_api

HTMX = {"HX-Request": "true"}
TODAY = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
LINE = BODY["lines"][0]


def with_buyer(**changes):
    return {"buyer": dict(BODY["buyer"], **changes)}


def with_line(**changes):
    return {"lines": [dict(LINE, **changes)]}


@pytest.fixture
def api(app):
    client = app.test_client()
    client.auth = {"Authorization": f"Bearer {setup_api(app)}"}
    return client


def refused(api, body, **headers) -> dict[str, str]:
    """Post the body; it must answer 422 and store nothing. Return {field: message}."""
    response = api.post("/api/v1/invoices", json=body, headers={**api.auth, **headers})
    assert response.status_code == 422, response.get_data(as_text=True)
    with api.application.app_context():
        assert db.session.query(Invoice).count() == 0
    return {e["field"]: e["message"] for e in response.get_json()["errors"]}


# --- the API ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        # Control characters, lone surrogates, bidi controls, line separators.
        (with_buyer(name="Công ty\x07 Nguyễn Hoàng"), "buyer.name"),
        (with_buyer(name="Công ty\tNguyễn Hoàng"), "buyer.name"),
        (with_buyer(address="45 Trần Hưng Đạo\r\nBcc: x@evil.example"), "buyer.address"),
        (with_buyer(name="Công ty \ud800 Nguyễn Hoàng"), "buyer.name"),
        (with_line(name="Giấy in \u202eA4"), "lines[0].name"),
        (with_buyer(person="Nguyễn Văn An\u2028Bcc: x@evil.example"), "buyer.person"),
        (with_buyer(code="KH\x00001"), "buyer.code"),
        (with_line(unit="Ram\u2069"), "lines[0].unit"),
        ({"payment_method": "TM\x85CK"}, "payment_method"),
        ({"series": f"1{SERIES}\x00"}, "series"),
        # Amounts beyond the XML's 21 digits and 6 decimals.
        (with_line(unit_price="9" * 40), "lines[0].unit_price"),
        (with_line(unit_price="1000000000000000"), "lines[0].unit_price"),
        (with_line(quantity="1.0000001"), "lines[0].quantity"),
        (with_line(quantity="99999999999999", unit_price="99999999999999"), "lines[0]"),
        (with_line(unit_price=1e300), "lines[0].unit_price"),
        ({"currency": "USD", "exchange_rate": "1" + "0" * 30}, "exchange_rate"),
        # Negative totals (the API makes no adjusting invoice).
        (with_line(unit_price="-72000"), "lines[0].unit_price"),
        (with_line(discount_rate="150"), "lines[0].discount_rate"),
        (
            {"lines": [LINE, dict(LINE, kind=3, quantity=1, unit_price="99000000")]},
            "total_amount",
        ),
        # Issue dates far from today, or not dates.
        ({"issue_date": "0001-01-01"}, "issue_date"),
        ({"issue_date": "9999-12-31"}, "issue_date"),
        ({"issue_date": (TODAY - timedelta(days=32)).isoformat()}, "issue_date"),
        ({"issue_date": "2026-02-30"}, "issue_date"),
        ({"issue_date": "20260101"}, "issue_date"),
        # Wrong JSON types.
        (with_line(kind=True), "lines[0].kind"),
        (with_line(kind=1.0), "lines[0].kind"),
        (with_line(kind="1"), "lines[0].kind"),
        (with_line(quantity=True), "lines[0].quantity"),
        (with_line(quantity="mười"), "lines[0].quantity"),
        (with_line(unit_price="1e5"), "lines[0].unit_price"),
        (with_line(unit_price=[72000]), "lines[0].unit_price"),
        (with_line(vat_rate=10), "lines[0].vat_rate"),
        (with_buyer(name=["Công ty"]), "buyer.name"),
        ({"buyer": "Công ty Nguyễn Hoàng"}, "buyer"),
        ({"series": 1}, "series"),
        ({"issue_date": 20260101}, "issue_date"),
        ({"currency": ["USD"]}, "currency"),
        ({"lines": {"0": LINE}}, "lines"),
        ({"lines": ["Giấy in A4"]}, "lines[0]"),
        # Far too many recipients.
        (with_buyer(email=";".join(f"kt{n}@x.vn" for n in range(600))), "buyer.email"),
    ],
)
def test_the_api_refuses_each_input_with_the_field_named(api, change, field):
    assert field in refused(api, dict(BODY, **change))


def test_api_messages_are_vietnamese_unless_english_is_asked_for(api):
    body = dict(BODY, **with_buyer(name="Công ty\u2028Nguyễn Hoàng"), **with_line(kind=True))
    vietnamese = refused(api, body)
    assert vietnamese["buyer.name"] == "Có ký tự ngắt dòng (U+2028); ô này chỉ có một dòng."
    assert vietnamese["lines[0].kind"] == "1, 2, 3 hoặc 4"
    english = refused(api, body, **{"Accept-Language": "en-US,en;q=0.9"})
    assert english["buyer.name"] == "Contains a line separator (U+2028); this field is one line."


def test_the_api_names_the_cap_on_recipients(api):
    emails = ";".join(f"k{n}@x.vn" for n in range(51))
    message = refused(api, dict(BODY, **with_buyer(email=emails)))["buyer.email"]
    assert "Tối đa 50 người nhận" in message and "51" in message
    fifty = ";".join(f"{n}@x.vn" for n in range(50))  # 389 characters: the column holds 400
    ok = api.post("/api/v1/invoices", json=dict(BODY, **with_buyer(email=fifty)), headers=api.auth)
    assert ok.status_code == 201, ok.get_json()


def test_a_body_nested_beyond_the_parser_is_refused(api):
    for text in ("[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        response = api.post("/api/v1/invoices", data=text, headers=api.auth,
                            content_type="application/json")  # fmt: skip
        assert response.status_code == 422


def test_the_api_still_takes_numbers_dates_and_text_that_are_fine(api):
    body = dict(
        BODY, issue_date=(TODAY - timedelta(days=min(31, TODAY.timetuple().tm_yday - 1))).isoformat(),
        lines=[dict(LINE, quantity=2.5, unit_price="999999.123456", discount_rate=100),
               dict(LINE, name="Chiết khấu", kind=3, quantity=1, unit_price=0),
               dict(LINE, name="Giấy in A4 \u200d loại 1", unit_price="72000")],
    )  # fmt: skip
    response = api.post("/api/v1/invoices", json=body, headers=api.auth)
    assert response.status_code == 201, response.get_json()


# --- seller forms -----------------------------------------------------------------------


def test_every_seller_form_checks_its_text():
    for module in pkgutil.walk_packages(portal.__path__, "portal."):
        importlib.import_module(module.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    forms = [f for f in subclasses(FlaskForm) if f.__module__.startswith("portal.")]
    assert len(forms) >= 8
    assert [f.__qualname__ for f in forms if not issubclass(f, CheckedForm)] == []


@pytest.fixture
def admin(app, users):
    client = app.test_client()
    login(client, "admin")
    return client


COMPANY = dict(name="Công ty TNHH Ánh Dương", tax_code="0101234567", address="12 Lê Lợi",
               phone="", email="ketoan@anhduong.vn", bank_account="", bank_name="")  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Công ty \u202eTNHH Ánh Dương", "Có ký tự đảo chiều văn bản (U+202E)."),
        ("address", "12 Lê Lợi\nQuận 1", "Có ký tự điều khiển (U+000A), không được phép."),
        ("bank_name", "Vietcombank\u2029", "Có ký tự ngắt dòng (U+2029); ô này chỉ có một dòng."),
        ("phone", "028\x1b3822", "Có ký tự điều khiển (U+001B), không được phép."),
    ],
)
def test_a_form_refuses_unsafe_text_beside_the_field(app, admin, field, value, message):
    response = admin.post("/settings/company", data=dict(COMPANY, **{field: value}))
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(Seller)) is None


def test_multi_line_text_keeps_tabs_and_line_breaks_but_nothing_else(app, admin):
    data = {"subject": "HĐ {{ number }}", "body_text": "Kính gửi\n\tQuý khách\r\n",
            "body_html": "<p>Kính gửi</p>\n<p>Quý khách</p>"}  # fmt: skip
    page = admin.post("/settings/email-template", data=dict(data, body_text="Kính gửi\x0c"))
    assert "Có ký tự điều khiển (U+000C)" in page.get_data(as_text=True)
    page = admin.post("/settings/email-template", data=dict(data, subject="HĐ\n{{ number }}"))
    assert "Có ký tự điều khiển (U+000A)" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(EmailTemplate)) is None
    assert admin.post("/settings/email-template", data=data).status_code == 302
    with app.app_context():
        assert "\tQuý khách" in db.session.scalar(db.select(EmailTemplate)).body_text


def test_the_login_form_names_a_control_character(client, users):
    response = client.post("/login", data={"username": "admin\x00", "password": "x"})
    assert response.status_code == 200
    assert "Có ký tự điều khiển (U+0000)" in response.get_data(as_text=True)


# --- the send dialog --------------------------------------------------------------------


@pytest.fixture
def sender(app, users, redis_url):
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE="test-inputs")
    with app.app_context():
        get_redis().flushdb()
        db.session.add(MailSettings(host="127.0.0.1", port=2525, security="none",
                                    sender_name="Ánh Dương", sender_email="hoadon@anhduong.vn"))  # fmt: skip
        db.session.commit()
        invoice_id = make_invoice(buyer_email="an@nguyenhoang.vn").id
    client = app.test_client()
    login(client, "sender")
    client.send_url = f"/invoices/{invoice_id}/send"
    return client


def deliveries(client) -> int:
    with client.application.app_context():
        return db.session.query(Delivery).count()


def test_a_recipient_name_with_a_line_separator_is_refused(sender):
    data = {"method": "email", "recipient_name": "Kế toán\u2028Bcc: x@evil.example",
            "to": "an@nguyenhoang.vn"}  # fmt: skip
    response = sender.post(sender.send_url, data=data, headers=HTMX)
    assert response.status_code == 422
    assert "Có ký tự ngắt dòng (U+2028)" in response.get_data(as_text=True)
    data["recipient_name"] = "Kế toán \u202eAn"
    response = sender.post(sender.send_url, data=data, headers=HTMX)
    assert response.status_code == 422 and "(U+202E)" in response.get_data(as_text=True)
    assert deliveries(sender) == 0


def test_a_send_to_600_recipients_is_refused_with_the_reason(sender):
    many = "; ".join(f"kt{n}@nguyenhoang.vn" for n in range(600))
    response = sender.post(sender.send_url, data={"method": "email", "to": many}, headers=HTMX)
    assert response.status_code == 422
    assert "Tối đa 50 người nhận mỗi lần gửi" in response.get_data(as_text=True)
    assert "lần này có 600" in response.get_data(as_text=True)
    # The cap counts To, CC and BCC together.
    to = "; ".join(f"a{n}@nguyenhoang.vn" for n in range(30))
    cc = "; ".join(f"c{n}@nguyenhoang.vn" for n in range(21))
    data = {"method": "email", "to": to, "cc": cc}
    response = sender.post(sender.send_url, data=data, headers=HTMX)
    assert response.status_code == 422 and "lần này có 51" in response.get_data(as_text=True)
    assert deliveries(sender) == 0
    data["cc"] = "; ".join(f"c{n}@nguyenhoang.vn" for n in range(20))
    assert sender.post(sender.send_url, data=data, headers=HTMX).status_code == 200
    assert deliveries(sender) == 1


# --- bulk rows --------------------------------------------------------------------------


@pytest.fixture
def drafted(app, users):
    with app.app_context():
        ids = [make_invoice(issued_on=date(2026, 3, 1 + n), buyer_email=f"kh{n}@example.com").id
               for n in range(3)]  # fmt: skip
        user = db.session.scalar(db.select(User).filter_by(username="sender"))
        filters = Filters(tab="not_sent", period="custom", date_from=date(2026, 3, 1),
                          date_to=date(2026, 3, 31))  # fmt: skip
        batch_id = bulk.create_draft(user.id, filters).id
    client = app.test_client()
    login(client, "sender")
    client.row_url = lambda invoice_id: f"/bulk/drafts/{batch_id}/rows/{invoice_id}"
    client.batch_id, client.ids = batch_id, ids
    return client


def test_a_bulk_row_with_too_many_recipients_or_unsafe_text_does_not_go(app, drafted):
    first, second, third = drafted.ids
    many = "; ".join(f"kt{n}@example.com" for n in range(600))
    row = drafted.post(drafted.row_url(first), data={"name": "", "to": many, "cc": ""},
                       headers=HTMX).get_data(as_text=True)  # fmt: skip
    assert "Tối đa 50 người nhận mỗi lần gửi" in row and "lần này có 600" in row
    row = drafted.post(drafted.row_url(second), headers=HTMX,
                       data={"name": "Chị Lan\u2028Bcc: x@evil.example", "to": "lan@example.com",
                             "cc": ""}).get_data(as_text=True)  # fmt: skip
    assert "Tên người nhận: Có ký tự ngắt dòng (U+2028)" in row
    row = drafted.post(drafted.row_url(third), headers=HTMX,
                       data={"name": "", "to": "lan@example.com\x00", "cc": ""})  # fmt: skip
    assert "Email người nhận: Có ký tự điều khiển (U+0000)" in row.get_data(as_text=True)
    with app.app_context():
        bulk.tick_all(drafted.batch_id, True)
        batch = db.session.get(bulk.Batch, drafted.batch_id)
        check = bulk.preflight(batch)
        # The refused name and address were not kept: those rows go to their buyers.
        assert [i.id for i, _e in check.without_address] == [first]
        names = {i: name for i, (name, *_r) in bulk.recipients(batch, drafted.ids).items()}
        assert "\u2028" not in names[second]


# --- list filters -----------------------------------------------------------------------


@pytest.fixture
def viewer(app, users):
    with app.app_context():
        make_invoice(issued_on=TODAY, buyer_name="Công ty Nguyễn Hoàng")
        make_invoice(issued_on=TODAY, buyer_name="Cửa hàng Bình Minh", series="K26TBB")
    client = app.test_client()
    login(client, "viewer")
    return client


@pytest.mark.parametrize(
    "query",
    [
        "series=" + "1" * 26 + "K26TAA",
        "series=K26TAA%00",
        "series=abc",
        "page=" + "9" * 30,
        "page=-5",
        "page=1e5",
        "date_from=0000-01-01",
        "date_from=99999-01-01",
        "date_from=2026-02-30&date_to=x",
        "q=%00",
        "q=%E2%80%AE",
        "sort=" + "x" * 50,
        "tab=%00&period=%00&received=%00&tax_status=%00",
    ],
)
def test_absurd_list_filters_fall_back_to_the_defaults(viewer, query):
    page = viewer.get(f"/?period=all&{query}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Công ty Nguyễn Hoàng" in text and "Cửa hàng Bình Minh" in text
    assert viewer.get(f"/invoices/statuses?ids=1&{query}").status_code == 200


def test_row_ids_that_are_not_ids_are_left_out(app, viewer):
    absurd = "ids=%C2%B2&ids=" + "9" * 30 + "&ids=-1&ids=1"
    page = viewer.get(f"/invoices/statuses?{absurd}")
    assert page.status_code == 200 and 'id="send-status-1"' in page.get_data(as_text=True)


def test_a_bulk_draft_with_an_absurd_series_falls_back_to_all_series(app, viewer, users):
    client = app.test_client()
    login(client, "sender")
    response = client.post("/bulk/load", data={"period": "all", "tab": "all",
                                                "series": "1" * 26 + "K26TAA"})  # fmt: skip
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Công ty Nguyễn Hoàng" in page and "Cửa hàng Bình Minh" in page
    refused = client.post("/bulk/load", data={"period": "all", "tab": "all", "q": "An\x00"})
    assert refused.status_code == 422 and "U+0000" in refused.get_data(as_text=True)


# --- the shared check -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "multiline", "found"),
    [
        ("Nguyễn Văn An", False, None),
        ("Kính gửi\n\tQuý khách\r\n", True, None),
        ("Kính gửi\nQuý khách", False, "\n"),
        ("dòng\u2028dòng", True, None),
        ("dòng\u2028dòng", False, "\u2028"),
        ("a\x7fb", True, "\x7f"),
        ("a\x9bb", True, "\x9b"),
        ("a\ud83db", True, "\ud83d"),
        ("a\u2067b", True, "\u2067"),
        ("a\u200fb", True, "\u200f"),
        ("a\uffffb", True, "\uffff"),
        ("😀 ZWJ\u200d ok", False, None),
    ],
)
def test_unsafe_characters(text, multiline, found):
    assert unsafe_character(text, multiline) == found


@pytest.mark.parametrize("code", ["ABCD\x00234567", "ABCD'234567", "ABCD%234567"])
def test_a_lookup_code_with_odd_characters_finds_nothing_on_postgresql(postgres_app, code):
    with postgres_app.app_context():
        make_invoice(lookup_code="ABCD234567")
    client = postgres_app.test_client()
    assert client.post("/tra-cuu", data={"code": code}).status_code == 404
    assert client.get("/tra-cuu", query_string={"code": code}).status_code == 404
    assert client.post("/tra-cuu", data={"code": "ABCD234567"}).status_code == 302
