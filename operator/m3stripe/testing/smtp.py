"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives, for tests and the demo."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import logging
import socket
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class ReceivedMail:
    sender: str
    recipients: tuple[str, ...]
    message: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""


class _Handler:
    def __init__(self, inbox: list[ReceivedMail], fail: list[int]) -> None:
        self.inbox = inbox
        self.fail = fail

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail and self.fail[0] > 0:
            self.fail[0] -= 1
            return "451 4.3.0 temporary failure (injected)"
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.inbox.append(ReceivedMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), message))
        return "250 OK"


# aiosmtpd logs every connection at INFO, including its own start-up probe.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    """`async with SmtpServer() as smtp:` ... `smtp.messages`. Listens on 127.0.0.1 only."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.messages: list[ReceivedMail] = []
        self._fail = [0]
        self._controller = Controller(_Handler(self.messages, self._fail), hostname=self.host, port=self.port)

    def fail_next(self, count: int) -> None:
        """Answer the next `count` messages with a temporary failure."""
        self._fail[0] = count

    async def __aenter__(self) -> SmtpServer:
        await asyncio.to_thread(self._controller.start)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self._controller.stop)

    def stop(self) -> None:
        self._controller.stop()
