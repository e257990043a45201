"""Hand one invoice email to the SMTP server and classify its answer.

Flask-Mail builds the MIME message and opens the connection; the SMTP dialogue after
login is driven step by step so that the server's final answer is recorded and a
timeout after the message data went out is told apart (outcome unknown, not failed).
"""

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.utils import formataddr, make_msgid

from flask_mail import Connection, Message, _Mail

from portal.sending.addresses import clean_display_name

TEMPORARY, PERMANENT, UNKNOWN = "temporary", "permanent", "unknown"


@dataclass
class SmtpSettings:
    host: str
    port: int
    security: str  # starttls | ssl | none
    username: str
    password: str
    sender_name: str
    sender_email: str
    reply_to: str = ""
    timeout: float = 30.0


@dataclass
class Attachment:
    filename: str
    content_type: str
    data: bytes


class SendError(Exception):
    """The server did not take the message; `outcome` says whether to try again."""

    def __init__(self, outcome: str, kind: str, code: int | None = None, message: str = ""):
        super().__init__(f"{outcome}/{kind}: {code} {message}")
        self.outcome = outcome
        self.kind = kind
        self.code = code
        self.message = message


class _TimeoutConnection(Connection):
    """Flask-Mail's connection with a socket timeout (it sets none: a stalled server hangs)."""

    def __init__(self, state: _Mail, timeout: float):
        super().__init__(state)
        self.timeout = timeout

    def configure_host(self):
        mail = self.mail
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(
                mail.server, mail.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=self.timeout)
        try:
            if mail.use_tls:
                host.starttls(context=ssl.create_default_context())
            if mail.username and mail.password:
                host.login(mail.username, mail.password)
        except BaseException:
            host.close()  # a refused login must not leak the socket
            raise
        return host


def new_message_id(sender_email: str) -> str:
    return make_msgid(domain=sender_email.rpartition("@")[2] or "localhost")


def build_message(
    settings: SmtpSettings,
    *,
    recipient_name: str,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    subject: str,
    text: str,
    html: str,
    attachments: list[Attachment],
    message_id: str,
) -> Message:
    """Build the MIME message; names are stripped of anything that could add a header."""
    name = clean_display_name(recipient_name)
    recipients = [formataddr((name, to[0]))] + to[1:] if name and to else list(to)
    message = Message(
        subject=clean_display_name(subject),
        recipients=recipients,
        cc=cc,
        bcc=bcc,
        body=text,
        html=html,
        sender=(clean_display_name(settings.sender_name), settings.sender_email),
        reply_to=settings.reply_to or settings.sender_email,
        charset="utf-8",
    )
    message.msgId = message_id
    for item in attachments:
        message.attach(item.filename, item.content_type, item.data)
    return message


def send(settings: SmtpSettings, message: Message) -> tuple[int, str]:
    """Send and return the server's final (code, text); raise SendError otherwise."""
    state = _Mail(
        settings.host, settings.username or None, settings.password or None, settings.port,
        settings.security == "starttls", settings.security == "ssl",
        settings.sender_email, 0, None, False, False,
    )  # fmt: skip
    try:
        connection = _TimeoutConnection(state, settings.timeout).__enter__()
    except smtplib.SMTPAuthenticationError as error:
        raise SendError(PERMANENT, "auth", error.smtp_code, _text(error.smtp_error)) from error
    except smtplib.SMTPConnectError as error:
        raise _by_code(error.smtp_code, error.smtp_error, "unreachable", "rejected") from error
    except smtplib.SMTPNotSupportedError as error:
        raise SendError(PERMANENT, "tls", None, str(error)) from error
    except smtplib.SMTPResponseException as error:
        raise _by_code(error.smtp_code, error.smtp_error, "temporary", "rejected") from error
    except ssl.SSLError as error:
        raise SendError(PERMANENT, "tls", None, str(error)) from error
    except (OSError, smtplib.SMTPException) as error:
        raise SendError(TEMPORARY, "unreachable", None, str(error)) from error
    try:
        return _dialogue(connection.host, message)
    finally:
        try:
            connection.host.quit()
        except (OSError, smtplib.SMTPException):
            connection.host.close()


def _dialogue(host: smtplib.SMTP, message: Message) -> tuple[int, str]:
    if message.has_bad_headers():
        raise SendError(PERMANENT, "bad_header", None, "header contains a line break")
    body = message.as_bytes()
    try:
        host.ehlo_or_helo_if_needed()
        sender = message.sender[1] if isinstance(message.sender, tuple) else message.sender
        code, reply = host.mail(sender)
        if code != 250:
            raise _by_code(code, reply, "temporary", "sender_refused")
        refused = {}
        for address in message.send_to:
            address = _bare(address)
            code, reply = host.rcpt(address)
            if code not in (250, 251):
                refused[address] = (code, _text(reply))
        if len(refused) == len(message.send_to):
            code, text = next(iter(refused.values()))
            temporary = any(400 <= c < 500 for c, _ in refused.values())
            raise SendError(
                TEMPORARY if temporary else PERMANENT, "recipient_refused", code,
                "; ".join(f"{a}: {c} {t}" for a, (c, t) in refused.items()),
            )  # fmt: skip
        code, reply = host.docmd("data")
        if code != 354:
            raise _by_code(code, reply, "temporary", "rejected")
        # Without the final dot the server cannot have taken the message.
        host.send(_dot_stuffed(body))
    except (OSError, smtplib.SMTPServerDisconnected) as error:
        raise SendError(TEMPORARY, "unreachable", None, str(error)) from error
    # From here on the server may have the message: a lost answer means "unknown".
    try:
        code, reply = host.getreply()
    except (TimeoutError, OSError, smtplib.SMTPServerDisconnected) as error:
        raise SendError(UNKNOWN, "no_answer", None, str(error)) from error
    if code != 250:
        raise _by_code(code, reply, "temporary", "rejected")
    note = "; ".join(f"{a}: {c} {t}" for a, (c, t) in refused.items())
    return code, _text(reply) + (f" (refused: {note})" if note else "")


def _dot_stuffed(body: bytes) -> bytes:
    """CRLF line ends, leading dots doubled, and the end-of-data line (RFC 5321 4.5.2)."""
    body = re.sub(rb"(?m)^\.", b"..", re.sub(rb"\r?\n", b"\r\n", body))
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _bare(address: str) -> str:
    return address.rpartition("<")[2].rstrip(">") if "<" in address else address


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _by_code(code: int, reply, temporary_kind: str, permanent_kind: str) -> SendError:
    if code in (530, 534, 535):  # authentication required / failed
        return SendError(PERMANENT, "auth", code, _text(reply))
    if 400 <= (code or 0) < 500:
        return SendError(TEMPORARY, temporary_kind, code, _text(reply))
    return SendError(PERMANENT, permanent_kind, code, _text(reply))
