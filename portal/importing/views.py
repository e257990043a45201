"""Upload signed invoice XML files (one, many, or a .zip)."""

from flask import Blueprint

from portal.auth.views import role_required
from portal.extensions import db
from portal.importing.forms import ImportForm
from portal.importing.service import import_files
from portal.models import Seller
from portal.web import render

bp = Blueprint("importing", __name__, url_prefix="/import")


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
    )
