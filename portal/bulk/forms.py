"""The bulk page's conditions form."""

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice as C
from wtforms.validators import Length

from portal.inputs import CheckedForm
from portal.invoices.forms import Conditions


class ConditionsForm(CheckedForm, Conditions):
    """Lấy dữ liệu by these conditions (the list's, plus the send status; posted, so CSRF)."""

    q = StringField(_l("Buyer or tax code"), validators=[Length(max=100)])
    tab = SelectField(
        _l("Send status"),
        choices=[
            C("not_sent", _l("Not sent to customer")),
            C("failed", _l("Send failed")),
            C("all", _l("All")),
        ],
        default="not_sent",
    )
