"""Nhật ký: the audit log page and its CSV export, for admins."""

from datetime import date

from flask import Blueprint, Flask, Response, render_template, request, stream_with_context, url_for

from portal.audit import labels, service
from portal.audit.forms import FilterForm
from portal.auth.views import role_required
from portal.extensions import db
from portal.models import User

bp = Blueprint("audit", __name__, url_prefix="/audit")

# Absurd dates in the query string fall back to "any day" rather than overflowing.
EARLIEST, LATEST = date(2000, 1, 1), date(9998, 12, 31)


def _filters() -> tuple[FilterForm, service.Filters]:
    form = FilterForm(request.args)
    users = db.session.execute(db.select(User.id, User.username).order_by(User.username)).all()
    form.set_choices([(row.id, row.username) for row in users])
    form.validate()
    action = form.action.data if form.action.data in labels.ACTIONS else ""
    user = form.user.data or ""
    if user != "none" and not (user.isdigit() and len(user) < 10):
        user = ""
    period = form.period.data if form.period.data in service.PERIODS else "all"

    def day(field):
        value = field.data if not field.errors else None
        return value if value is not None and EARLIEST <= value <= LATEST else None

    page = form.page.data if not form.page.errors and form.page.data else 1
    filters = service.Filters(action=action, user=user, period=period,
                              date_from=day(form.date_from), date_to=day(form.date_to),
                              page=min(max(1, page), 1_000_000))  # fmt: skip
    return form, filters


def _query(filters: service.Filters, **changes) -> dict:
    values = {"action": filters.action, "user": filters.user, "period": filters.period,
              "date_from": filters.date_from and filters.date_from.isoformat(),
              "date_to": filters.date_to and filters.date_to.isoformat()}  # fmt: skip
    values.update(changes)
    return {key: value for key, value in values.items() if value}


@bp.get("/")
@role_required("admin")
def index():
    """Who did what, when and from where; filtered by action, user and period."""
    form, filters = _filters()
    page = service.entries(filters)
    return render_template(
        "audit/index.html", form=form, page=page, filters=filters,
        export_url=url_for("audit.export", **_query(filters)),
        page_url=lambda n: url_for("audit.index", **_query(filters, page=n)),
    )  # fmt: skip


@bp.get("/export.csv")
@role_required("admin")
def export():
    """The filtered log as a CSV file (cells that a spreadsheet would run are defused)."""
    _form, filters = _filters()
    return Response(
        stream_with_context(service.export_csv(filters)),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=nhat-ky.csv"},
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals["audit_action_label"] = labels.action_label
    app.jinja_env.globals["audit_target_text"] = labels.target_text
    app.jinja_env.globals["audit_describe"] = labels.describe
    app.jinja_env.globals["audit_via_label"] = labels.via_label
