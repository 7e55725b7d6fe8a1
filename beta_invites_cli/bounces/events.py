"""What a bounce report or a provider's event says about one recipient: the shape every reader
(mail reports, SES, SendGrid, Postmark, Mailgun, Resend) turns its input into."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Failure:
    """One recipient a report says something about."""

    recipient: str | None
    hard: bool  # refused for good (5.x.x); False: delayed, will be retried by the server
    status: str  # like 5.1.1, or an SMTP reply code
    diagnostic: str
    message_id: str | None  # the Message-ID of the message that bounced (no angle brackets)
    complaint: bool = False
    day: date | None = None  # the report's date: what the refusal counts for
