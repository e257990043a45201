"""Record an action in the current unit of work; read the log back, filtered; export it as CSV."""

import csv
import getpass
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import click
from flask import current_app, has_request_context, request
from sqlalchemy import func, inspect, select

from portal.audit import labels
from portal.audit.models import AuditEntry
from portal.database import in_unit_of_work, write
from portal.extensions import db

# `record(user=...)` not given: the logged-in user of the request, if any.
FROM_REQUEST = object()

# Columns whose change is bookkeeping, not a setting someone changed.
IGNORED = {"id", "created_at", "updated_at", "last_test_at", "last_test_ok",
           "last_test_message", "poll_cursor", "throttled_until", "throttle_note"}  # fmt: skip
# Column names that hold secrets: the log says that they changed, never what to.
SECRET_MARKERS = ("password", "secret", "token_hash")
MAX_VALUE = 200


def record(action: str, target=None, details: dict | None = None, *, user=FROM_REQUEST):
    """Add an audit row for `action` to the open unit of work (or to a short one of its own).

    `target` is a model instance (its table, id and label are kept) or a tuple
    (type, id, label); `details` a dict of plain data. Who and from where come from the
    request (its logged-in user, address and user agent), else from the flask command.
    """
    if action not in labels.ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to portal/audit/labels.py")
    if not in_unit_of_work():
        # Nothing else changes (a failed login): the row is its own unit of work. Inside
        # one, write() would refuse to commit work a caller left pending, as it should.
        with write():
            return record(action, target, details, user=user)
    entry = AuditEntry(
        action=action, details=_plain(details or {}), **_who(user), **_where(), **_target(target)
    )
    db.session.add(entry)
    return entry


def _who(user) -> dict:
    if user is FROM_REQUEST:
        user = None
        if has_request_context():
            from flask_login import current_user

            if current_user.is_authenticated:
                user = current_user._get_current_object()
    if user is None:
        return {"user_id": None, "username": ""}
    return {"user_id": user.id, "username": user.username}


def _where() -> dict:
    if has_request_context():
        return {"via": "web", "ip": (request.remote_addr or "")[:45],
                "user_agent": request.user_agent.string[:400]}  # fmt: skip
    command = click.get_current_context(silent=True)
    if command is not None:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a container's numeric user)
            who = "?"
        return {"via": "cli", "ip": "", "user_agent": f"{command.command_path} ({who})"[:400]}
    return {"via": "system", "ip": "", "user_agent": ""}


def _target(target) -> dict:
    if target is None:
        return {}
    if isinstance(target, tuple):
        kind, target_id, label = target
        return {"target_type": kind, "target_id": target_id, "target_label": str(label)[:200]}
    if target.id is None:
        db.session.flush()  # a row made in this unit of work: it needs its id
    return {"target_type": target.__tablename__, "target_id": target.id,
            "target_label": _label(target)[:200]}  # fmt: skip


def _label(target) -> str:
    from portal.models import ApiToken, Invoice, User

    if isinstance(target, Invoice):
        return f"{target.series_label} {target.number_label}"
    if isinstance(target, User):
        return target.username
    if isinstance(target, ApiToken):
        return target.name
    # Other models may say how they read in the log.
    return str(getattr(target, "audit_label", "") or "")


def _plain(details: dict) -> dict:
    """Details as JSON data (dates, Decimals and sets as text and lists)."""

    def default(value):
        if isinstance(value, set | frozenset | tuple):
            return sorted(value, key=str)
        return str(value)

    return json.loads(json.dumps(details, default=default))


def changes(obj, *, ignore: tuple[str, ...] = ()) -> dict[str, list | None]:
    """The columns changed on `obj` in this unit of work: name → [old, new] (None for secrets).

    Call it after setting the values and before the unit of work ends.
    """
    state = inspect(obj)
    found: dict[str, list | None] = {}
    for attribute in state.mapper.column_attrs:
        name = attribute.key
        if name in IGNORED or name in ignore:
            continue
        history = state.attrs[name].history
        if not history.added and not history.deleted:
            continue
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old == new or (state.pending and new in (None, "")):
            continue
        if any(marker in name for marker in SECRET_MARKERS):
            found[name] = None
        else:
            found[name] = [_short(old), _short(new)]
    return found


def _short(value):
    if value is None or isinstance(value, bool | int):
        return value
    text = str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


# --- reading it ----------------------------------------------------------------------------

PERIODS = ("all", "today", "last_7_days", "this_month", "last_month", "custom")


@dataclass
class Filters:
    action: str = ""
    user: str = ""  # "" every one, "none" no user (the system, a flask command), else an id
    period: str = "all"
    date_from: date | None = None
    date_to: date | None = None
    page: int = 1


@dataclass
class Page:
    items: list[AuditEntry]
    total: int
    page: int
    pages: int


def _today() -> date:
    return datetime.now(ZoneInfo(current_app.config["PORTAL_TIMEZONE"])).date()


def period_days(filters: Filters, today: date) -> tuple[date | None, date | None]:
    """The first and last day (in the seller's zone) the period covers; None: open-ended."""
    if filters.period == "today":
        return today, today
    if filters.period == "last_7_days":
        return today - timedelta(days=6), today
    if filters.period == "this_month":
        return today.replace(day=1), today
    if filters.period == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    if filters.period == "custom":
        return filters.date_from, filters.date_to
    return None, None


def _conditions(filters: Filters) -> list:
    conditions = []
    if filters.action:
        conditions.append(AuditEntry.action == filters.action)
    if filters.user == "none":
        conditions.append(AuditEntry.user_id.is_(None))
    elif filters.user.isdigit():
        conditions.append(AuditEntry.user_id == int(filters.user))
    first, last = period_days(filters, _today())
    zone = ZoneInfo(current_app.config["PORTAL_TIMEZONE"])
    if first:
        conditions.append(AuditEntry.at >= datetime.combine(first, time(0), zone))
    if last:
        conditions.append(AuditEntry.at < datetime.combine(last + timedelta(days=1), time(0), zone))
    return conditions


def entries(filters: Filters, per_page: int = 50) -> Page:
    """One page of the log, newest first."""
    conditions = _conditions(filters)
    total = db.session.scalar(select(func.count(AuditEntry.id)).where(*conditions)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, filters.page), pages)
    items = db.session.scalars(
        select(AuditEntry).where(*conditions)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    ).all()  # fmt: skip
    return Page(list(items), total, page, pages)


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...),
# +cmd|..., @SUM, a tab or a carriage return before any of them).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """A CSV cell no spreadsheet reads as a formula: such text gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_csv(filters: Filters) -> Iterator[str]:
    """The filtered log as CSV lines, newest first, in the reader's language (UTF-8 with BOM)."""
    from portal.i18n import to_local

    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([safe_cell(cell) for cell in cells])
        return buffer.getvalue()

    yield "\ufeff" + line(labels.csv_header())
    query = (
        select(AuditEntry).where(*_conditions(filters))
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .execution_options(yield_per=500)
    )  # fmt: skip
    for entry in db.session.scalars(query):
        yield line([
            to_local(entry.at).isoformat(timespec="seconds"), entry.username,
            labels.via_label(entry.via), entry.action, labels.action_label(entry.action),
            labels.target_text(entry), labels.describe(entry), entry.ip, entry.user_agent,
        ])  # fmt: skip
