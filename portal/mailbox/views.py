"""Show the messages the local mail catcher kept; only while it is the mail server."""

import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, render_template, send_file
from markupsafe import Markup, escape

from portal.auth.views import role_required

bp = Blueprint("mailbox", __name__, url_prefix="/mailbox")
NAME = re.compile(r"^\d+-[0-9a-f]{8}$")
UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f/\\"]')
URL = re.compile(r"https?://[^\s<>\"']+")


@dataclass
class Caught:
    name: str
    received_at: datetime
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    size: int

    @property
    def attachments(self) -> list[tuple[str, int]]:
        return [
            (p.get_filename() or "", len(p.get_payload(decode=True) or b""))
            for p in self.message.iter_attachments()
        ]


def _folder() -> Path:
    folder = current_app.config.get("MAIL_CATCHER_DIR")
    if not folder:
        abort(404)
    return Path(folder)


def _load(path: Path) -> Caught:
    envelope = (
        json.loads(path.with_suffix(".json").read_text())
        if path.with_suffix(".json").exists()
        else {}
    )
    data = path.read_bytes()
    return Caught(
        name=path.stem,
        received_at=datetime.fromtimestamp(envelope.get("received_at", path.stat().st_mtime), UTC),
        mail_from=envelope.get("mail_from", ""),
        rcpt_tos=envelope.get("rcpt_tos", []),
        message=message_from_bytes(data, policy=policy.default),
        size=len(data),
    )


def _find(name: str) -> Caught:
    if not NAME.match(name):
        abort(404)
    path = _folder() / f"{name}.eml"
    if not path.exists():
        abort(404)
    return _load(path)


@dataclass(frozen=True)
class Summary:
    name: str
    received_at: datetime
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    size: int
    attachments: list[tuple[str, int]]


# Parsing a message with its PDF takes milliseconds; a caught file never changes once it is
# in place, so each web process parses it for the list once.
_summaries: dict[str, Summary] = {}


def _summary(path: Path) -> Summary:
    key = str(path)
    if key not in _summaries:
        if len(_summaries) > 2000:
            _summaries.clear()
        caught = _load(path)
        _summaries[key] = Summary(
            name=caught.name,
            received_at=caught.received_at,
            mail_from=caught.mail_from,
            rcpt_tos=caught.rcpt_tos,
            subject=str(caught.message["Subject"] or ""),
            size=caught.size,
            attachments=caught.attachments,
        )
    return _summaries[key]


@bp.get("/")
@role_required("admin")
def index():
    """List caught messages, newest first."""
    paths = sorted(_folder().glob("*.eml"), reverse=True)[:200]
    return render_template("mailbox/index.html", messages=[_summary(p) for p in paths])


@bp.get("/<name>")
@role_required("admin")
def show(name: str):
    """One caught message: headers, envelope, the text body with clickable links."""
    caught = _find(name)
    body = caught.message.get_body(("plain",))
    text = body.get_content() if body else ""
    # Escape everything, then turn bare URLs into links: the message cannot inject markup.
    linked = URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', str(escape(text)))
    linked = Markup(linked)  # noqa: S704  (every character of the message was escaped above)
    has_html = caught.message.get_body(("html",)) is not None
    return render_template(
        "mailbox/show.html",
        caught=caught,
        text=linked,
        has_html=has_html,
    )


@bp.get("/<name>/html")
@role_required("admin")
def html(name: str):
    """The HTML body as a sandboxed page: no scripts, no outside requests."""
    body = _find(name).message.get_body(("html",)) or abort(404)
    response = Response(body.get_content(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
    )
    return response


@bp.get("/<name>/attachments/<int:index>")
@role_required("admin")
def attachment(name: str, index: int):
    """Download one attachment, its bytes exactly as they were received."""
    parts = list(_find(name).message.iter_attachments())
    if index >= len(parts):
        abort(404)
    part = parts[index]
    # Always a download, never shown inline: the sender chose the type and the name.
    return send_file(
        io.BytesIO(part.get_payload(decode=True) or b""),
        mimetype=part.get_content_type(),
        as_attachment=True,
        download_name=UNSAFE_IN_NAME.sub("_", part.get_filename() or f"attachment-{index}"),
    )
