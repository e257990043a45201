"""The upload form of the import page."""

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileRequired, MultipleFileField

from portal.inputs import CheckedForm


class ImportForm(CheckedForm):
    files = MultipleFileField(
        _l("Signed XML files or ZIP archives"),
        validators=[FileRequired(_l("Choose at least one file."))],
        render_kw={
            "accept": ".xml,.zip,application/xml,text/xml,application/zip",
            "multiple": True,
        },
    )
