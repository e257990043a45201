"""Upload signed invoice XML files (one, many, or a .zip); approve files signed by strangers."""

from flask import Blueprint, abort, flash, redirect, send_from_directory, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.auth.views import role_required
from portal.demo.history import sample_files, samples_folder
from portal.extensions import db
from portal.importing.forms import ImportForm
from portal.importing.service import (
    ImportRefused,
    approve_import,
    import_files,
    pending_count,
    pending_imports,
    reject_import,
    warning_words,
)
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
        report = import_files(files, seller, current_user.id)
    return render(
        "importing/index.html",
        "importing/_results.html",
        form=form,
        seller=seller,
        report=report,
        waiting=pending_count(),
        samples=sample_files(),
    )


@bp.get("/pending")
@role_required("sender")
def pending():
    """List the files waiting for approval, with the certificate each was signed with."""
    return render("importing/pending.html", "importing/_pending.html", rows=pending_imports())


@bp.post("/pending/<int:pending_id>/approve")
@role_required("admin")
def approve(pending_id: int):
    """Register the file's certificate and store the invoice as issued."""
    try:
        invoice = approve_import(pending_id, current_user.id)
    except LookupError:
        abort(404)
    except ImportRefused as exc:
        for reason in exc.reasons:
            flash(reason, "error")
        return redirect(url_for("importing.pending"))
    flash(
        _(
            "Approved: the certificate is registered and invoice %(series)s No. %(number)s is "
            "stored as issued.",
            series=invoice.series_label,
            number=invoice.number_label,
        )
    )
    return redirect(url_for("importing.pending"))


@bp.post("/pending/<int:pending_id>/reject")
@role_required("admin")
def reject(pending_id: int):
    """Discard the file; its certificate stays unregistered."""
    try:
        reject_import(pending_id)
    except LookupError:
        abort(404)
    flash(_("Rejected: the file was discarded."))
    return redirect(url_for("importing.pending"))


@bp.app_template_global()
def invoice_warning(warning: str) -> str:
    """A totals warning (fresh or stored) in the reader's language."""
    return warning_words(warning)


@bp.get("/samples/<name>")
@role_required("sender")
def sample(name: str):
    """Download a sample file signed for the demo seller (made by `flask demo seed`)."""
    if name not in sample_files():
        abort(404)
    return send_from_directory(samples_folder(), name, as_attachment=True)
