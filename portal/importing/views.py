"""Upload signed invoice XML files (one, many, or a .zip)."""

from flask import Blueprint, render_template

from portal.auth.views import role_required

bp = Blueprint("importing", __name__, url_prefix="/import")


@bp.get("/")
@role_required("sender")
def index():
    """Show the import form."""
    return render_template("importing/index.html")
