"""Render the invoice email from the seller's template, sandboxed, escaped and bounded.

Bounded (docs/decisions.md, "Settings"): each render may produce so many characters per
part, run its loops so many times in all, and take so long; a template that goes over is
stopped with TemplateLimitError, and refused when it is saved. Macros, call blocks and
recursive loops, which could run without a loop to count, are refused outright.
"""

import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from flask_babel import lazy_gettext as _l
from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

from portal.sending.addresses import clean_display_name

# Each variable with its description in the reader's language (translations/parts/sending.po).
VARIABLES = {
    "seller_name": _l("Seller's name"),
    "seller_tax_code": _l("Seller's tax code"),
    "buyer_name": _l("Buyer's name"),
    "recipient_name": _l("Recipient's name"),
    "form_series": _l("Form and series (1K26TAA)"),
    "number": _l("Invoice number"),
    "issue_date": _l("Invoice date"),
    "total": _l("Total payment"),
    "currency": _l("Currency"),
    "amount_in_words": _l("Amount in words"),
    "lookup_code": _l("Lookup code"),
    "lookup_url": _l("Address of the invoice lookup page"),
    "buyer_link": _l("Link to view the invoice"),
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


@dataclass(frozen=True)
class Limits:
    """How much one render of the email may do (Config: TEMPLATE_MAX_*)."""

    output: int = 100_000  # characters per part (subject, text, HTML)
    iterations: int = 10_000  # loop iterations in all, nested ones included
    seconds: float = 1.0

    @classmethod
    def from_config(cls, config) -> "Limits":
        return cls(
            output=config["TEMPLATE_MAX_OUTPUT"],
            iterations=config["TEMPLATE_MAX_ITERATIONS"],
            seconds=config["TEMPLATE_MAX_SECONDS"],
        )


class TemplateLimitError(Exception):
    """A render went over one of its limits: `kind` is output, iterations, time or number."""

    def __init__(self, kind: str, limit: float):
        super().__init__(f"template over its {kind} limit ({limit})")
        self.kind, self.limit = kind, limit


class _Budget:
    """What one render has used so far."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.iterations = 0
        self.output = 0
        self.deadline = time.monotonic() + limits.seconds

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError("time", self.limits.seconds)

    def check_size(self, size: int) -> None:
        if size > self.limits.output:
            raise TemplateLimitError("output", self.limits.output)


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:  # rendered outside render_email: the defaults still hold
        budget = _Budget(Limits())
        _budget.set(budget)
    return budget


def _counted(iterable: Iterable) -> Iterator:
    """Every loop of a seller's template runs through here (see _BoundedEnvironment._parse)."""
    budget = _current()
    for item in iterable:
        budget.iterations += 1
        if budget.iterations > budget.limits.iterations:
            raise TemplateLimitError("iterations", budget.limits.iterations)
        budget.check_time()
        yield item


def _sized(value):
    """Refuse a value built in the template (a concatenation, a filter's result) over the limit."""
    if isinstance(value, str | list | tuple):
        budget = _current()
        budget.check_size(len(value))
        budget.check_time()
    return value


# A width or precision of a million or more written into a format string ("%9999999s",
# "{:>9999999}"): it would build a huge string in one operation.
_FORMAT_WIDTH = re.compile(r"[%:][^%{}a-zA-Z]*?\d{7,}")
# Filters and string methods whose number arguments say how long their result is.
_WIDTH_FILTERS = {"center", "indent", "wordwrap", "truncate"}
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}
_FORMAT_METHODS = {"format", "format_map"}
# Integers in the template stay below this many bits (10 ** 100 ** 100 would take hours).
_MAX_BITS = 100_000


def _check_widths(args: Iterable) -> None:
    limit = _current().limits.output
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > limit:
            raise TemplateLimitError("number", limit)


def _check_growth(name: str, value, args: tuple) -> None:
    """Refuse a replace, indent or expandtabs whose result would be over the limit."""
    if not isinstance(value, str) or not args:
        return
    budget = _current()
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        times = len(value) + 1 if args[0] == "" else value.count(args[0])
        budget.check_size(len(value) + times * len(str(args[1])))
    elif name == "indent":
        width = args[0] if isinstance(args[0], int) else len(str(args[0]))
        budget.check_size(len(value) + (value.count("\n") + 1) * width)
    elif name == "expandtabs" and isinstance(args[0], int):
        budget.check_size(len(value) + value.count("\t") * args[0])


def _check_format(pattern) -> None:
    if isinstance(pattern, str) and _FORMAT_WIDTH.search(pattern):
        raise TemplateLimitError("number", _current().limits.output)


def _bounded_filter(name: str, function: Callable) -> Callable:
    """The filter, its arguments checked before and its result after."""
    passes = getattr(function, "jinja_pass_arg", None)

    def bounded(*args, **kwargs):
        # args: [environment or context,] the value, then the filter's own arguments.
        value_at = 0 if passes is None else 1
        if name in _WIDTH_FILTERS:
            _check_widths([*args[value_at + 1 :], *kwargs.values()])
        if name in ("replace", "indent") and len(args) > value_at:
            _check_growth(name, args[value_at], args[value_at + 1 :])
        elif name == "format" and args:
            _check_format(args[value_at])
        elif name == "join" and len(args) > value_at:
            args = (*args[:value_at], _joinable(args[value_at]), *args[value_at + 1 :])
        return _sized(function(*args, **kwargs))

    if passes is not None:
        bounded.jinja_pass_arg = passes
    return bounded


def _joinable(value):
    """A join's parts, checked before they are joined."""
    if isinstance(value, str):
        return value
    parts = list(_counted(value))
    _current().check_size(sum(len(str(part)) for part in parts))
    return parts


def _check_integers(operator: str, left, right) -> None:
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if operator == "**":
        bits = abs(left).bit_length() * abs(right)
    elif operator == "*":
        bits = abs(left).bit_length() + abs(right).bit_length()
    else:
        return
    if bits > _MAX_BITS:
        raise TemplateLimitError("number", _MAX_BITS)


class _Generator(CodeGenerator):
    """Jinja's code generator, with every `~` concatenation's result checked for size."""

    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(")")


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with loops counted, sizes checked and the globals cut to range()."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options):
        super().__init__(undefined=StrictUndefined, **options)
        # lipsum(), namespace(), cycler() and joiner() are not needed in an email; namespace
        # would let a value grow from one loop iteration to the next.
        self.globals = {"range": self.globals["range"]}
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters["_counted"] = _counted
        self.sized = _sized

    def _parse(self, source, name, filename):
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_counted", [], [], None, None, lineno=loop.lineno)
        return tree

    def call_binop(self, context, operator, left, right):
        _check_integers(operator, left, right)
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                    _current().check_size(len(sequence) * times)
        elif operator == "%":
            _check_format(left)
        return _sized(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value):
        # str.format and format_map come here when looked up, not through call().
        if getattr(value, "__name__", "") in _FORMAT_METHODS:
            _check_format(getattr(value, "__self__", None))
        return super().wrap_str_format(value)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805  (Jinja's signature)
        if isinstance(getattr(__obj, "__self__", None), str):  # a string's method
            name = __obj.__name__
            if name in _WIDTH_METHODS:
                _check_widths([*args, *kwargs.values()])
            if name in ("replace", "expandtabs"):
                _check_growth(name, __obj.__self__, args)
            elif name == "join" and args:
                args = (_joinable(args[0]), *args[1:])
        return _sized(super().call(__context, __obj, *args, **kwargs))


_text_env = _BoundedEnvironment(autoescape=False)
_html_env = _BoundedEnvironment(autoescape=True)


class TemplateError(ValueError):
    """A template the seller wrote that cannot be used: unknown variables or a syntax error."""

    def __init__(
        self,
        unknown: list[str] | None = None,
        line: int | None = None,
        detail: str = "",
        refused: str = "",
    ):
        super().__init__(f"unknown={unknown} line={line} {detail} {refused}")
        self.unknown = unknown or []
        self.line = line
        self.detail = detail
        # A construct we refuse (macro, call, recursive): the tag's name.
        self.refused = refused


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
    for kind, tag in ((nodes.Macro, "macro"), (nodes.CallBlock, "call")):
        if (found := parsed.find(kind)) is not None:
            raise TemplateError(line=found.lineno, refused=tag)
    for loop in parsed.find_all(nodes.For):
        if loop.recursive:
            raise TemplateError(line=loop.lineno, refused="recursive")
    unknown = meta.find_undeclared_variables(parsed) - VARIABLES.keys()
    if unknown:
        raise TemplateError(unknown=sorted(unknown))


@lru_cache(maxsize=32)
def _compiled(env: _BoundedEnvironment, source: str):
    """The compiled template: a bulk send renders the same one for every invoice."""
    return env.from_string(source)


def _render(env: _BoundedEnvironment, source: str, values: dict, limits: Limits) -> str:
    """Render one part within the limits, counting its output as it streams."""
    token = _budget.set(_Budget(limits))
    try:
        budget = _current()
        parts, size = [], 0
        for chunk in _compiled(env, source).generate(values):
            size += len(chunk)
            budget.check_size(size)
            budget.check_time()
            parts.append(chunk)
        return "".join(parts)
    finally:
        _budget.reset(token)


def render_email(
    subject: str, text: str, html: str, variables: dict[str, str], limits: Limits | None = None
) -> RenderedEmail:
    """Render subject and bodies; invoice data is escaped in HTML and cannot add headers."""
    limits = limits or Limits()
    values = {key: str(variables.get(key, "")) for key in VARIABLES}
    rendered_subject = _render(_text_env, subject, values, limits)
    return RenderedEmail(
        subject=clean_display_name(rendered_subject)[:300],
        text=_render(_text_env, text, values, limits),
        html=_render(_html_env, html, values, limits),
    )
