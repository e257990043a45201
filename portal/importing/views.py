"""Upload signed invoice XML files (one, many, or a .zip)."""

from flask import Blueprint, current_app, url_for

from portal.auth.views import role_required
from portal.extensions import db
from portal.importing.forms import ImportForm
from portal.importing.service import import_files
from portal.models import Seller
from portal.web import render

bp = Blueprint("importing", __name__, url_prefix="/import")

# The invoice page belongs to the invoices capability; link to it once it exists.
DETAIL_ENDPOINTS = ("invoices.detail", "invoices.show", "invoices.view")


def invoice_url(invoice_id: int, number: str) -> str:
    """Return the link to an imported invoice: its page, else the list searched for it."""
    for endpoint in DETAIL_ENDPOINTS:
        if endpoint in current_app.view_functions:
            return url_for(endpoint, invoice_id=invoice_id)
    return url_for("invoices.index", q=number)


@bp.route("/", methods=["GET", "POST"])
@role_required("sender")
def index():
    """Show the import form and import the uploaded files."""
    seller = db.session.scalar(db.select(Seller).order_by(Seller.id).limit(1))
    form = ImportForm()
    report = None
    if seller is not None and form.validate_on_submit():
        files = [(f.filename or "upload.xml", f.read()) for f in form.files.data if f]
        report = import_files(files, seller)
    return render(
        "importing/index.html",
        "importing/_results.html",
        form=form,
        seller=seller,
        report=report,
        invoice_url=invoice_url,
    )
