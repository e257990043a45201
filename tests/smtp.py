"""A real SMTP server on loopback (aiosmtpd) whose answers a test can script."""

import asyncio
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller

from tests.conftest import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class ScriptedHandler:
    """Records accepted messages; answers DATA from `data_replies` first, then 250."""

    messages: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_delay: float = 0.0
    sessions: int = 0  # EHLO/HELO greetings: one per connection a client opened
    mail_delay: float = 0.0  # seconds before answering MAIL FROM (nothing sent yet)
    mail_replies: list[str] = field(default_factory=list)  # answers to MAIL FROM, then 250
    on_data: object = None  # called (in the server's thread) when message data arrived
    mail_waiting: bool = False  # a client waits for the answer to MAIL FROM

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        self.sessions += 1
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_delay:
            self.mail_waiting = True
            await asyncio.sleep(self.mail_delay)
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.on_data is not None:
            self.on_data()
        if self.data_delay:
            # The server has the message but is slow to say so: the client may give up
            # (or die) without knowing the message went through.
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
            )
            await asyncio.sleep(self.data_delay)
            return "250 2.0.0 Ok: queued as SLOW"
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 2.0.0 Ok: queued as TEST"


class SmtpServer:
    """Start and stop the server; `port` stays the same across restarts."""

    def __init__(self):
        self.handler = ScriptedHandler()
        self.port = free_port()
        self.controller = None

    def start(self):
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages
