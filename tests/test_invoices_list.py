"""The issued-invoice list: tabs with counts, period, search, filters, sorting, pages, htmx."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from portal.extensions import db
from portal.invoices import service
from portal.types import utcnow
from tests.conftest import login
from tests.factories import make_invoice


def seller_today(app) -> date:
    """Today in the seller's zone, as the list counts it (UTC may already be tomorrow there)."""
    return datetime.now(ZoneInfo(app.config["PORTAL_TIMEZONE"])).date()


@pytest.fixture
def listed(app, users):
    """Invoices this month in every send status, one last year, one in another series."""
    today = seller_today(app)
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
        client, period="custom", date_from=(seller_today(listed) - timedelta(days=400)).isoformat()
    )
    # dd/mm/yyyy as typed by hand, and dates alone mean a custom period.
    old = seller_today(listed).replace(year=seller_today(listed).year - 1)
    page = get(client, date_from=old.strftime("%d/%m/%Y"), date_to=old.strftime("%d/%m/%Y"))
    assert "Công ty Năm Cũ" in page and "Công ty Nguyễn Hoàng" not in page
    assert '<option selected value="custom">' in page


@pytest.mark.parametrize(
    "period, today, expected",
    [
        ("this_month", date(2026, 2, 14), (date(2026, 2, 1), date(2026, 2, 28))),
        ("last_month", date(2026, 1, 10), (date(2025, 12, 1), date(2025, 12, 31))),
        ("last_month", date(2024, 3, 31), (date(2024, 2, 1), date(2024, 2, 29))),
        ("this_quarter", date(2026, 11, 29), (date(2026, 10, 1), date(2026, 12, 31))),
        ("this_quarter", date(2026, 5, 1), (date(2026, 4, 1), date(2026, 6, 30))),
        ("this_year", date(2026, 7, 4), (date(2026, 1, 1), date(2026, 12, 31))),
        ("all", date(2026, 7, 4), (None, None)),
    ],
)
def test_period_ranges(period, today, expected):
    assert service.period_range(service.Filters(period=period), today) == expected


def test_this_month_follows_the_sellers_zone(app, monkeypatch):
    """At 20:00 UTC on 31 March it is already 1 April in Hồ Chí Minh City."""

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 3, 31, 20, 0, tzinfo=ZoneInfo("UTC")).astimezone(tz)

    monkeypatch.setattr(service, "datetime", Clock)
    with app.app_context():
        assert service.today() == date(2026, 4, 1)


def test_search_ignores_case_and_accents(listed):
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, q="NGUYỄN")
    assert "Công ty Nguyễn Hoàng" in page and "Bình Minh" not in page
    assert "Cửa hàng Bình Minh" in get(client, q="binh minh")
    assert "Cửa hàng Bình Minh" in get(client, q="binhminh@example")
    page = get(client, q="  nguyen   ")
    assert "Công ty Nguyễn Hoàng" in page


def test_tab_counts_follow_the_search(listed):
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, q="Bình Minh", tab="failed")
    assert 'data-tab="all">Tất cả <span class="count">1</span>' in page
    assert 'data-tab="sent">Đã gửi HĐ cho KH <span class="count">1</span>' in page
    assert 'data-tab="failed">Gửi lỗi <span class="count">0</span>' in page
    assert "No invoices match" not in page and 'colspan="11" class="muted empty"' in page


def test_a_number_matches_the_invoice_number_exactly(app):
    with app.app_context():
        invoice = make_invoice(number=4711, issued_on=seller_today(app), search_text="")
        invoice.search_text = ""  # only the number column can find it now
        db.session.commit()
        with app.test_request_context():
            assert [i.number for i in service.list_invoices(service.Filters(q="4711")).items] == [
                4711
            ]
            assert service.list_invoices(service.Filters(q="471")).items == []


def test_search_wildcards_are_taken_literally(listed):
    with listed.test_request_context():
        assert service.list_invoices(service.Filters(q="%")).total == 0
        assert service.list_invoices(service.Filters(q="_")).total == 0


def test_filters_by_series_tax_status_and_received(listed):
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, series="2K26TBB")
    assert "Nhà hàng Phố Biển" in page and "Công ty Nguyễn Hoàng" not in page
    assert '<option value="1K26TAA">1K26TAA</option>' in page
    assert "Nhà hàng Phố Biển" not in get(client, series="1K26TBB")  # same series, other form
    page = get(client, tax_status="tax_accepted")
    assert "Nhà hàng Phố Biển" in page and "Cửa hàng Bình Minh" not in page
    page = get(client, received="yes")
    assert (
        "Cửa hàng Bình Minh" in page
        and "data-received" in page
        and "Công ty Nguyễn Hoàng" not in page
    )
    assert "Cửa hàng Bình Minh" not in get(client, received="no")
    assert 'data-received title="Đã tải PDF · ' in page  # the kind in words, then the time


def test_replaced_and_cancelled_invoices_are_listed_and_marked(listed):
    with listed.app_context():
        make_invoice(number=7, issued_on=seller_today(listed), buyer_name="Công ty Đã Hủy",
                     state="cancelled")  # fmt: skip
    client = listed.test_client()
    login(client, "sender")
    page = get(client, q="da huy")
    assert "Công ty Đã Hủy" in page and "Đã hủy" in page and 'class="inactive"' in page
    assert 'hx-get="/invoices/' not in page  # no send button on a cancelled invoice


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


def test_sorting_by_number_and_buyer(listed):
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, sort="-number")
    # Series K26TAA before K26TBB descending puts TBB first, then numbers 4, 3, 2, 1.
    order = [page.index(n) for n in ("Phố Biển", "Lê Văn", "Trần Gia", "Bình Minh", "Nguyễn Hoàng")]
    assert order == sorted(order)
    page = get(client, sort="buyer")
    assert page.index("Cửa hàng Bình Minh") < page.index("Nhà hàng Phố Biển")
    # Not a column: the default order (newest first), and the form carries the default back.
    page = get(client, sort="xml; drop table invoice")
    assert 'name="sort" type="hidden" value="-date"' in page
    assert page.index("Nhà hàng Phố Biển") < page.index("Công ty Nguyễn Hoàng")


def test_pages(listed):
    listed.config["PAGE_SIZE"] = 2
    client = listed.test_client()
    login(client, "viewer")
    first = get(client, sort="number")
    assert "1–2 / 5" in first and "Trang 1 / 3" in first and 'rel="next"' in first
    assert "Công ty Nguyễn Hoàng" in first and "Đại lý Trần Gia" not in first
    third = get(client, sort="number", page=3)
    assert "5–5 / 5" in third and 'rel="prev"' in third and 'rel="next"' not in third
    assert "Nhà hàng Phố Biển" in third and "Công ty Nguyễn Hoàng" not in third
    assert "Nhà hàng Phố Biển" in get(client, sort="number", page=99)  # clamps to the last page


def test_bad_dates_get_a_message_not_an_error(listed):
    client = listed.test_client()
    login(client, "viewer")
    response = client.get("/", query_string={"period": "custom", "date_from": "31/02/2026"})
    assert response.status_code == 200
    assert "Từ: nhập ngày theo dạng dd/mm/yyyy" in response.get_data(as_text=True)
    # A page number that is not one is no one's typing mistake: page 1, silently.
    page = get(client, page="abc", tab="nonsense", period="nonsense")
    assert "field-error" not in page and "1–5 / 5" in page
    page = get(client, date_from="2026-05-01", date_to="2026-04-01")
    assert "Ngày kết thúc trước ngày bắt đầu." in page


def test_htmx_gets_the_table_and_a_plain_request_the_page(listed):
    client = listed.test_client()
    login(client, "viewer")
    fragment = client.get("/?tab=sent", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="invoice-table"')
    assert "<html" not in fragment and "Cửa hàng Bình Minh" in fragment
    page = get(client, tab="sent")
    assert "<html" in page and '<form id="filters"' in page and "Cửa hàng Bình Minh" in page


@pytest.mark.parametrize("url", ["/?tab=sent", "/invoices/1", "/invoices/1/pdf", "/invoices/1/xml"])
def test_the_list_and_the_invoice_need_login(listed, url):
    response = listed.test_client().get(url)
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
    assert "Chưa gửi cho KH" in page and "Chưa gửi CQT" in page and 'class="warning"' not in page
    pdf = client.get(f"/invoices/{invoice_id}/pdf")
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"] == 'inline; filename="1K26TAA_00000001.pdf"'
    xml_response = client.get(f"/invoices/{invoice_id}/xml")
    assert xml_response.data == xml and xml_response.mimetype == "application/xml"
    assert xml_response.headers["Content-Disposition"].startswith("attachment;")
    assert client.get("/invoices/999999").status_code == 404


def test_the_invoice_page_shows_the_warnings(app, users):
    with app.app_context():
        invoice_id = make_invoice(
            warnings="Tổng tiền bằng chữ khác số tiền\nThiếu email người mua"
        ).id
    client = app.test_client()
    login(client, "viewer")
    page = client.get(f"/invoices/{invoice_id}").get_data(as_text=True)
    assert 'class="warning"' in page
    assert (
        "<li>Tổng tiền bằng chữ khác số tiền</li>" in page
        and "<li>Thiếu email người mua</li>" in page
    )


@pytest.mark.postgres
def test_list_queries_on_postgresql(postgres_app):
    with postgres_app.app_context():
        today = seller_today(postgres_app)
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
            assert found.counts == {"all": 1, "not_sent": 0, "failed": 1, "sent": 0}
            assert service.series_choices() == ["1K26TAA"]


def _indexed(query: str) -> set[int]:
    """The invoices SQLite's trigram index itself finds for a folded query."""
    rows = db.session.execute(
        db.text("SELECT rowid FROM invoice_search WHERE invoice_search MATCH :q"),
        {"q": service._phrase(query)},
    )
    return {row[0] for row in rows}


def test_search_finds_partial_accent_free_matches_through_the_trigram_index(app):
    with app.app_context():
        today = seller_today(app)
        wanted = make_invoice(number=11, issued_on=today, buyer_name="Công ty TNHH Ánh Dương",
                              buyer_email="ketoan@anhduong.vn").id  # fmt: skip
        other = make_invoice(number=12, issued_on=today, buyer_name="Cửa hàng Bình Minh").id
        assert _indexed("anh duong") == {wanted}  # the index holds the folded text
        with app.test_request_context():
            for query in ("ÁNH DƯƠNG", "anh duo", "nh dương", "toan@anhd", "tnhh ánh"):
                found = service.list_invoices(service.Filters(q=query))
                assert [i.id for i in found.items] == [wanted], query
                assert found.counts["all"] == 1 and not found.capped
            # Two characters are below the index's trigrams: the column itself is read.
            assert [i.id for i in service.list_invoices(service.Filters(q="bì")).items] == [other]
            assert service.list_invoices(service.Filters(q='"anh')).items == []
            assert service.list_invoices(service.Filters(q="anh duong x")).items == []


def test_the_search_index_follows_inserts_updates_and_deletes(app):
    """The migration's triggers keep the FTS5 table in step with invoice.search_text."""
    from portal.models import Invoice

    with app.app_context():
        invoice = make_invoice(number=21, issued_on=seller_today(app), buyer_name="Nhà hàng Sen")
        assert _indexed("nha hang sen") == {invoice.id}
        invoice.search_text = "00000021 quan an hoa mai"
        db.session.commit()
        assert _indexed("nha hang sen") == set() and _indexed("hoa mai") == {invoice.id}
        with app.test_request_context():
            assert [i.id for i in service.list_invoices(service.Filters(q="Hoa Mai")).items] == [
                invoice.id
            ]
            assert service.list_invoices(service.Filters(q="nhà hàng")).items == []
        db.session.execute(db.delete(Invoice).where(Invoice.id == invoice.id))
        db.session.commit()
        assert _indexed("hoa mai") == set()
        # The index agrees with its content table (FTS5's own check raises if not).
        db.session.execute(
            db.text(
                "INSERT INTO invoice_search (invoice_search, rank) VALUES ('integrity-check', 1)"
            )
        )


def test_a_broad_search_is_not_counted_past_the_limit(listed):
    listed.config["LIST_SEARCH_COUNT_LIMIT"] = 2
    listed.config["PAGE_SIZE"] = 2
    with listed.test_request_context():
        # Every invoice of the fixture holds an "a" (short: read from the column, not the index).
        exact = service.list_invoices(service.Filters(q="a", period="all"))
        assert exact.capped and exact.counts == {"all": 2} and exact.total_label == "2+"
        assert exact.pages == 2 and len(exact.items) == 2 and exact.count_label("failed") == ""
    listed.config["LIST_SEARCH_COUNT_LIMIT"] = 100
    with listed.test_request_context():
        full = service.list_invoices(service.Filters(q="a", period="all"))
    assert not full.capped and full.total > 2
    assert [i.id for i in exact.items] == [i.id for i in full.items]  # the same rows, in order
    listed.config["LIST_SEARCH_COUNT_LIMIT"] = 2
    with listed.test_request_context():
        # Under the filters the broad search matches few rows: those are counted exactly.
        narrow = service.list_invoices(service.Filters(q="a", tab="failed", series="1K26TAA",
                                                       received="no", tax_status="not_sent"))  # fmt: skip
        assert not narrow.capped
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, q="a", period="all")
    assert 'data-tab="all">Tất cả <span class="count">2+</span>' in page
    assert 'data-tab="failed">Gửi lỗi</a>' in page
    assert "Hơn 2 hóa đơn khớp" in page and "Trang 1" in page and 'rel="next"' in page
    second = get(client, q="a", period="all", page=2)
    assert 'rel="prev"' in second
    # The poller's tab counts say the same.
    statuses = client.get("/invoices/statuses", query_string={"q": "a", "period": "all"})
    assert '<span class="count">2+</span>' in statuses.get_data(as_text=True)


def test_tabs_are_counted_up_to_the_limit(listed):
    with listed.test_request_context():
        exact = service.list_invoices(service.Filters(period="this_year"))
    listed.config["LIST_COUNT_LIMIT"] = 1
    with listed.test_request_context():
        # A month is always counted exactly; a longer period up to the limit.
        assert service.list_invoices(service.Filters()).counts["all"] == 5
        bounded = service.list_invoices(service.Filters(period="this_year"))
        assert bounded.counts == {"not_sent": 1, "failed": 1, "sent": 1, "all": 3}
        assert bounded.over == {"not_sent", "failed", "all"} and bounded.capped
        assert [bounded.count_label(t) for t in ("all", "not_sent", "sent")] == ["3+", "1+", "1"]
        sent = service.list_invoices(service.Filters(tab="sent", period="this_year"))
        assert not sent.capped and sent.total == 1 and sent.pages == 1
        assert service.tab_counts(service.Filters(period="this_year"))[1] == bounded.over
    assert [i.id for i in bounded.items] == [i.id for i in exact.items]  # the same rows
    client = listed.test_client()
    login(client, "viewer")
    page = get(client, period="this_year")
    assert 'data-tab="all">Tất cả <span class="count">3+</span>' in page
    assert 'data-tab="sent">Đã gửi HĐ cho KH <span class="count">1</span>' in page
    assert "1–5 / 5+" in page and "Hơn" not in page
    listed.config["LIST_COUNT_LIMIT"] = 0  # no limit: counted exactly, as before
    assert 'data-tab="all">Tất cả <span class="count">5</span>' in get(client, period="this_year")


def test_sorting_by_total_reads_the_numeric_sort_key(listed):
    from portal.models import Invoice

    with listed.app_context():
        totals = db.session.execute(db.select(Invoice.total_amount, Invoice.total_sort)).all()
        assert totals and all(float(amount) == key for amount, key in totals)
        plan = " ".join(
            str(row[-1])
            for row in db.session.execute(
                db.text(
                    "EXPLAIN QUERY PLAN SELECT id FROM invoice ORDER BY total_sort DESC, id DESC"
                )
            )
        )
        assert "ix_invoice_total_sort" in plan and "TEMP B-TREE" not in plan


@pytest.mark.postgres
def test_search_on_postgresql_finds_partial_accent_free_matches_through_pg_trgm(postgres_app):
    with postgres_app.app_context():
        today = seller_today(postgres_app)
        wanted = make_invoice(number=11, issued_on=today, buyer_name="Công ty TNHH Ánh Dương")
        make_invoice(number=12, issued_on=today, buyer_name="Cửa hàng Bình Minh")
        with postgres_app.test_request_context():
            for query in ("ÁNH DƯƠNG", "anh duo", "nh dương", "tnhh ánh"):
                found = service.list_invoices(service.Filters(q=query))
                assert [i.number for i in found.items] == [11], query
            assert service.list_invoices(service.Filters(q="100%")).items == []
            assert [i.number for i in service.list_invoices(service.Filters(q="bình m")).items] == [
                12
            ]
        # A changed search text is found at once (the GIN index is the column's own).
        wanted.search_text = "00000011 quan an hoa mai"
        db.session.commit()
        with postgres_app.test_request_context():
            assert [
                i.number for i in service.list_invoices(service.Filters(q="hoa mai")).items
            ] == [11]
            assert service.list_invoices(service.Filters(q="anh duong")).items == []
        # The search's own condition (LIKE ... ESCAPE) can use the trigram index.
        from sqlalchemy.dialects import postgresql

        condition = service.search_condition("anh duong")
        sql = str(
            db.select(db.literal(1))
            .where(condition)
            .compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        )
        db.session.execute(db.text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(row[0] for row in db.session.execute(db.text("EXPLAIN " + sql)))
        assert "ix_invoice_search_trgm" in plan
        db.session.rollback()
