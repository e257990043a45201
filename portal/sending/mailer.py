"""Hand one invoice email to the SMTP server and classify its answer.

Flask-Mail builds the MIME message (with the address headers written by `InvoiceMessage`,
docs/stack.md); the SMTP dialogue is driven step by step so that the
server's final answer is recorded and a timeout after the message data went out is told
apart (outcome unknown, not failed). Workers keep their connection open between messages.
"""

import dataclasses
import email.generator
import email.policy
import re
import secrets
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import formataddr, make_msgid, parseaddr
from io import BytesIO

from flask_mail import Message

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


def _open(settings: SmtpSettings) -> smtplib.SMTP:
    """Connect, secure and log in, with a socket timeout (Flask-Mail sets none); classify failures."""
    try:
        if settings.security == "ssl":
            host = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                    context=ssl.create_default_context())  # fmt: skip
        else:
            host = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    except smtplib.SMTPConnectError as error:
        raise _by_code(error.smtp_code, error.smtp_error, "unreachable", "rejected") from error
    except ssl.SSLError as error:
        raise SendError(PERMANENT, "tls", None, str(error)) from error
    except (OSError, smtplib.SMTPException) as error:
        raise SendError(TEMPORARY, "unreachable", None, str(error)) from error
    try:
        if settings.security == "starttls":
            host.starttls(context=ssl.create_default_context())
        if settings.username and settings.password:
            host.login(settings.username, settings.password)
    except smtplib.SMTPAuthenticationError as error:
        host.close()  # a refused login must not leak the socket
        raise SendError(PERMANENT, "auth", error.smtp_code, _text(error.smtp_error)) from error
    except smtplib.SMTPNotSupportedError as error:
        host.close()
        raise SendError(PERMANENT, "tls", None, str(error)) from error
    except smtplib.SMTPResponseException as error:
        host.close()
        raise _by_code(error.smtp_code, error.smtp_error, "temporary", "rejected") from error
    except ssl.SSLError as error:
        host.close()
        raise SendError(PERMANENT, "tls", None, str(error)) from error
    except (OSError, smtplib.SMTPException) as error:
        host.close()
        raise SendError(TEMPORARY, "unreachable", None, str(error)) from error
    return host


def _close(host: smtplib.SMTP, clean: bool = True) -> None:
    """QUIT a connection in a clean state; drop one that failed (QUIT in the middle of the
    message data would be read as data, and its answer waited for)."""
    if not clean:
        host.close()
        return
    try:
        host.quit()
    except (OSError, smtplib.SMTPException):
        host.close()


class SmtpConnections:
    """One SMTP connection per thread, kept open across consecutive sends.

    Reusing the connection saves the connect, TLS and login of every message (PITFALLS:
    150 ms to 95 ms a message on loopback). It is reopened after an error, after
    `idle_timeout` seconds unused, or when the settings change; a server that closed an idle
    connection is found before any data went out, and the message goes on a new one.
    """

    def __init__(self, idle_timeout: float = 30.0):
        self.idle_timeout = idle_timeout
        self._local = threading.local()

    def send(self, settings: SmtpSettings, message: Message, before_data=None) -> tuple[int, str]:
        """Send on the kept connection (or a new one); see `send()`."""
        key = dataclasses.astuple(settings)
        kept = getattr(self._local, "kept", None)
        if kept and (kept[0] != key or time.monotonic() - kept[2] > self.idle_timeout):
            self.close()
            kept = None
        if kept:
            try:
                result = _dialogue(kept[1], message, before_data, kept=True)
            except _StaleConnection:
                # The server hung up (or said 421) while the connection idled: nothing went out.
                self.close(clean=False)
            except BaseException:
                self.close(clean=False)
                raise
            else:
                self._local.kept = (key, kept[1], time.monotonic())
                return result
        host = _open(settings)
        try:
            result = _dialogue(host, message, before_data)
        except BaseException:
            _close(host, clean=False)
            raise
        self._local.kept = (key, host, time.monotonic())
        return result

    def close(self, clean: bool = True) -> None:
        kept = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept:
            _close(kept[1], clean)


def new_message_id(sender_email: str) -> str:
    return make_msgid(domain=sender_email.rpartition("@")[2] or "localhost")


def encoded_address(name: str, address: str) -> str:
    """`Name <address>` with a non-ASCII name as one encoded word, a plain one quoted if needed.

    One encoded word, not several folded ones: between two encoded words a decoder that
    follows RFC 2047 drops the space (compat32, mail apps) while Python's modern parser
    keeps the fold as a space, so any split reads wrong in one of them (docs/stack.md).
    Names are capped at 200 characters, so the line stays far below SMTP's 998.
    """
    return formataddr((name, _idna(address)), charset="utf-8")


def _idna(address: str) -> str:
    """The address with an internationalised domain in its ASCII form."""
    local, _, domain = address.rpartition("@")
    try:
        domain.encode("ascii")
    except UnicodeEncodeError:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    return address


class InvoiceMessage(Message):
    """Flask-Mail's message whose From, To and Cc keep long Vietnamese names whole.

    Flask-Mail 0.10 encodes names with `email.header.Header`, which folds them into several
    encoded words, and "Dịch vụ Ánh Dương" arrives as "Dịch vụ Án h Dương" (docs/stack.md).
    It also joins recipients through a set, so their order changed from send to send.
    """

    def __init__(self, *, sender: tuple[str, str], **kwargs):
        super().__init__(sender=sender, **kwargs)
        self.sender_pair = sender  # Flask-Mail keeps only "name <address>", ambiguous

    def _message(self):
        built = super()._message()
        headers = {
            "From": encoded_address(*self.sender_pair),
            "To": ", ".join(encoded_address(*split(a)) for a in self.recipients),
            "Cc": ", ".join(encoded_address(*split(a)) for a in self.cc),
        }
        # Boundaries chosen here, so that the generator need not search the whole message for
        # a collision (a quarter of its time): "=_" occurs in no base64 or quoted-printable
        # text, and 128 random bits in nothing else.
        for part in built.walk():
            if part.is_multipart():
                part.set_boundary(f"=_{secrets.token_hex(16)}")
        # Written as they are: the modern policy would refold long headers into several words
        # (and stores a header set under it as an object it refolds on output).
        built.policy = email.policy.SMTP.clone(refold_source="none")
        for header, value in headers.items():
            del built[header]
            if value:
                built.set_raw(header, value)
        return built

    def as_bytes(self) -> bytes:
        built = self._message()
        out = BytesIO()
        _Generator(out, mangle_from_=False, policy=_WRITING).flatten(built)
        return out.getvalue()


class _AsTheyAre(email.policy.Compat32):
    """How the message is written: its headers as they are, CRLF line ends.

    The same bytes as the SMTP policy with refold_source="none" writes (a test compares),
    but a header read while writing stays a string: the modern policy parsed every header
    each time the generator looked at one, a third of the time an email took to write.
    """

    def _fold(self, name, value, sanitize):
        if isinstance(value, str) and not email.utils._has_surrogates(value):
            return name + ": " + self.linesep.join(value.splitlines()) + self.linesep
        return super()._fold(name, value, sanitize)


_WRITING = _AsTheyAre(linesep="\r\n", max_line_length=78)


class _Generator(email.generator.BytesGenerator):
    """The standard generator, writing a part's lines in one call rather than two per line.

    The same bytes; the stock loop took 2 ms of the 2.7 ms an 80 KB invoice email took to
    write out (README, "Measured").
    """

    def _write_lines(self, lines):
        if not lines:
            return
        if "\r" in lines:
            lines = email.generator.NLCRE.sub("\n", lines)
        # base64 and quoted-printable bodies end their lines in LF only: a plain replace.
        self.write(lines.replace("\n", self._NL))


def split(address: str | tuple[str, str]) -> tuple[str, str]:
    return address if isinstance(address, tuple) else parseaddr(address)


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
    recipients = [(name, to[0])] + to[1:] if name and to else list(to)
    message = InvoiceMessage(
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


def send(settings: SmtpSettings, message: Message, before_data=None) -> tuple[int, str]:
    """Send on a connection of its own and return the server's final (code, text).

    Raises SendError otherwise. `before_data()` is called once the server is ready for the
    message data, just before it goes out; if it returns False nothing is sent and
    SendError(TEMPORARY, "aborted") is raised.
    """
    host = _open(settings)
    try:
        result = _dialogue(host, message, before_data)
    except BaseException:
        _close(host, clean=False)
        raise
    _close(host)
    return result


class _StaleConnection(SendError):
    """The connection turned out closed before anything of the message went out."""

    def __init__(self, message: str):
        super().__init__(TEMPORARY, "unreachable", None, message)


def _dialogue(
    host: smtplib.SMTP, message: Message, before_data=None, kept: bool = False
) -> tuple[int, str]:
    if message.has_bad_headers():
        raise SendError(PERMANENT, "bad_header", None, "header contains a line break")
    body = message.as_bytes()
    sender = _idna(message.sender_pair[1])
    try:
        host.ehlo_or_helo_if_needed()
        code, reply = host.mail(sender)
    except (OSError, smtplib.SMTPServerDisconnected) as error:
        # Before MAIL FROM was answered nothing of this message reached the server.
        raise _StaleConnection(str(error)) from error
    if code == 421 and kept:
        # A server closing an idle session (or capping messages per session) says 421 here.
        raise _StaleConnection(_text(reply))
    try:
        if code != 250:
            raise _by_code(code, reply, "temporary", "sender_refused")
        refused = {}
        for address in message.send_to:
            address = _idna(split(address)[1])
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
        if before_data is not None and before_data() is False:
            raise SendError(TEMPORARY, "aborted", None, "stopped before the message data")
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
    if body.count(b"\n") != body.count(b"\r\n"):
        body = re.sub(rb"\r?\n", b"\r\n", body)
    # bytes.replace rather than a regular expression: a tenth of the time on 80 KB.
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _by_code(code: int, reply, temporary_kind: str, permanent_kind: str) -> SendError:
    if code in (530, 534, 535):  # authentication required / failed
        return SendError(PERMANENT, "auth", code, _text(reply))
    if 400 <= (code or 0) < 500:
        return SendError(TEMPORARY, temporary_kind, code, _text(reply))
    return SendError(PERMANENT, permanent_kind, code, _text(reply))
