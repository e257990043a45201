"""The JSON API: bearer tokens, validation, and numbers without gaps under concurrent requests."""

import json
import threading
import urllib.request
from urllib.error import HTTPError

import pytest

from portal.einvoice.signing import verify_xml
from portal.extensions import db
from portal.models import Invoice
from tests.conftest import LiveServer

BODY = {
    "series": "1K26TAA",
    "issue_date": "2026-11-20",
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
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed", "--invoices", "0"]).exit_code == 0
    with app.app_context():
        from portal.models import InvoiceSeries

        series = db.session.scalar(db.select(InvoiceSeries).filter_by(form=1))
        series.series = "K26TAA"  # the body names this series whatever year the tests run in
        db.session.commit()
    return runner.invoke(args=["api-tokens", "create", "erp"]).output.strip()


@pytest.fixture
def api(app):
    token = setup_api(app)
    client = app.test_client()
    client.auth = {"Authorization": f"Bearer {token}"}
    return client


def test_a_token_is_required(api):
    assert api.post("/api/v1/invoices", json=BODY).status_code == 401
    assert (
        api.post(
            "/api/v1/invoices", json=BODY, headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )


def test_revoked_tokens_stop_working(app, api):
    app.test_cli_runner().invoke(args=["api-tokens", "revoke", "erp"])
    assert api.post("/api/v1/invoices", json=BODY, headers=api.auth).status_code == 401


def test_issue_an_invoice(app, api):
    response = api.post("/api/v1/invoices", json=BODY, headers=api.auth)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert (created["form"], created["series"], created["number"]) == (1, "K26TAA", 1)
    assert created["total_amount"] == "1170000"  # 720.000 + 72.000 + 350.000 + 28.000
    assert created["amount_in_words"] == "Một triệu một trăm bảy mươi nghìn đồng"
    with app.app_context():
        invoice = db.session.get(Invoice, created["id"])
        assert verify_xml(invoice.xml).tax_code == invoice.seller_tax_code
        assert invoice.source == "api" and invoice.lookup_code == created["lookup_code"]
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
