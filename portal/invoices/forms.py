"""The list's filter form: a plain GET form that htmx also submits."""

from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, IntegerField, SearchField, SelectField
from wtforms.fields.choices import SelectChoice as C
from wtforms.validators import Optional, ValidationError

from portal.forms import DayField, PlainForm


class Conditions(PlainForm):
    """The conditions the list and the bulk page both select invoices by."""

    period = SelectField(
        _l("Period"),
        choices=[
            C("this_month", _l("This month")),
            C("last_month", _l("Last month")),
            C("this_quarter", _l("This quarter")),
            C("this_year", _l("This year")),
            C("custom", _l("From – to")),
            C("all", _l("All time")),
        ],
        default="this_month",
    )
    date_from = DayField(_l("From"), validators=[Optional()])
    date_to = DayField(_l("To"), validators=[Optional()])
    series = SelectField(_l("Series"), choices=[], validate_choice=False)
    tax_status = SelectField(_l("Tax status"), choices=[], validate_choice=False)
    received = SelectField(
        _l("Buyer received"),
        choices=[C("", _l("All")), C("yes", _l("Received")), C("no", _l("Not received"))],
        default="",
    )

    def validate_date_to(self, field):
        if self.date_from.data and field.data and field.data < self.date_from.data:
            raise ValidationError(_l("The end date is before the start date."))

    def set_choices(self, series: list[str], tax_labels: dict[str, str]) -> None:
        self.series.choices = [C("", _l("All series"))] + [C(s) for s in series]
        self.tax_status.choices = [C("", _l("All"))] + [C(k, v) for k, v in tax_labels.items()]


class FilterForm(Conditions):
    """Filters read from the query string (no CSRF: a GET changes nothing)."""

    tab = HiddenField(default="all")
    q = SearchField(_l("Search"))
    sort = HiddenField(default="-date")
    page = IntegerField(default=1, validators=[Optional()])
