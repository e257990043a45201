"""A receiving SMTP server for the benchmarks that counts what it got and can misbehave.

Modes: "normal" (250 to every message), "silent" (takes the data, never answers: the
client times out), "busy" (421 to every message: slow down), and stopped (connections
refused). Every message whose data arrived is
kept with its recipients and whether it was answered, so a benchmark can count at the
receiving end what the portal's states claim.
"""

import asyncio
import re
import threading
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, syntax


@dataclass
class Got:
    rcpt_tos: list[str]
    message_id: str
    answered: bool
    files: list[str] = field(default_factory=list)  # the attachments' names (1K26TAA_00000012.pdf)


@dataclass
class Handler:
    mode: str = "normal"
    silent_for: float = 40.0  # seconds a silent server holds a message before giving up
    got: list[Got] = field(default_factory=list)
    reply: str = "250 2.0.0 Ok: kept by the bench sink"
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        if self.mode == "busy":
            # "Slow down": the server refuses the message for now; it has not got it.
            return "421 4.7.0 Too many messages, try again later"
        data = envelope.original_content or envelope.content
        headers = BytesHeaderParser().parsebytes(data)
        names = re.findall(rb'filename="?([^";\r\n]+)"?', data)
        item = Got(list(envelope.rcpt_tos), headers.get("Message-ID", ""), False,
                   [n.decode(errors="replace") for n in names])  # fmt: skip
        with self.lock:
            self.got.append(item)
        if self.mode == "silent":
            # The data is here; the answer never comes in time.
            await asyncio.sleep(self.silent_for)
            return "451 4.3.0 gave up"
        item.answered = True
        return self.reply


class _BlockReadingSMTP(SMTP):
    """aiosmtpd's server, reading the message data in one go rather than line by line.

    aiosmtpd awaits every line of DATA: about 2.5 ms of CPU for an invoice email's 1,500
    lines, a fifth of what the portal itself spends on one, on the same two cores. A mail
    server in production does not share the portal's cores that way (README, "Measured").
    What arrives is the same: the data up to the end mark, with leading dots undone.
    """

    # Commands stay short; the limit also sizes the reader's buffer, which holds a message.
    line_length_limit = 64 * 1024 * 1024

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            # The portal's messages always hold headers, so the end mark follows a line end.
            raw = await self._reader.readuntil(b"\r\n.\r\n")
        except asyncio.CancelledError:
            self._writer.close()
            raise
        content = raw[:-3].replace(b"\r\n..", b"\r\n.")
        if content.startswith(b".."):
            content = content[1:]
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class _Controller(Controller):
    def factory(self):
        return _BlockReadingSMTP(self.handler, **self.SMTP_kwargs)


class Sink:
    """Start, stop and restart the server on one port."""

    def __init__(self, port: int):
        self.port = port
        self.handler = Handler()
        self.controller: Controller | None = None

    def start(self) -> "Sink":
        if self.controller is None:
            self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self.port)
            self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def count(self) -> int:
        with self.handler.lock:
            return len(self.handler.got)

    def received(self) -> list[Got]:
        with self.handler.lock:
            return list(self.handler.got)
