"""Send notification emails through the SMTP server configured for the operator (stdlib smtplib)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage


class MailError(Exception):
    """The SMTP server could not be reached or refused the message; the text never holds the password."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where the disablement emails go out; the password is never printed."""

    host: str
    port: int = 587
    sender: str = "m3stripe-operator@localhost"
    security: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 15.0


class Mailer:
    """Sends the disablement email over SMTP (stdlib smtplib in a thread), one message per recipient."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, recipients: Sequence[str], subject: str, body: str) -> None:
        """One message per recipient, so one bad address never blocks the others."""
        failures: list[str] = []
        for recipient in recipients:
            message = EmailMessage()
            message["From"] = self.settings.sender
            message["To"] = recipient
            message["Subject"] = subject
            message.set_content(body)
            try:
                await asyncio.to_thread(self._deliver, message)
            except (OSError, smtplib.SMTPException) as err:
                failures.append(f"{recipient}: {type(err).__name__}: {_safe(err)}")
        if failures:
            raise MailError("; ".join(failures))

    def _deliver(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with smtp:
            if s.security == "starttls":
                smtp.starttls(context=context)
            if s.username and s.password:
                smtp.login(s.username, s.password)
            smtp.send_message(message)


def _safe(err: BaseException) -> str:
    return str(err).splitlines()[0][:200] if str(err) else ""
