"""Delivering messages over SMTP: one connection for a batch, a deadline on every step.

Every network step has a deadline (RFC 5321 section 4.5.3.2: five minutes for the greeting,
MAIL and RCPT, ten for the reply to the end of DATA; INVITES_SMTP_TIMEOUT lowers them all),
enforced by a watchdog that closes the socket, so a server that trickles bytes forever cannot
hold us either. A 4xx reply is retried with back-off; a 5xx reply fails that message only, and
what it means is read by refusals.classify (whose fault: the recipient's or ours); a
connection dropped before the message was complete is opened again and the message retried.
A connection lost while waiting for the reply to the end of DATA leaves the message's fate
unknown: that raises DeliveryUncertain and the message is never sent again on our own.

TLS (STARTTLS on smtp://, implicit on smtps://) always verifies the server's certificate and
its name; INVITES_SMTP_CA_FILE adds a private CA to the system's, and nothing turns the check off.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from beta_invites_cli import urls
from beta_invites_cli.delivery.message import Letter
from beta_invites_cli.delivery.refusals import classify
from beta_invites_cli.delivery.transport import DeliveryFailed, DeliveryUncertain
from beta_invites_cli.errors import InvitesError

RETRY_DELAYS = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Deadlines:
    """Seconds each SMTP step may take (RFC 5321 section 4.5.3.2)."""

    greeting: float = 300
    command: float = 300  # EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET
    data_start: float = 120
    data_block: float = 180
    data_end: float = 600

    @classmethod
    def capped(cls, seconds: float | None) -> Deadlines:
        if seconds is None:
            return cls()
        base = cls()
        return cls(*(min(getattr(base, f), seconds) for f in base.__dataclass_fields__))


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None
    ca_file: str | None = None  # a private CA trusted besides the system's (INVITES_SMTP_CA_FILE)
    helo: str | None = None  # the name we give in EHLO (INVITES_SMTP_HELO)

    def tls_context(self) -> ssl.SSLContext:
        """Certificate and host name verification, as the system trusts, plus ca_file."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=self.ca_file)
        return context

    def describe(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpConfig:
    parsed = urls.parse(url)
    if parsed is None or parsed.scheme not in ("smtp", "smtps"):
        raise InvitesError(
            "SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465"
        )
    match = re.fullmatch(
        r"(?:\[([0-9A-Fa-f:.]+)\]|([^\[\]/?#:]+))(?::(\d{1,5}))?/?", parsed.location
    )
    if match is None:
        raise InvitesError(
            "SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465"
            + (f", not {parsed.masked()}" if parsed.location else "")
        )
    implicit_tls = parsed.scheme == "smtps"
    return SmtpConfig(
        host=match.group(1) or match.group(2),
        port=int(match.group(3)) if match.group(3) else (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        username=parsed.user or None,
        password=parsed.password or None,
    )


class Watchdog:
    """Closes a socket whose current step has run past its deadline.

    A socket timeout alone bounds each read, not the step: a server that sends one byte every
    few seconds would keep us forever. One thread serves the whole batch and looks a few times
    a second; arming a step is one assignment, so the watchdog costs nothing per message.
    """

    TICK = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: tuple[socket.socket | None, float] | None = None
        self._stop = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="smtp-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def step(self, sock: socket.socket | None, seconds: float) -> Iterator[None]:
        self.fired = False
        self._armed = (sock, time.monotonic() + seconds)
        try:
            yield
        finally:
            with self._lock:
                self._armed = None

    def _run(self) -> None:
        while not self._stop.wait(self.TICK):
            armed = self._armed
            if armed is None or time.monotonic() < armed[1]:
                continue
            with self._lock:
                if self._armed is not armed:
                    continue  # that step ended meanwhile
                self._armed = None
                self.fired = True
                if armed[0] is not None:
                    with contextlib.suppress(OSError):
                        armed[0].shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()


class _Smtp(smtplib.SMTP):
    """smtplib.SMTP whose greeting is read under the watchdog."""

    watchdog: Watchdog
    greeting_seconds: float
    _greeting: contextlib.AbstractContextManager[None] | None = None

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._greeting = self.watchdog.step(sock, self.greeting_seconds)
        self._greeting.__enter__()
        return sock

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None) -> Any:
        # smtplib keeps the name the certificate must match only when the constructor itself
        # connects; we connect later, under the watchdog, so it is set here (without it every
        # TLS handshake failed with "check_hostname requires server_hostname").
        self._host = host
        try:
            code, message = super().connect(host, port, source_address)
        finally:
            greeting = getattr(self, "_greeting", None)
            if greeting is not None:
                greeting.__exit__(None, None, None)
                self._greeting = None
        if code != 220:
            # smtplib leaves this check to the constructor; a cut-off greeting ends up here.
            self.close()
            if self.watchdog.fired:
                raise TimeoutError("no answer in time")
            raise smtplib.SMTPConnectError(code, message)
        return code, message

    def auth(
        self, mechanism: str, authobject: Callable[..., str], *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """smtplib's AUTH exchange with the credentials in UTF-8 (RFC 4616; smtplib encodes
        them as ASCII, so a password with a non-ASCII character could never log in)."""
        mechanism = mechanism.upper()
        initial = authobject() if initial_response_ok else None
        # smtplib's auth_login tells the user name from the password by this count.
        self._auth_challenge_count = 1 if initial is not None else 0
        if initial is not None:
            code, reply = self.docmd("AUTH", f"{mechanism} {_base64(initial)}")
        else:
            code, reply = self.docmd("AUTH", mechanism)
        for _ in range(5):  # smtplib's own bound on challenges
            if code != 334:
                break
            self._auth_challenge_count += 1
            code, reply = self.docmd(_base64(authobject(base64.decodebytes(reply))))
        if code in (235, 503):
            return code, reply
        raise smtplib.SMTPAuthenticationError(code, reply)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str:  # type: ignore[override]
        if challenge is None:
            return None  # type: ignore[return-value]  # smtplib's contract: no initial response
        digest = hmac.HMAC(self.password.encode("utf-8"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class _SmtpSsl(smtplib.SMTP_SSL, _Smtp):
    """Implicit TLS: the watchdog guards the plain socket under the TLS handshake too."""


class _Reply(Exception):
    def __init__(self, code: int, text: str, *, at_mail: bool = False) -> None:
        self.code = code
        self.text = text
        self.at_mail = at_mail  # the refusal of the sender, not of a recipient


class SmtpTransport:
    def __init__(
        self,
        config: SmtpConfig,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.config = config
        self.description = config.describe()
        self.retry_delays = retry_delays
        self.deadlines = deadlines or Deadlines()
        self._smtp: smtplib.SMTP | None = None
        self._watchdog: Watchdog | None = None

    def _fail(self, what: str, exc: BaseException) -> InvitesError:
        timed_out = _timed_out(exc) or bool(self._watchdog and self._watchdog.fired)
        reason = "no answer in time" if timed_out else tls_reason(exc) or str(exc)
        reason = urls.scrub(reason, self.config.password)
        return InvitesError(f"cannot connect to the mail server {self.description}: {reason}")

    def connect(self) -> None:
        if self._smtp is None:
            self._smtp = self._open()

    def tls_version(self) -> str | None:
        """The TLS version of the open connection (TLSv1.3); None when it is plain."""
        sock = self._smtp.sock if self._smtp is not None else None
        return sock.version() if isinstance(sock, ssl.SSLSocket) else None

    def _open(self) -> smtplib.SMTP:
        config = self.config
        deadlines = self.deadlines
        if self._watchdog is None:
            self._watchdog = Watchdog()
        watchdog = self._watchdog
        smtp: _Smtp
        tls = config.tls_context()
        try:
            if config.implicit_tls:
                smtp = _SmtpSsl(timeout=deadlines.command, context=tls, local_hostname=config.helo)
            else:
                smtp = _Smtp(timeout=deadlines.command, local_hostname=config.helo)
            smtp.watchdog = watchdog
            smtp.greeting_seconds = deadlines.greeting
            smtp.connect(config.host, config.port)
            # The end of DATA goes out as its own small write: without this, Nagle's algorithm
            # holds it until the server's delayed acknowledgement (about 40 ms a message).
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with watchdog.step(smtp.sock, deadlines.command):
                smtp.ehlo()
                if not config.implicit_tls:
                    if smtp.has_extn("starttls"):
                        smtp.starttls(context=tls)
                        smtp.ehlo()
                    elif config.username:
                        smtp.close()
                        raise InvitesError(
                            f"{self.description} does not offer STARTTLS: refusing to send the "
                            "password unencrypted (use smtps:// or a server with STARTTLS)"
                        )
            if config.username:
                with watchdog.step(smtp.sock, deadlines.command):
                    smtp.login(config.username, config.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise InvitesError(
                f"{self.description} refused the login: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException, UnicodeError) as exc:
            raise self._fail("connect", exc) from None
        return smtp

    def deliver(self, letter: Letter, before_end: Callable[[], None] | None = None) -> None:
        attempt = 0
        reconnected = False
        while True:
            if self._smtp is None:
                self._smtp = self._open()
            try:
                self._transaction(self._smtp, letter, before_end)
                return
            except DeliveryUncertain:
                self._drop()
                raise
            except (smtplib.SMTPServerDisconnected, OSError):
                # Dropped before the message was complete: the server delivers nothing it did
                # not see the end of, so opening a new connection and trying again is safe.
                self._drop()
                if reconnected:
                    raise InvitesError(
                        f"the mail server {self.description} keeps dropping the connection"
                    ) from None
                reconnected = True
            except _Reply as reply:
                attempt = self._retry_or_fail(reply, attempt)

    def _transaction(
        self, smtp: smtplib.SMTP, letter: Letter, before_end: Callable[[], None] | None
    ) -> None:
        watchdog = self._watchdog
        assert watchdog is not None
        deadlines = self.deadlines
        options: list[str] = []
        if letter.smtputf8:
            if not smtp.has_extn("smtputf8"):
                # The relay's limit, not the address's: a run through another relay may work.
                raise DeliveryFailed(
                    "the mail server does not accept internationalised addresses (no SMTPUTF8)",
                    permanent=False,
                )
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        # The envelope addresses were checked and written out by build_letter: sent as they
        # are, not parsed again by smtplib's mail() and rcpt() for every message.
        smtp.command_encoding = "utf-8" if letter.smtputf8 else "ascii"
        with watchdog.step(smtp.sock, deadlines.command):
            smtp.putcmd("mail", " ".join([f"FROM:<{letter.sender}>", *options]))
            code, reply = smtp.getreply()
            if code != 250:
                raise _Reply(code, _text(reply), at_mail=True)
            smtp.putcmd("rcpt", f"TO:<{letter.to}>")
            code, reply = smtp.getreply()
            if code not in (250, 251):
                raise _Reply(code, _text(reply))
        with watchdog.step(smtp.sock, deadlines.data_start):
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                raise _Reply(code, _text(reply))
        payload = re.sub(rb"(?m)^\.", b"..", letter.data)
        with watchdog.step(smtp.sock, deadlines.data_block):
            smtp.send(payload)
        if before_end is not None:
            before_end()  # the message is not final until the lone dot below
        with watchdog.step(smtp.sock, deadlines.data_block):
            smtp.send(b".\r\n")
        # From here on the server may have the whole message: its fate is unknown until it
        # answers, and a lost connection must not lead to a second copy.
        try:
            with watchdog.step(smtp.sock, deadlines.data_end):
                code, reply = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            why = (
                f"no answer to the end of the message within {deadlines.data_end:g} s"
                if watchdog.fired or _timed_out(exc)
                else f"the connection was lost before the server answered ({exc})"
            )
            raise DeliveryUncertain(why) from None
        if code != 250:
            raise _Reply(code, _text(reply))

    def _retry_or_fail(self, reply: _Reply, attempt: int) -> int:
        """Try a 4xx again after a pause; a 5xx, or a 4xx after every retry, is a refusal."""
        self._reset()
        if 400 <= reply.code < 500 and attempt < len(self.retry_delays):
            time.sleep(self.retry_delays[attempt])
            return attempt + 1
        text = f"{reply.code} {reply.text}"
        raise DeliveryFailed(
            text,
            permanent=500 <= reply.code < 600,
            refusal=classify(text),
            sender_fault=reply.at_mail,
        )

    def _reset(self) -> None:
        if self._smtp is not None and self._watchdog is not None:
            try:
                with self._watchdog.step(self._smtp.sock, self.deadlines.command):
                    self._smtp.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None

    def close(self) -> None:
        if self._smtp is not None and self._watchdog is not None:
            with (
                contextlib.suppress(OSError, smtplib.SMTPException),
                self._watchdog.step(self._smtp.sock, min(self.deadlines.command, 10)),
            ):
                self._smtp.quit()
        self._drop()
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None


def tls_reason(exc: BaseException) -> str | None:
    """What a failed TLS handshake means for the operator; None when it was not TLS."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or exc.reason or "not valid"
        if "hostname mismatch" in message.lower() or "ip address mismatch" in message.lower():
            return f"its TLS certificate is for another name ({message.rstrip('.')})"
        return (
            f"its TLS certificate is not trusted ({message.rstrip('.')}); "
            "INVITES_SMTP_CA_FILE names a private CA to trust"
        )
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").replace("_", " ").lower() or str(exc)
        if exc.reason == "WRONG_VERSION_NUMBER":
            reason += ": is it a plain SMTP port? smtp:// uses STARTTLS"
        elif exc.reason == "UNEXPECTED_EOF_WHILE_READING":
            # What a server that refuses every cipher or version we offer often does.
            reason = "the server hung up: it may accept no TLS version or cipher we offer"
        return f"the TLS handshake failed ({reason})"
    return None


def _timed_out(exc: BaseException) -> bool:
    """A socket timeout, also as smtplib reports it (a disconnection caused by one)."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def _text(reply: bytes | str) -> str:
    return (
        (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply)
        .replace("\r", " ")
        .replace("\n", " ")
        .strip()
    )
