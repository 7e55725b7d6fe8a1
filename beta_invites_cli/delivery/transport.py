"""What a transport is, and how one delivery attempt can end besides success."""

from __future__ import annotations

from typing import Protocol

from beta_invites_cli.delivery.message import Letter


class DeliveryFailed(Exception):
    """The server refused this one message for good (a 5xx reply, or 4xx after every retry)."""


class DeliveryUncertain(Exception):
    """The message was handed over but the server's answer never came: it may have arrived."""


class Transport(Protocol):
    description: str

    def connect(self) -> None: ...

    def deliver(self, letter: Letter) -> None: ...

    def close(self) -> None: ...
