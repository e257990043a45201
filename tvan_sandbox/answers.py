"""Write the 999 (technical receipt) and the 204 (data-check notice) the sandbox answers with."""

import uuid
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape

from tvan_sandbox.checks import Invoice, Problem

SENDER = "TCT"
VIETNAM = timezone(timedelta(hours=7))


def new_code() -> str:
    return SENDER + uuid.uuid4().hex.upper()


def _now() -> str:
    return datetime.now(VIETNAM).strftime("%Y-%m-%dT%H:%M:%S")


def _header(kind: str, code: str, answers: str, sender: str, tax_code: str, count: int) -> str:
    return (
        f"<TTChung><PBan>2.0.0</PBan><MNGui>{SENDER}</MNGui><MNNhan>{escape(sender)}</MNNhan>"
        f"<MLTDiep>{kind}</MLTDiep><MTDiep>{code}</MTDiep><MTDTChieu>{escape(answers)}</MTDTChieu>"
        f"<MST>{escape(tax_code)}</MST><SLuong>{count}</SLuong></TTChung>"
    )


def _reasons(problems: list[Problem], text_name: str) -> str:
    if not problems:
        return ""
    items = "".join(
        f"<LDo><MLoi>{escape(p.code)}</MLoi><{text_name}>{escape(p.text)}</{text_name}>"
        + (f"<HDXLy>{escape(p.hint)}</HDXLy>" if p.hint else "")
        + "</LDo>"
        for p in problems
    )
    return f"<DSLDo>{items}</DSLDo>"


def receipt(answers: str, sender: str, tax_code: str, problems: list[Problem]) -> bytes:
    """A 999: TTTNhan 0 (taken), or 1 with the reasons (MLoi, MTa)."""
    code = new_code()
    body = (
        f"<TBao><MTDiep>{escape(answers)}</MTDiep><MNGui>{escape(sender)}</MNGui>"
        f"<NNhan>{_now()}</NNhan><TTTNhan>{1 if problems else 0}</TTTNhan>"
        f"{_reasons(problems, 'MTa')}</TBao>"
    )
    xml = (
        f"<TDiep>{_header('999', code, answers, sender, tax_code, 1)}<DLieu>{body}</DLieu></TDiep>"
    )
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode()


def notice(answers: str, sender: str, tax_code: str, invoices: list[Invoice]) -> bytes:
    """A 204 (01/TB-KTDL): LTBao 2 when every invoice is valid, else 3 listing the invalid."""
    code = new_code()
    invalid = [i for i in invoices if i.problems]
    listed = "".join(
        f"<HDon><KHMSHDon>{i.form}</KHMSHDon><KHHDon>{escape(i.series)}</KHHDon>"
        f"<SHDon>{i.number}</SHDon><NLap>{escape(i.issued)}</NLap>"
        f"{_reasons(i.problems, 'MTLoi')}</HDon>"
        for i in invalid
    )
    body = (
        "<TBao><DLTBao><PBan>2.0.0</PBan><MSo>01/TB-KTDL</MSo>"
        "<Ten>Thông báo về việc kết quả kiểm tra dữ liệu hóa đơn điện tử</Ten>"
        f"<TGNhan>{_now()}</TGNhan><MST>{escape(tax_code)}</MST>"
        f"<MGDDTu>{escape(answers)}</MGDDTu><TGGui>{_now()}</TGGui>"
        f"<LTBao>{3 if invalid else 2}</LTBao><SLuong>{len(invoices)}</SLuong>"
        + (f"<DSHDon>{listed}</DSHDon>" if invalid else "")
        + "</DLTBao></TBao>"
    )
    xml = (
        f"<TDiep>{_header('204', code, answers, sender, tax_code, len(invoices))}"
        f"<DLieu>{body}</DLieu></TDiep>"
    )
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode()
