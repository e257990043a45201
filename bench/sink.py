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


class Sink:
    """Start, stop and restart the server on one port."""

    def __init__(self, port: int):
        self.port = port
        self.handler = Handler()
        self.controller: Controller | None = None

    def start(self) -> "Sink":
        if self.controller is None:
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
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
