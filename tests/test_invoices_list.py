"""The issued-invoice list: tabs with counts, period, search, filters, sorting, pages, htmx."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from portal.extensions import db
from portal.invoices import service
from portal.types import utcnow
from tests.conftest import login
from tests.factories import make_invoice


@pytest.fixture
def listed(app, users):
    """Invoices this month in every send status, one last year, one in another series."""
    today = date.today()
    with app.app_context():
        make_invoice(
            number=1,
            issued_on=today,
            buyer_name="Công ty Nguyễn Hoàng",
            send_status="not_sent",
            total_amount=Decimal("1089000"),
        )
        make_invoice(
            number=2,
            issued_on=today,
            buyer_name="Cửa hàng Bình Minh",
            buyer_tax_code="",
            buyer_email="binhminh@example.com",
            send_status="sent",
            total_amount=Decimal("99000000"),
            received_at=utcnow(),
            received_kind="pdf_downloaded",
        )
        make_invoice(
            number=3,
            issued_on=today,
            buyer_name="Đại lý Trần Gia",
            send_status="failed",
            total_amount=Decimal("5500"),
        )
        make_invoice(
            number=4,
            issued_on=today,
            buyer_name="Hộ kinh doanh Lê Văn",
            send_status="unknown",
            total_amount=Decimal("770000"),
        )
        make_invoice(
            number=5, issued_on=today.replace(year=today.year - 1), buyer_name="Công ty Năm Cũ"
        )
        make_invoice(
            number=6,
            issued_on=today,
            series="K26TBB",
            form=2,
            buyer_name="Nhà hàng Phố Biển",
            total_amount=Decimal("200000"),
            tax_status="tax_accepted",
        )
    return app  # fmt: skip


def get(client, **args):
    return client.get("/", query_string=args).get_data(as_text=True)


def test_tabs_count_under_the_same_filters(listed):
    client = listed.test_client()
    login(client, "viewer")
    with listed.test_request_context():
        pass
    page = get(client)
    assert 'data-tab="all">Tất cả <span class="count">5</span>' in page
    assert 'data-tab="not_sent">Chưa gửi cho KH <span class="count">2</span>' in page
    assert 'data-tab="failed">Gửi lỗi <span class="count">2</span>' in page
    assert 'data-tab="sent">Đã gửi HĐ cho KH <span class="count">1</span>' in page


def test_a_tab_shows_only_its_rows(listed):
    client = listed.test_client()
    login(client, "viewer")
    failed = get(client, tab="failed")
    assert "Đại lý Trần Gia" in failed and "Hộ kinh doanh Lê Văn" in failed
    assert "Công ty Nguyễn Hoàng" not in failed and "Chưa rõ kết quả" in failed


def test_this_month_is_the_default_period_and_all_time_shows_older(listed):
    client = listed.test_client()
    login(client, "viewer")
    assert "Công ty Năm Cũ" not in get(client)
    assert "Công ty Năm Cũ" in get(client, period="all")
    assert "Công ty Năm Cũ" in get(
        client, period="custom", date_from=(date.today() - timedelta(days=400)).isoformat()
    )


def test_search_ignores_case_and_accents(listed):
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, q="NGUYỄN")
    assert "Công ty Nguyễn Hoàng" in page and "Bình Minh" not in page
    assert "Cửa hàng Bình Minh" in get(client, q="binh minh")
    assert "Cửa hàng Bình Minh" in get(client, q="binhminh@example")
    page = get(client, q="3")
    assert "Đại lý Trần Gia" in page


def test_filters_by_series_tax_status_and_received(listed):
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, series="2K26TBB")
    assert "Nhà hàng Phố Biển" in page and "Công ty Nguyễn Hoàng" not in page
    page = get(client, tax_status="tax_accepted")
    assert "Nhà hàng Phố Biển" in page and "Cửa hàng Bình Minh" not in page
    page = get(client, received="yes")
    assert (
        "Cửa hàng Bình Minh" in page
        and "data-received" in page
        and "Công ty Nguyễn Hoàng" not in page
    )
    assert "Cửa hàng Bình Minh" not in get(client, received="no")


def test_sorting_by_total_compares_numbers(listed):
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, sort="-total")
    order = [
        page.index(name) for name in ("Bình Minh", "Nguyễn Hoàng", "Lê Văn", "Phố Biển", "Trần Gia")
    ]
    assert order == sorted(order)
    page = get(client, sort="total")
    assert page.index("Trần Gia") < page.index("Bình Minh")


def test_pages(listed):
    listed.config["PAGE_SIZE"] = 2
    client = listed.test_client()
    login(client, "viewer")
    first = get(client, sort="number")
    assert "1–2 / 5" in first or "1–2" in first
    third = get(client, sort="number", page=3)
    assert "Nhà hàng Phố Biển" in third and "Công ty Nguyễn Hoàng" not in third
    assert "Nhà hàng Phố Biển" in get(client, sort="number", page=99)  # clamps to the last page


def test_bad_dates_get_a_message_not_an_error(listed):
    client = listed.test_client()
    login(client, "viewer")
    response = client.get("/", query_string={"period": "custom", "date_from": "31/02/2026"})
    assert response.status_code == 200
    assert "dd/mm/yyyy" in response.get_data(as_text=True)
    page = get(client, date_from="2026-05-01", date_to="2026-04-01")
    assert "trước ngày bắt đầu" in page or "before the start" in page


def test_htmx_gets_the_table_and_a_plain_request_the_page(listed):
    client = listed.test_client()
    login(client, "viewer")
    fragment = client.get("/?tab=sent", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="invoice-table"')
    assert "<html" not in fragment and "Cửa hàng Bình Minh" in fragment
    page = get(client, tab="sent")
    assert "<html" in page and '<form id="filters"' in page and "Cửa hàng Bình Minh" in page


def test_the_list_needs_login(app):
    response = app.test_client().get("/?tab=sent")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_invoice_page_and_its_files(listed):
    client = listed.test_client()
    login(client, "viewer")
    with listed.app_context():
        from portal.models import Invoice

        invoice = db.session.scalar(db.select(Invoice).filter_by(number=1))
        invoice_id, xml = invoice.id, invoice.xml
    page = client.get(f"/invoices/{invoice_id}").get_data(as_text=True)
    assert "HÓA ĐƠN GIÁ TRỊ GIA TĂNG" in page and "Lịch sử gửi" in page
    pdf = client.get(f"/invoices/{invoice_id}/pdf")
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert client.get(f"/invoices/{invoice_id}/xml").data == xml
    assert client.get("/invoices/999999").status_code == 404


@pytest.mark.postgres
def test_list_queries_on_postgresql(postgres_app):
    with postgres_app.app_context():
        today = date.today()
        make_invoice(
            number=1,
            issued_on=today,
            buyer_name="Công ty Nguyễn Hoàng",
            total_amount=Decimal("1089000"),
        )
        make_invoice(
            number=2,
            issued_on=today,
            buyer_name="Cửa hàng Bình Minh",
            send_status="sent",
            total_amount=Decimal("99000000"),
        )
        make_invoice(
            number=3,
            issued_on=today,
            buyer_name="Đại lý Trần Gia",
            send_status="failed",
            total_amount=Decimal("5500"),
        )
        with postgres_app.test_request_context():
            page = service.list_invoices(service.Filters(sort="-total"))
            assert [i.number for i in page.items] == [2, 1, 3]
            assert page.counts == {"all": 3, "not_sent": 1, "failed": 1, "sent": 1}
            found = service.list_invoices(service.Filters(q="TRẦN gia"))
            assert [i.number for i in found.items] == [3]
