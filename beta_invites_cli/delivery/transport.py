"""What a transport is, and how one delivery attempt can end besides success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from beta_invites_cli.delivery.message import Letter
from beta_invites_cli.delivery.refusals import Refusal


class DeliveryFailed(Exception):
    """The server refused this one message (`refusal`: its class; refusals.py), or it could not
    be sent: for good (`permanent`: an address that cannot be written) or for now (a relay
    without SMTPUTF8). `sender_fault`: refused at MAIL FROM, whoever the recipient."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = True,
        refusal: Refusal | None = None,
        sender_fault: bool = False,
    ) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.refusal = refusal
        self.sender_fault = sender_fault


class DeliveryUncertain(Exception):
    """The message was handed over but the server's answer never came: it may have arrived."""


class Transport(Protocol):
    description: str

    def connect(self) -> None: ...

    def deliver(self, letter: Letter, before_end: Callable[[], None] | None = None) -> None:
        """Hand one message over; `before_end` runs just before the message becomes final
        (the end of DATA; an .eml renamed into place)."""
        ...

    def close(self) -> None: ...
