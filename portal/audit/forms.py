"""The log's filter form: a plain GET form (no CSRF: reading changes nothing)."""

from flask_babel import lazy_gettext as _l
from wtforms import DateField, Form, IntegerField, SelectField
from wtforms.fields.choices import SelectChoice as C
from wtforms.validators import Optional

from portal.audit.labels import ACTIONS


class FilterForm(Form):
    action = SelectField(_l("Action"), choices=[], validate_choice=False)
    user = SelectField(_l("User"), choices=[], validate_choice=False)
    period = SelectField(
        _l("Period"),
        choices=[
            C("all", _l("All time")),
            C("today", _l("Today")),
            C("last_7_days", _l("Last 7 days")),
            C("this_month", _l("This month")),
            C("last_month", _l("Last month")),
            C("custom", _l("From – to")),
        ],
        default="all",
    )
    date_from = DateField(_l("From"), validators=[Optional()], format=["%Y-%m-%d", "%d/%m/%Y"])
    date_to = DateField(_l("To"), validators=[Optional()], format=["%Y-%m-%d", "%d/%m/%Y"])
    page = IntegerField(default=1, validators=[Optional()])

    def set_choices(self, users: list[tuple[int, str]]) -> None:
        self.action.choices = [C("", _l("All"))] + [
            C(code, label) for code, label in ACTIONS.items()
        ]
        self.user.choices = (
            [C("", _l("All"))]
            + [C(str(user_id), username) for user_id, username in users]
            + [C("none", _l("No user (system, command line)"))]
        )
