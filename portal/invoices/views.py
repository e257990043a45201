"""The seller's home: the list of issued invoices."""

from flask import Blueprint, render_template

from portal.auth.views import role_required

bp = Blueprint("invoices", __name__)


@bp.get("/")
@role_required("viewer")
def index():
    """List issued invoices."""
    return render_template("invoices/index.html")
