"""Issue invoices from other software (an ERP, a POS) over JSON."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
