"""Query the issued-invoice list: tabs, period, search, filters, sorting and pages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import Float, and_, cast, func, or_, select

from portal.extensions import db
from portal.models import Delivery, Invoice
from portal.statuses import SendStatus
from portal.text import fold, unsafe_character

# Tabs of the list and the send statuses each shows. A send in flight (or waiting to retry)
# has not reached the buyer yet: it stays under "not sent", where the seller started it, until
# it ends. "Chưa rõ kết quả" (unknown) sits with the failures: the seller has to decide.
TABS = {
    "all": None,
    "not_sent": tuple(
        s.value
        for s in SendStatus
        if s in (SendStatus.NOT_SENT, SendStatus.CANCELLED) or s.is_active
    ),
    "failed": tuple(s.value for s in SendStatus if s.needs_attention),
    "sent": (SendStatus.SENT.value,),
}
SEND_STATUSES = tuple(s.value for s in SendStatus)
PERIODS = ("this_month", "last_month", "this_quarter", "this_year", "custom", "all")
SORTS = {"date", "number", "buyer", "total"}
# The series box offers form + series ("1K26TAA"); a series alone also filters.
SERIES_FILTER = re.compile(r"([1-9])?(K\d{2}[A-Z][A-Z0-9]{2})")
MAX_PAGE = 1_000_000  # beyond any list; the page shown is clamped to the last one anyway


@dataclass
class Filters:
    tab: str = "all"
    period: str = "this_month"
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    series: str = ""
    tax_status: str = ""
    received: str = ""  # "", "yes", "no"
    sort: str = "-date"
    page: int = 1

    def __post_init__(self) -> None:
        """Fall back to the default of any value the list cannot use: anyone can type a URL."""
        if self.tab not in TABS:
            self.tab = "all"
        if self.period not in PERIODS:
            self.period = "this_month"
        # An unsafe character (a NUL fails on PostgreSQL) is a space to the search.
        text = self.q if isinstance(self.q, str) else ""
        self.q = "".join(" " if unsafe_character(ch) else ch for ch in text[:100]).strip()
        if not isinstance(self.series, str) or not SERIES_FILTER.fullmatch(self.series):
            self.series = ""
        if self.received not in ("", "yes", "no"):
            self.received = ""
        if not isinstance(self.sort, str) or self.sort.lstrip("-") not in SORTS:
            self.sort = "-date"
        if not isinstance(self.page, int) or isinstance(self.page, bool):
            self.page = 1
        self.page = min(max(1, self.page), MAX_PAGE)


@dataclass
class Page:
    items: list[Invoice]
    total: int
    page: int
    pages: int
    per_page: int
    counts: dict[str, int] = field(default_factory=dict)
    start: date | None = None
    end: date | None = None

    @property
    def first_index(self) -> int:
        return 0 if not self.total else (self.page - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        return min(self.page * self.per_page, self.total)


def today() -> date:
    return datetime.now(ZoneInfo(current_app.config["PORTAL_TIMEZONE"])).date()


def period_range(filters: Filters, now: date) -> tuple[date | None, date | None]:
    """The first and last issue dates a period covers (None: open-ended)."""
    if filters.period == "this_month":
        start = now.replace(day=1)
        return start, _month_end(start)
    if filters.period == "last_month":
        start = (now.replace(day=1) - timedelta(days=1)).replace(day=1)
        return start, _month_end(start)
    if filters.period == "this_quarter":
        start = date(now.year, 3 * ((now.month - 1) // 3) + 1, 1)
        return start, _month_end(start.replace(month=start.month + 2))
    if filters.period == "this_year":
        return date(now.year, 1, 1), date(now.year, 12, 31)
    if filters.period == "custom":
        return filters.date_from, filters.date_to
    return None, None


def _month_end(first: date) -> date:
    next_month = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return next_month - timedelta(days=1)


def conditions_of(filters: Filters, start: date | None, end: date | None) -> list:
    """The SQL conditions of the filters (period, series, tax status, received, search)."""
    conditions = []
    if start:
        conditions.append(Invoice.issued_on >= start)
    if end:
        conditions.append(Invoice.issued_on <= end)
    if filters.series:
        # The box offers form + series ("1K26TAA"): the same series may serve two forms.
        form, series = SERIES_FILTER.fullmatch(filters.series).groups()
        conditions.append(Invoice.series == series)
        if form:
            conditions.append(Invoice.form == int(form))
    if filters.tax_status:
        conditions.append(Invoice.tax_status == filters.tax_status)
    if filters.received == "yes":
        conditions.append(Invoice.received_at.is_not(None))
    elif filters.received == "no":
        conditions.append(Invoice.received_at.is_(None))
    query = fold(filters.q).strip()
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = [Invoice.search_text.like(f"%{escaped}%", escape="\\")]
        if query.isdigit() and len(query) <= 9:
            matches.append(Invoice.number == int(query))
        conditions.append(or_(*matches))
    return conditions


def _order(sort: str):
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORTS:
        key, descending = "date", True
    if key == "total":
        column = Invoice.total_amount
        # SQLite keeps money as exact text; compare it as a number.
        if db.engine.dialect.name == "sqlite":
            column = cast(column, Float)
        columns = [column]
    elif key == "number":
        columns = [Invoice.series, Invoice.number]
    elif key == "buyer":
        columns = [Invoice.buyer_name]
    else:
        columns = [Invoice.issued_on]
    columns.append(Invoice.id)
    return [c.desc() if descending else c.asc() for c in columns]


def _count_query(filters: Filters, conditions: list):
    """Count the rows of each send status under the filters, in one pass."""
    if fold(filters.q).strip():
        # A search reads every row's search_text anyway: a plain table scan is cheaper than
        # walking the status index and fetching each row (50 ms vs 22 ms at 100,000 rows), and
        # grouping on an expression keeps the planner off that index.
        key = func.trim(Invoice.send_status)
        return select(key, func.count()).where(*conditions).group_by(key)
    # Naming every status turns the period into one range per status on the covering
    # (send_status, issued_on) index: "this year" at 100,000 rows took 16 ms before, 2 ms after.
    return (
        select(Invoice.send_status, func.count())
        .where(Invoice.send_status.in_(SEND_STATUSES), *conditions)
        .group_by(Invoice.send_status)
    )


def _tab_counts(filters: Filters, conditions: list) -> dict[str, int]:
    by_status = dict(db.session.execute(_count_query(filters, conditions)).all())
    return {
        tab: sum(by_status.values())
        if statuses is None
        else sum(by_status.get(s, 0) for s in statuses)
        for tab, statuses in TABS.items()
    }


def tab_counts(filters: Filters) -> dict[str, int]:
    """How many invoices each tab holds under the filters."""
    start, end = period_range(filters, today())
    return _tab_counts(filters, conditions_of(filters, start, end))


def list_invoices(filters: Filters) -> Page:
    """One page of the list, the tab counts under the same filters, and the period's dates."""
    start, end = period_range(filters, today())
    conditions = conditions_of(filters, start, end)
    counts = _tab_counts(filters, conditions)
    statuses = TABS.get(filters.tab)
    if statuses:
        conditions.append(Invoice.send_status.in_(statuses))
    total = counts.get(filters.tab, counts["all"])
    per_page = current_app.config["PAGE_SIZE"]
    pages = max(1, -(-total // per_page))
    page = min(max(1, filters.page), pages)
    items = db.session.scalars(
        select(Invoice)
        .where(*conditions)
        .order_by(*_order(filters.sort))
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page(items, total, page, pages, per_page, counts, start, end)


def series_choices() -> list[str]:
    """Every form + series in use, sorted by series ("1K26TAA")."""
    # A SELECT DISTINCT read all 100,000 rows on every page load (29 ms). Skipping along the
    # (seller_tax_code, form, series, number) unique index costs a few seeks per series instead.
    seller, form, series = Invoice.seller_tax_code, Invoice.form, Invoice.series
    found: set[tuple[int, str]] = set()
    row = db.session.execute(
        select(seller, form, series).order_by(seller, form, series).limit(1)
    ).first()
    while row is not None:
        found.add((row.form, row.series))
        # Row-value comparisons seek on the first column only (SQLite), so seek level by level.
        for after in (
            and_(seller == row.seller_tax_code, form == row.form, series > row.series),
            and_(seller == row.seller_tax_code, form > row.form),
            seller > row.seller_tax_code,
        ):
            following = db.session.execute(
                select(seller, form, series).where(after).order_by(seller, form, series).limit(1)
            ).first()
            if following is not None:
                break
        row = following
    return [f"{f}{s}" for f, s in sorted(found, key=lambda pair: (pair[1], pair[0]))]


def last_deliveries(invoice_ids: list[int]) -> dict[int, Delivery]:
    """The newest delivery of each invoice, in one query (for the reasons of failed rows)."""
    if not invoice_ids:
        return {}
    newest = (
        select(func.max(Delivery.id))
        .where(Delivery.invoice_id.in_(invoice_ids))
        .group_by(Delivery.invoice_id)
    )
    rows = db.session.scalars(select(Delivery).where(Delivery.id.in_(newest)))
    return {delivery.invoice_id: delivery for delivery in rows}
