"""Messages with the tax authority (TDiep): build a 203 of signed invoices, read 999s and 204s.

The invoices go in byte for byte: each signed HDon is placed in DLieu as it was issued,
its XML declaration aside, so every signature still verifies (docs/domain.md, "The invoice
XML" and "Messages with the tax authority"). Answers are read by element name.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from portal.einvoice.xml import InvoiceXmlError, safe_parse

VERSION = "2.0.0"
RECEIVER = "TCT"  # the tax authority's code as receiver
MAX_BYTES = 2 * 1024 * 1024  # one message at most 2 MB
INVOICE_DATA = "203"
RECEIPT = "999"
NOTICE = "204"
_DECLARATION = re.compile(rb"^\s*(\xef\xbb\xbf)?\s*<\?xml[^>]*\?>\s*")


def new_message_code(sender_code: str) -> str:
    """MTDiep: the sender's code and 32 uppercase hex digits (a UUID4 without dashes)."""
    return sender_code + uuid.uuid4().hex.upper()


def invoice_element(signed: bytes) -> bytes:
    """The signed HDon as it stands in a message: its bytes without the XML declaration."""
    return _DECLARATION.sub(b"", signed, count=1).rstrip()


def envelope_size(invoices: list[bytes]) -> int:
    """About how many bytes a 203 of these invoices takes (the header is a few hundred)."""
    return 600 + sum(len(invoice_element(item)) for item in invoices)


def build_203(sender_code: str, message_code: str, tax_code: str, invoices: list[bytes]) -> bytes:
    """Wrap signed invoices of one taxpayer, untouched, in a TDiep of type 203."""
    header = (
        f"<TTChung><PBan>{VERSION}</PBan><MNGui>{escape(sender_code)}</MNGui>"
        f"<MNNhan>{RECEIVER}</MNNhan><MLTDiep>{INVOICE_DATA}</MLTDiep>"
        f"<MTDiep>{escape(message_code)}</MTDiep><MTDTChieu></MTDTChieu>"
        f"<MST>{escape(tax_code)}</MST><SLuong>{len(invoices)}</SLuong></TTChung>"
    )
    body = b"".join(invoice_element(item) for item in invoices)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<TDiep>'
        + header.encode()
        + b"<DLieu>"
        + body
        + b"</DLieu></TDiep>"
    )


@dataclass
class Problem:
    """One reason the authority gave: its code, what is wrong, how to fix it."""

    code: str
    text: str
    hint: str = ""


@dataclass
class Answer:
    """A 999 or 204 read from its bytes."""

    message_type: str
    message_code: str  # the answer's own MTDiep
    reference: str  # the MTDiep it answers (MTDTChieu, or MGDDTu in a 204)
    accepted: bool  # 999: TTTNhan 0; 204: LTBao 2 (every invoice valid)
    problems: list[Problem] = field(default_factory=list)  # reasons for the whole message
    # 204 with LTBao 3: the invalid invoices by (form, series, number), each with its reasons.
    invalid: dict[tuple[int, str, int], list[Problem]] = field(default_factory=dict)


def _local(element) -> str:
    tag = element.tag if isinstance(element.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def _find(parent, *path: str):
    node = parent
    for name in path:
        node = next((child for child in node if _local(child) == name), None)
        if node is None:
            return None
    return node


def _text(parent, *path: str) -> str:
    node = _find(parent, *path) if parent is not None else None
    return (node.text or "").strip() if node is not None else ""


def _problems(parent, text_names: tuple[str, ...]) -> list[Problem]:
    found = []
    reasons = _find(parent, "DSLDo") if parent is not None else None
    for reason in reasons if reasons is not None else []:
        if _local(reason) != "LDo":
            continue
        text = next((_text(reason, name) for name in text_names if _text(reason, name)), "")
        found.append(Problem(_text(reason, "MLoi"), text, _text(reason, "HDXLy")))
    return found


def parse_answer(data: bytes) -> Answer:
    """Read a 999 (technical receipt) or a 204 (data-check notice)."""
    root = safe_parse(data).getroot()
    if _local(root) != "TDiep":
        raise InvoiceXmlError(
            "The root element is %(value)s, not TDiep.", params={"value": _local(root)}
        )
    kind = _text(root, "TTChung", "MLTDiep")
    code = _text(root, "TTChung", "MTDiep")
    notice = _find(root, "DLieu", "TBao")
    if kind == RECEIPT:
        return Answer(
            kind, code,
            _text(root, "TTChung", "MTDTChieu") or _text(notice, "MTDiep"),
            _text(notice, "TTTNhan") == "0",
            _problems(notice, ("MTa", "MTLoi")),
        )  # fmt: skip
    if kind == NOTICE:
        data_part = _find(notice, "DLTBao") if notice is not None else None
        answer = Answer(
            kind, code,
            _text(data_part, "MGDDTu") or _text(root, "TTChung", "MTDTChieu"),
            _text(data_part, "LTBao") == "2",
            _problems(data_part, ("MTLoi", "MTa")),
        )  # fmt: skip
        invoices = _find(data_part, "DSHDon") if data_part is not None else None
        for item in invoices if invoices is not None else []:
            if _local(item) != "HDon":
                continue
            form, number = _text(item, "KHMSHDon"), _text(item, "SHDon")
            if form.isdigit() and number.isdigit():
                key = (int(form), _text(item, "KHHDon"), int(number))
                answer.invalid[key] = _problems(item, ("MTLoi", "MTa"))
        return answer
    raise InvoiceXmlError("Not an answer of the tax authority: message type %(value)s.",
                          params={"value": kind or "?"})  # fmt: skip
