"""A real SMTP server (aiosmtpd) in this process, with failures we can program."""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass
class Behaviour:
    refuse: dict[str, str] = field(default_factory=dict)  # address -> "550 ..." every time
    defer_once: dict[str, str] = field(default_factory=dict)  # address -> "451 ..." the first time
    drop_after: int | None = None  # hang up once, at the next MAIL after this many messages
    # Answer the next MAIL after this many messages with 421 and close the connection, once
    # (a server shutting down mid-batch).
    shutdown_after: int | None = None
    delay: float = 0.0  # seconds spent on each message
    # After the whole message has arrived: never answer (for this long), or hang up.
    silent_after_data: dict[str, float] = field(default_factory=dict)  # address -> seconds
    drop_after_data: set[str] = field(default_factory=set)
    # Called with each recipient when the end of its message arrives, before the answer.
    on_end_of_data: Callable[[str], None] | None = None
    # Refusals at each step: MAIL FROM (every message), RCPT (every recipient, or those of a
    # domain), the DATA command, the end of DATA (address -> reply).
    refuse_mail: str | None = None
    refuse_all: str | None = None
    refuse_domains: dict[str, str] = field(default_factory=dict)
    refuse_data: dict[str, str] = field(default_factory=dict)
    refuse_end: dict[str, str] = field(default_factory=dict)


class _Smtp(SMTP):
    """aiosmtpd's server, which can refuse the DATA command itself (a hook it lacks)."""

    async def smtp_DATA(self, arg: str) -> None:
        recorder = self.event_handler
        rcpts = self.envelope.rcpt_tos if self.envelope is not None else []
        refusal = recorder.behaviour.refuse_data.get(rcpts[0]) if len(rcpts) == 1 else None
        if refusal is not None and self.session is not None and self.session.host_name:
            await self.push(refusal)
            return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)


class Recorder:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.messages: list[Message] = []
        self.raw: list[bytes] = []  # each message as it came over the wire
        self.envelopes: list[tuple[str, list[str]]] = []  # (MAIL FROM, RCPT TOs)
        self.rcpt_attempts: Counter[str] = Counter()
        self.connections = 0
        self.helo_names: list[str] = []  # what each client said in EHLO
        self.logins: list[str] = []  # user names that logged in
        self._peers: set[Any] = set()
        self._lock = threading.Lock()
        self._dropped = False
        self._shut = False

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            # EHLO again after STARTTLS is the same connection (the same peer address).
            if session.peer not in self._peers:
                self._peers.add(session.peer)
                self.connections += 1
            self.helo_names.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self._lock:
            drop = self.behaviour.drop_after == len(self.messages) and not self._dropped
            if drop:
                self._dropped = True
        if drop:
            server.transport.close()  # hang up without a word, between two messages
        with self._lock:
            shutdown = self.behaviour.shutdown_after == len(self.messages) and not self._shut
            if shutdown:
                self._shut = True
        if shutdown:
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return "421 4.3.2 Service shutting down, try again later"
        if self.behaviour.refuse_mail is not None:
            return self.behaviour.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self._lock:
            self.rcpt_attempts[address] += 1
            attempts = self.rcpt_attempts[address]
        if address in self.behaviour.refuse:
            return self.behaviour.refuse[address]
        domain = address.rpartition("@")[2].lower()
        refusal = self.behaviour.refuse_domains.get(domain, self.behaviour.refuse_all)
        if refusal is not None:
            return refusal
        if address in self.behaviour.defer_once and attempts == 1:
            return self.behaviour.defer_once[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.behaviour.delay:
            await asyncio.sleep(self.behaviour.delay)
        raw = envelope.original_content or envelope.content
        with self._lock:
            self.raw.append(raw)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(email.message_from_bytes(raw))
        (recipient,) = envelope.rcpt_tos
        if self.behaviour.on_end_of_data is not None:
            self.behaviour.on_end_of_data(recipient)
        if recipient in self.behaviour.refuse_end:
            return self.behaviour.refuse_end[recipient]
        if recipient in self.behaviour.drop_after_data:
            server.transport.close()  # the message arrived; the answer never will
        silence = self.behaviour.silent_after_data.get(recipient)
        if silence:
            await asyncio.sleep(silence)
        return "250 Message accepted"

    def by_recipient(self) -> dict[str, list[Message]]:
        result: dict[str, list[Message]] = {}
        for message in list(self.messages):
            result.setdefault(str(message["To"]), []).append(message)
        return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """A server's TLS: `starttls` (port 587 style: STARTTLS required before anything, and
    AUTH only after it) or `implicit` (port 465 style: TLS from the first byte)."""

    mode: str
    context: ssl.SSLContext  # the server's certificate chain and key
    users: dict[str, str] = field(default_factory=dict)  # AUTH accepts these; required if any
    mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")  # the AUTH mechanisms offered


class SmtpServer:
    def __init__(
        self, behaviour: Behaviour | None = None, *, smtputf8: bool = False, tls: Tls | None = None
    ) -> None:
        self.recorder = Recorder(behaviour or Behaviour())
        self.port = free_port()
        self.tls = tls
        options: dict[str, Any] = {}
        if tls is not None and tls.mode == "starttls":
            options.update(tls_context=tls.context, require_starttls=True)
        elif tls is not None:
            options.update(ssl_context=tls.context)
        if tls is not None and tls.users:
            options.update(
                auth_required=True,
                # aiosmtpd counts only STARTTLS as TLS; an implicit-TLS session is TLS throughout.
                auth_require_tls=tls.mode == "starttls",
                authenticator=self._authenticate,
                auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in tls.mechanisms],
            )
        self.controller = _Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            enable_SMTPUTF8=smtputf8,
            **options,
        )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        users = self.tls.users if self.tls else {}
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        if users.get(user) != auth_data.password.decode():
            return AuthResult(success=False, handled=False)
        with self.recorder._lock:
            self.recorder.logins.append(user)
        return AuthResult(success=True)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls is not None and self.tls.mode == "implicit" else "smtp"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        from urllib.parse import quote

        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class TricklingServer:
    """A server that sends its greeting one byte at a time, slowly, forever."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        clients = []
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
                clients.append(client)
            except OSError:
                pass
            for client in list(clients):
                try:
                    client.send(b"2")
                except OSError:
                    clients.remove(client)
            self._stop.wait(self.interval)
        for client in clients:
            client.close()

    def __enter__(self) -> TricklingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
