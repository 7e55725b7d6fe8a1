"""A real SMTP server (aiosmtpd) in this process, with failures we can program."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Behaviour:
    refuse: dict[str, str] = field(default_factory=dict)  # address -> "550 ..." every time
    defer_once: dict[str, str] = field(default_factory=dict)  # address -> "451 ..." the first time
    drop_after: int | None = None  # hang up once, at the next MAIL after this many messages
    delay: float = 0.0  # seconds spent on each message


class Recorder:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.messages: list[Message] = []
        self.rcpt_attempts: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._dropped = False

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.connections += 1
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
        if address in self.behaviour.defer_once and attempts == 1:
            return self.behaviour.defer_once[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.behaviour.delay:
            await asyncio.sleep(self.behaviour.delay)
        with self._lock:
            self.messages.append(
                email.message_from_bytes(envelope.original_content or envelope.content)
            )
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


class SmtpServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.recorder = Recorder(behaviour or Behaviour())
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
