"""Render the invoice email from the seller's template, sandboxed and escaped."""

from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from portal.sending.addresses import clean_display_name

VARIABLES = {
    "seller_name": "Tên người bán",
    "seller_tax_code": "Mã số thuế người bán",
    "buyer_name": "Tên người mua",
    "recipient_name": "Tên người nhận",
    "form_series": "Ký hiệu (1K26TAA)",
    "number": "Số hóa đơn",
    "issue_date": "Ngày hóa đơn",
    "total": "Tổng tiền thanh toán",
    "currency": "Loại tiền",
    "amount_in_words": "Số tiền viết bằng chữ",
    "lookup_code": "Mã tra cứu",
    "lookup_url": "Địa chỉ trang tra cứu hóa đơn",
    "buyer_link": "Đường dẫn xem hóa đơn",
}

DEFAULT_SUBJECT = "{{ seller_name }} gửi hóa đơn điện tử số {{ number }} ký hiệu {{ form_series }}"
DEFAULT_TEXT = """Kính gửi {{ recipient_name }},

{{ seller_name }} (MST {{ seller_tax_code }}) gửi Quý khách hóa đơn điện tử:
- Ký hiệu: {{ form_series }}, số: {{ number }}, ngày {{ issue_date }}
- Tổng tiền thanh toán: {{ total }} {{ currency }}
- Bằng chữ: {{ amount_in_words }}

Tra cứu hóa đơn tại: {{ lookup_url }} - Mã tra cứu: {{ lookup_code }}

Xem và tải hóa đơn tại: {{ buyer_link }}
Hóa đơn (PDF và XML) được đính kèm thư này. Nếu không thấy thư, vui lòng kiểm tra thư mục Spam.

Trân trọng,
{{ seller_name }}
"""
DEFAULT_HTML = """<p>Kính gửi {{ recipient_name }},</p>
<p>{{ seller_name }} (MST {{ seller_tax_code }}) gửi Quý khách hóa đơn điện tử:</p>
<ul>
<li>Ký hiệu: <b>{{ form_series }}</b>, số: <b>{{ number }}</b>, ngày {{ issue_date }}</li>
<li>Tổng tiền thanh toán: <b>{{ total }} {{ currency }}</b></li>
<li>Bằng chữ: {{ amount_in_words }}</li>
</ul>
<p>Tra cứu hóa đơn tại: <a href="{{ lookup_url }}">{{ lookup_url }}</a> - Mã tra cứu: <b>{{ lookup_code }}</b></p>
<p><a href="{{ buyer_link }}">Xem và tải hóa đơn</a></p>
<p>Hóa đơn (PDF và XML) được đính kèm thư này.</p>
<p>Trân trọng,<br>{{ seller_name }}</p>
"""

_text_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class TemplateError(ValueError):
    """A template the seller wrote that cannot be used: unknown variables or a syntax error."""

    def __init__(self, unknown: list[str] | None = None, line: int | None = None, detail: str = ""):
        super().__init__(f"unknown={unknown} line={line} {detail}")
        self.unknown = unknown or []
        self.line = line
        self.detail = detail


@dataclass
class RenderedEmail:
    subject: str
    text: str
    html: str


def check_template(source: str, html: bool = False) -> None:
    """Refuse a template with a syntax error or a variable we do not provide."""
    env = _html_env if html else _text_env
    try:
        parsed = env.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(line=error.lineno, detail=error.message or "") from error
    unknown = meta.find_undeclared_variables(parsed) - VARIABLES.keys()
    if unknown:
        raise TemplateError(unknown=sorted(unknown))


def render_email(subject: str, text: str, html: str, variables: dict[str, str]) -> RenderedEmail:
    """Render subject and bodies; invoice data is escaped in HTML and cannot add headers."""
    values = {key: str(variables.get(key, "")) for key in VARIABLES}
    rendered_subject = _text_env.from_string(subject).render(values)
    return RenderedEmail(
        subject=clean_display_name(rendered_subject)[:300],
        text=_text_env.from_string(text).render(values),
        html=_html_env.from_string(html).render(values),
    )
