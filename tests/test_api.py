"""The JSON API: bearer tokens, validation, and numbers without gaps under concurrent requests."""

import hashlib
import io
import json
import threading
import urllib.request
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.error import HTTPError
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from portal.auth.views import create as create_user
from portal.einvoice.signing import verify_xml
from portal.einvoice.xml import parse_xml
from portal.extensions import db
from portal.issuing.service import load_signer, seller_party, sign_document
from portal.models import ApiToken, Invoice, Seller, User
from tests.conftest import PASSWORD, LiveServer, login, make_app
from tests.data.make_samples import base_document

TODAY = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
SERIES = f"K{TODAY.year % 100:02d}TAA"  # what `flask demo seed` creates this year

BODY = {
    "series": f"1{SERIES}",
    "issue_date": TODAY.isoformat(),
    "buyer": {
        "name": "Công ty Cổ phần Nguyễn Hoàng",
        "tax_code": "0312345678",
        "email": "an@nguyenhoang.vn",
    },
    "lines": [
        {
            "name": "Giấy in A4",
            "unit": "Ram",
            "quantity": "10",
            "unit_price": "72000",
            "vat_rate": "10%",
        },
        {
            "name": "Dịch vụ giao hàng",
            "unit": "Chuyến",
            "quantity": 1,
            "unit_price": 350000,
            "vat_rate": "8%",
        },
    ],
}


def setup_api(app) -> str:
    """Seed the seller, series and certificate (no invoices) and return a new token."""
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed", "--invoices", "0"]).exit_code == 0
    return runner.invoke(args=["api-tokens", "create", "erp"]).output.strip()


@pytest.fixture
def api(app):
    token = setup_api(app)
    client = app.test_client()
    client.auth = {"Authorization": f"Bearer {token}"}
    return client


def test_a_token_is_required(api):
    missing = api.post("/api/v1/invoices", json=BODY)
    assert missing.status_code == 401 and missing.get_json()["error"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = {"Authorization": "Bearer nope"}
    assert api.post("/api/v1/invoices", json=BODY, headers=wrong).status_code == 401
    token = api.auth["Authorization"].split()[1]
    basic = {"Authorization": f"Basic {token}"}
    assert api.post("/api/v1/invoices", json=BODY, headers=basic).status_code == 401
    assert api.get("/api/v1/invoices/1", headers=wrong).status_code == 401
    with api.application.app_context():
        assert db.session.query(Invoice).count() == 0


def test_tokens_are_kept_only_as_hashes(app, api):
    token = api.auth["Authorization"].split()[1]
    with app.app_context():
        stored = db.session.scalars(db.select(ApiToken.token_hash)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]


def test_revoked_tokens_stop_working(app, api):
    result = app.test_cli_runner().invoke(args=["api-tokens", "revoke", "erp"])
    assert "Revoked 1 token" in result.output
    assert api.post("/api/v1/invoices", json=BODY, headers=api.auth).status_code == 401


def test_the_api_needs_no_csrf_token(tmp_path, migrated_db):
    # Bearer tokens are not sent by browsers on their own, so CSRF protection does not apply.
    app = make_app(tmp_path, migrated_db, WTF_CSRF_ENABLED=True)
    headers = {"Authorization": f"Bearer {setup_api(app)}"}
    assert app.test_client().post("/api/v1/invoices", json=BODY, headers=headers).status_code == 201
    with app.app_context():
        db.engine.dispose()


def test_issue_an_invoice(app, api):
    response = api.post("/api/v1/invoices", json=BODY, headers=api.auth)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert (created["form"], created["series"], created["number"]) == (1, SERIES, 1)
    assert created["total_amount"] == "1170000"  # 720.000 + 72.000 + 350.000 + 28.000
    assert created["amount_in_words"] == "Một triệu một trăm bảy mươi nghìn đồng"
    with app.app_context():
        invoice = db.session.get(Invoice, created["id"])
        assert verify_xml(invoice.xml).tax_code == invoice.seller_tax_code
        assert invoice.source == "api" and invoice.lookup_code == created["lookup_code"]
        doc = parse_xml(invoice.xml)
        assert doc.total_amount == invoice.total_amount == Decimal("1170000")
        assert doc.buyer.name == "Công ty Cổ phần Nguyễn Hoàng" and doc.seller.tax_code
        assert [s.rate for s in doc.summaries] == ["10%", "8%"]
    assert api.get(f"/api/v1/invoices/{created['id']}", headers=api.auth).get_json() == created


def test_every_problem_is_reported(api):
    body = dict(BODY, series="X", buyer={"name": "", "email": "sai", "tax_code": "123"},
                lines=[{"name": "A", "unit_price": "abc", "vat_rate": "7%"}])  # fmt: skip
    response = api.post("/api/v1/invoices", json=body, headers=api.auth)
    assert response.status_code == 422
    fields = {e["field"] for e in response.get_json()["errors"]}
    assert {
        "series",
        "buyer.name",
        "buyer.email",
        "buyer.tax_code",
        "lines[0].unit_price",
        "lines[0].vat_rate",
    } <= fields
    assert api.post("/api/v1/invoices", data="not json", headers=api.auth).status_code == 422
    with api.application.app_context():
        assert db.session.query(Invoice).count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"issue_date": (TODAY + timedelta(days=1)).isoformat()}, "issue_date"),
        ({"issue_date": TODAY.replace(year=TODAY.year - 1).isoformat()}, "issue_date"),
        ({"issue_date": "20/11/2026"}, "issue_date"),
        ({"currency": "USD"}, "exchange_rate"),
        ({"lines": []}, "lines"),
        ({"lines": [dict(BODY["lines"][0], kind=True)]}, "lines[0].kind"),
        ({"lines": [dict(BODY["lines"][0], quantity="0")]}, "lines[0].quantity"),
        ({"lines": [dict(BODY["lines"][0], unit_price="1.1234567")]}, "lines[0].unit_price"),
        ({"lines": [dict(BODY["lines"][0], vat_rate="KHAC:abc")]}, "lines[0].vat_rate"),
        ({"buyer": dict(BODY["buyer"], name="A\nB")}, "buyer.name"),
        ({"series": "2K99TZZ"}, "series"),
    ],
)
def test_each_invalid_field_is_named(api, change, field):
    response = api.post("/api/v1/invoices", json=dict(BODY, **change), headers=api.auth)
    assert response.status_code == 422
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_decimal_strings_other_rates_and_foreign_currency(app, api):
    body = dict(
        BODY, currency="USD", exchange_rate="25400.5", series=SERIES, issue_date=None,
        lines=[{"name": "Tư vấn", "quantity": "1.5", "unit_price": "100.10", "vat_rate": "KHAC:3.5%"}],
    )  # fmt: skip
    response = api.post("/api/v1/invoices", json=body, headers=api.auth)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    # 1.5 × 100.10 = 150.15; 3.5% of it = 5.26 (rounded to cents): 155.41 in all.
    assert created["total_amount"] == "155.41" and created["currency"] == "USD"
    assert created["amount_in_words"] == "Một trăm năm mươi lăm đô la Mỹ bốn mươi mốt xu"
    with app.app_context():
        invoice = db.session.get(Invoice, created["id"])
        assert invoice.exchange_rate == Decimal("25400.5")
        assert invoice.issued_on == TODAY
        assert verify_xml(invoice.xml).tax_code == invoice.seller_tax_code


def test_unknown_invoice_is_a_json_404(api):
    response = api.get("/api/v1/invoices/999", headers=api.auth)
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def post(url, token, body):
    request = urllib.request.Request(
        url + "/api/v1/invoices", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def concurrent_numbers(app, threads=8, each=10):
    token = setup_api(app)
    results = []
    with LiveServer(app) as live:

        def client():
            for _ in range(each):
                results.append(post(live.url, token, BODY))

        workers = [threading.Thread(target=client) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return results


def test_concurrent_requests_get_numbers_without_gaps_on_sqlite(app):
    results = concurrent_numbers(app)
    assert [status for status, _ in results] == [201] * 80
    assert sorted(body["number"] for _, body in results) == list(range(1, 81))


@pytest.mark.postgres
def test_concurrent_requests_get_numbers_without_gaps_on_postgresql(postgres_app):
    results = concurrent_numbers(postgres_app)
    assert [status for status, _ in results] == [201] * 80
    assert sorted(body["number"] for _, body in results) == list(range(1, 81))
    with postgres_app.app_context():
        assert db.session.query(Invoice).count() == 80


def import_through_the_page(app, number: int) -> None:
    """Import, as a sender on the import page, an invoice at `number` of SERIES.

    Signed with the demo's own certificate, as an invoice issued by other software of the
    same seller would be.
    """
    with app.app_context():
        seller = db.session.scalar(db.select(Seller))
        doc = base_document(number, series=SERIES, issued_on=TODAY, seller=seller_party(seller))
        xml = sign_document(doc, load_signer())
        if db.session.scalar(db.select(User).filter_by(username="clerk")) is None:
            create_user("clerk", PASSWORD, "sender")
    client = app.test_client()
    login(client, "clerk")
    answer = client.post(
        "/import/", data={"files": [(io.BytesIO(xml), f"{number}.xml")]},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert answer.status_code == 200
    with app.app_context():
        stored = db.session.scalar(db.select(Invoice).filter_by(series=SERIES, number=number))
        assert stored is not None and stored.source == "import"


def test_an_imported_number_moves_the_series_counter_past_it(app, api):
    import_through_the_page(app, 1)  # the series' next number
    issued = api.post("/api/v1/invoices", json=BODY, headers=api.auth)
    assert issued.status_code == 201, issued.get_json()
    assert issued.get_json()["number"] == 2
    import_through_the_page(app, 7)  # ahead of the counter: 3 to 6 stay free, in order
    import_through_the_page(app, 4)  # behind it: the counter stays
    numbers = [api.post("/api/v1/invoices", json=BODY, headers=api.auth) for _ in range(2)]
    assert [(n.status_code, n.get_json()["number"]) for n in numbers] == [(201, 8), (201, 9)]


def test_issuing_steps_over_a_number_already_stored(app, api):
    # An invoice imported before the counter rule (or stored by other means) holds the
    # series' next number: the API takes the next free one instead of answering 500.
    import_through_the_page(app, 1)
    import_through_the_page(app, 2)
    with app.app_context():
        db.session.execute(sa.text("UPDATE invoice_series SET next_number = 1"))
        db.session.commit()
    first, second = (api.post("/api/v1/invoices", json=BODY, headers=api.auth) for _ in range(2))
    assert (first.status_code, first.get_json()["number"]) == (201, 3)
    assert (second.status_code, second.get_json()["number"]) == (201, 4)
    with app.app_context():
        numbers = db.session.scalars(
            db.select(Invoice.number).filter_by(series=SERIES).order_by(Invoice.number)
        ).all()
    assert numbers == [1, 2, 3, 4]
