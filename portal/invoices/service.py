"""Query the issued-invoice list: tabs, period, search, filters, sorting and pages."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, column, func, literal, or_, select, table, union_all

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

# SQLite's trigram index of invoice.search_text: the FTS5 table the migration made, which
# triggers on invoice keep in step. It finds a substring of three characters or more; a
# shorter search reads the column itself. PostgreSQL has a pg_trgm GIN index on the column,
# which serves LIKE '%...%' as it is (docs/decisions.md, "Invoice list").
SEARCH_INDEX = table("invoice_search", column("rowid"), column("invoice_search"))
TRIGRAM = 3


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
    # The tabs whose count is a lower bound, shown "10000+" (docs/decisions.md, "Invoice
    # list"); a tab missing from counts is not counted. When the shown tab is not counted
    # exactly, the page is capped: pages is one more than page while a next page exists.
    over: frozenset[str] = frozenset()
    capped: bool = False

    @property
    def first_index(self) -> int:
        if self.capped:
            return (self.page - 1) * self.per_page + 1 if self.items else 0
        return 0 if not self.total else (self.page - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        if self.capped:
            return (self.page - 1) * self.per_page + len(self.items)
        return min(self.page * self.per_page, self.total)

    @property
    def total_label(self) -> str:
        # Past the limit, the rows read so far may already say more than the count did.
        return f"{max(self.total, self.last_index)}+" if self.capped else str(self.total)

    def count_label(self, tab: str) -> str:
        """A tab's count as shown: "12", "10000+" past the limit, "" when not counted."""
        if tab not in self.counts:
            return ""
        return f"{self.counts[tab]}+" if tab in self.over else str(self.counts[tab])


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
    conditions = _filter_conditions(filters, start, end)
    query = search_query(filters)
    if query:
        conditions.append(search_condition(query))
    return conditions


def _filter_conditions(filters: Filters, start: date | None, end: date | None) -> list:
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
    return conditions


def search_query(filters: Filters) -> str:
    """The search as the search column holds text: accent-free, lower-case, trimmed."""
    return fold(filters.q).strip()


def search_condition(query: str):
    """Invoices whose search text holds the query, or (digits) whose number it is."""
    if _uses_search_index(query):
        match = Invoice.id.in_(
            select(SEARCH_INDEX.c.rowid).where(SEARCH_INDEX.c.invoice_search.match(_phrase(query)))
        )
    else:
        match = _contains(query)
    number = _number_is(query)
    return match if number is None else or_(match, number)


def _contains(query: str):
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Invoice.search_text.like(f"%{escaped}%", escape="\\")


def _number_is(query: str):
    """A number typed in finds that invoice number exactly, through its index."""
    return Invoice.number == int(query) if query.isdigit() and len(query) <= 9 else None


def _uses_search_index(query: str) -> bool:
    return db.engine.dialect.name == "sqlite" and len(query) >= TRIGRAM


def _phrase(query: str) -> str:
    """The query as one FTS5 string: the trigram tokenizer matches it as a substring."""
    return '"' + query.replace('"', '""') + '"'


def _matching_ids(query: str, limit: int) -> set[int]:
    """Up to `limit` invoices the search finds, whatever the other filters, and the number."""
    if _uses_search_index(query):
        found = (
            select(SEARCH_INDEX.c.rowid)
            .where(SEARCH_INDEX.c.invoice_search.match(_phrase(query)))
            .limit(limit)
        )
    else:
        found = select(Invoice.id).where(_contains(query)).limit(limit)
    ids = set(db.session.scalars(found))
    number = _number_is(query)
    if number is not None:
        ids.update(db.session.scalars(select(Invoice.id).where(number)))
    return ids


@dataclass
class _Where:
    """The list's conditions, and what the counts need to know of them."""

    conditions: list
    broad: bool = False  # a search matching more than LIST_SEARCH_COUNT_LIMIT invoices
    searched: bool = False
    filtered: bool = False  # conditions besides the search
    within_a_month: bool = False  # the period spans a month or less


def _list_conditions(filters: Filters, start: date | None, end: date | None) -> _Where:
    """The list's conditions: a narrow search becomes the ids it found, a broad one does not.

    A narrow search's counts and page read only its rows, by id. A broad one stays a condition
    on the search column: the page reads rows in its order and keeps those that match, which
    are many, so it fills soon, whereas finding all of them first costs a read of each.
    """
    conditions = _filter_conditions(filters, start, end)
    where = _Where(conditions, filtered=bool(conditions))
    where.within_a_month = bool(start and end and (end - start).days <= 31)
    query = search_query(filters)
    if not query:
        return where
    where.searched = True
    limit = current_app.config["LIST_SEARCH_COUNT_LIMIT"]
    ids = _matching_ids(query, limit + 1)
    if len(ids) <= limit:
        conditions.append(Invoice.id.in_(sorted(ids)))
        return where
    number = _number_is(query)
    conditions.append(_contains(query) if number is None else or_(_contains(query), number))
    where.broad = True
    return where


def _order(sort: str):
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORTS:
        key, descending = "date", True
    if key == "total":
        # SQLite keeps money as exact text: its indexed total_sort holds the number.
        columns = [
            Invoice.total_sort if db.engine.dialect.name == "sqlite" else Invoice.total_amount
        ]
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
    if search_query(filters):
        # A narrow search reads its rows by id: grouping on an expression keeps the planner
        # off the status index, which would walk every row of the period instead.
        key = func.trim(Invoice.send_status)
        return select(key, func.count()).where(*conditions).group_by(key)
    # Naming every status turns the period into one range per status on the covering
    # (send_status, issued_on) index: "this year" at 100,000 rows took 16 ms before, 2 ms after.
    return (
        select(Invoice.send_status, func.count())
        .where(Invoice.send_status.in_(SEND_STATUSES), *conditions)
        .group_by(Invoice.send_status)
    )


def _by_tab(by_status: dict[str, int]) -> dict[str, int]:
    return {
        tab: sum(by_status.values())
        if statuses is None
        else sum(by_status.get(s, 0) for s in statuses)
        for tab, statuses in TABS.items()
    }


def _bounded_counts(conditions: list, limit: int) -> tuple[dict[str, int], frozenset[str]]:
    """Each tab's count, read no further than limit + 1 rows per tab, in one query."""
    parts = [
        select(literal(tab).label("tab"), func.count().label("n")).select_from(
            select(literal(1).label("one"))
            .where(Invoice.send_status.in_(statuses), *conditions)
            .limit(limit + 1)
            .subquery()
        )
        for tab, statuses in TABS.items()
        if statuses
    ]
    found = dict(db.session.execute(union_all(*parts)).all())
    counts = {tab: min(n, limit) for tab, n in found.items()}
    over = {tab for tab, n in found.items() if n > limit}
    counts["all"] = sum(counts.values())
    if over:
        over.add("all")
    return counts, frozenset(over)


def _tab_counts(filters: Filters, where: _Where) -> tuple[dict[str, int], frozenset[str]]:
    """The count of each tab, and the tabs whose count is only a lower bound."""
    config = current_app.config
    if where.broad:
        # Counting every match of a broad search costs a read of each: count up to the limit
        # (the search's own ids told already that there are more, unless other filters apply).
        limit = config["LIST_SEARCH_COUNT_LIMIT"]
        if where.filtered:
            statuses = list(
                db.session.scalars(
                    select(Invoice.send_status).where(*where.conditions).limit(limit + 1)
                )
            )
            if len(statuses) <= limit:
                return _by_tab(Counter(statuses)), frozenset()
        return {"all": limit}, frozenset({"all"})
    limit = config["LIST_COUNT_LIMIT"]
    if where.searched or where.within_a_month or not limit:
        # A narrow search holds at most LIST_SEARCH_COUNT_LIMIT rows, and a month is what an
        # accountant counts (and cheaper to count whole than tab by tab): count them all.
        rows = db.session.execute(_count_query(filters, where.conditions)).all()
        return _by_tab(dict(rows)), frozenset()
    return _bounded_counts(where.conditions, limit)


def tab_counts(filters: Filters) -> tuple[dict[str, int], frozenset[str]]:
    """How many invoices each tab holds under the filters, and which counts are lower bounds."""
    start, end = period_range(filters, today())
    return _tab_counts(filters, _list_conditions(filters, start, end))


def list_invoices(filters: Filters) -> Page:
    """One page of the list, the tab counts under the same filters, and the period's dates."""
    start, end = period_range(filters, today())
    where = _list_conditions(filters, start, end)
    counts, over = _tab_counts(filters, where)
    conditions = list(where.conditions)
    statuses = TABS.get(filters.tab)
    if statuses:
        conditions.append(Invoice.send_status.in_(statuses))
    per_page = current_app.config["PAGE_SIZE"]
    query = select(Invoice).where(*conditions).order_by(*_order(filters.sort))
    if filters.tab in over or filters.tab not in counts:
        # Not counted exactly: read one row more than a page to know whether there is a next.
        page = max(1, filters.page)
        rows = db.session.scalars(query.limit(per_page + 1).offset((page - 1) * per_page)).all()
        pages = page + 1 if len(rows) > per_page else page
        total = counts.get(filters.tab, counts["all"])
        return Page(rows[:per_page], total, page, pages, per_page, counts, start, end, over,
                    capped=True)  # fmt: skip
    total = counts[filters.tab]
    pages = max(1, -(-total // per_page))
    page = min(max(1, filters.page), pages)
    items = db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(items, total, page, pages, per_page, counts, start, end, over)


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
