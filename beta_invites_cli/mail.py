"""Delivering messages: one SMTP connection for a batch, or .eml files in an outbox directory.

A 4xx reply is retried with back-off; a 5xx reply fails that recipient only; a dropped
connection is opened again and the message retried.
"""

from __future__ import annotations

import contextlib
import quopri
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from beta_invites_cli.errors import InvitesError

RETRY_DELAYS = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None

    def describe(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpConfig:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvitesError(f"SMTP_URL is not a valid URL: {exc}") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise InvitesError(
            "SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465"
        )
    implicit_tls = parts.scheme == "smtps"
    return SmtpConfig(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class DeliveryFailed(Exception):
    """The server refused this one message for good (a 5xx reply, or 4xx after every retry)."""


class Transport(Protocol):
    description: str

    def deliver(self, letter: Letter) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Letter:
    """One rendered message: the envelope and the bytes the server receives."""

    sender: str  # envelope address
    to: str
    data: bytes
    name: str  # a file name for the outbox: the invite code


def _header(name: str, value: str) -> str:
    """One header line: as it is when short ASCII, else RFC 2047-encoded and folded."""
    line = f"{name}: {value}"
    if value.isascii() and len(line) <= 78 and "\n" not in value:
        return line
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode()


def _address_header(name: str, value: str) -> str:
    display, address = parseaddr(value)
    if display and not display.isascii():
        return f"{name}: {formataddr((display, address), charset='utf-8')}"
    return _header(name, value)


def build_letter(
    *, sender: str, reply_to: str | None, to: str, subject: str, body: str, name: str
) -> Letter:
    """Render one plain-text message.

    Written out directly rather than through email.message: for these simple messages the
    result is the same, and rendering is several times faster, which shows in big batches.
    """
    _, address = parseaddr(sender)
    lines = [
        _address_header("From", sender),
        _header("To", to),
        *([_address_header("Reply-To", reply_to)] if reply_to else []),
        _header("Subject", subject),
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: {make_msgid(domain=address.rpartition('@')[2] or 'localhost')}",
        f"X-Invite-Code: {name}",
        "MIME-Version: 1.0",
    ]
    text = body.replace("\r\n", "\n")
    if text.isascii() and all(len(line) <= 998 for line in text.split("\n")):
        lines += ['Content-Type: text/plain; charset="us-ascii"', "Content-Transfer-Encoding: 7bit"]
        payload = text
    else:
        lines += [
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
        ]
        payload = quopri.encodestring(text.encode("utf-8")).decode("ascii")
    data = ("\n".join(lines) + "\n\n" + payload).encode("ascii")
    return Letter(sender=address, to=to, data=data, name=name)


class SmtpTransport:
    def __init__(
        self,
        config: SmtpConfig,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        timeout: float = 30,
    ) -> None:
        self.config = config
        self.description = config.describe()
        self.retry_delays = retry_delays
        self.timeout = timeout
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        try:
            smtp: smtplib.SMTP
            if config.implicit_tls:
                smtp = smtplib.SMTP_SSL(
                    config.host,
                    config.port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=self.timeout)
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                elif config.username:
                    smtp.close()
                    raise InvitesError(
                        f"{self.description} does not offer STARTTLS: refusing to send the password "
                        "unencrypted (use smtps:// or a server with STARTTLS)"
                    )
            if config.username:
                smtp.login(config.username, config.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise InvitesError(
                f"{self.description} refused the login: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise InvitesError(
                f"cannot connect to the mail server {self.description}: {exc}"
            ) from None
        return smtp

    def deliver(self, letter: Letter) -> None:
        attempt = 0
        reconnected = False
        while True:
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                self._smtp.sendmail(letter.sender, [letter.to], letter.data)
                return
            except smtplib.SMTPServerDisconnected:
                # The server dropped us: open a new connection and try this message once more.
                self._smtp = None
                if reconnected:
                    raise InvitesError(
                        f"the mail server {self.description} keeps dropping the connection"
                    ) from None
                reconnected = True
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                attempt = self._retry_or_fail(code, reply, attempt)
            except (
                smtplib.SMTPSenderRefused,
                smtplib.SMTPDataError,
                smtplib.SMTPResponseException,
            ) as exc:
                attempt = self._retry_or_fail(exc.smtp_code, exc.smtp_error, attempt)

    def _retry_or_fail(self, code: int, reply: bytes | str, attempt: int) -> int:
        self._reset()
        if 400 <= code < 500 and attempt < len(self.retry_delays):
            time.sleep(self.retry_delays[attempt])
            return attempt + 1
        raise DeliveryFailed(f"{code} {_text(reply)}")

    def _reset(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.rset()
            except smtplib.SMTPException:
                self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None


class OutboxTransport:
    """Writes each message as an .eml file: nothing is emailed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"the outbox {directory}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvitesError(f"cannot create the outbox {directory}: {exc.strerror}") from None

    def deliver(self, letter: Letter) -> None:
        path = self.directory / f"{letter.name}.eml"
        temporary = path.with_suffix(".eml.tmp")
        temporary.write_bytes(letter.data)
        temporary.replace(path)  # a reader never sees half a message

    def close(self) -> None:
        pass


def _text(reply: bytes | str) -> str:
    return (
        (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply)
        .replace("\n", " ")
        .strip()
    )
