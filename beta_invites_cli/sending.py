"""Choosing where messages go and checking the whole setup before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from beta_invites_cli import template as templates
from beta_invites_cli.delivery import Letterhead
from beta_invites_cli.errors import InvitesError
from beta_invites_cli.mail import OutboxTransport, SmtpTransport, Transport, parse_smtp_url
from beta_invites_cli.settings import Settings

DEFAULT_OUTBOX = Path("outbox")
OUTBOX_SENDER = "beta-invites@localhost"


@dataclass(frozen=True)
class Channel:
    """Where messages go: an SMTP server, or an outbox directory of .eml files."""

    smtp_url: str | None
    outbox: Path | None

    def open(self) -> Transport:
        if self.outbox is not None:
            return OutboxTransport(self.outbox)
        assert self.smtp_url is not None
        return SmtpTransport(parse_smtp_url(self.smtp_url))


def choose_channel(settings: Settings, outbox: Path | None, *, embedded: bool) -> Channel:
    """SMTP_URL, unless an outbox is asked for; the ./outbox default only on the embedded database,
    so that a misconfigured cron job never "sends" into a folder by accident."""
    explicit = outbox or (
        Path(settings.get("INVITES_OUTBOX") or "") if settings.get("INVITES_OUTBOX") else None
    )
    if explicit is not None:
        return Channel(None, explicit)
    smtp_url = settings.get("SMTP_URL")
    if smtp_url:
        parse_smtp_url(smtp_url)  # a malformed URL is an error now, not after issuing
        if not settings.get("INVITES_FROM"):
            raise InvitesError("INVITES_FROM is not set: the From address of the invitations")
        return Channel(smtp_url, None)
    if embedded:
        return Channel(None, DEFAULT_OUTBOX)
    raise InvitesError(
        "SMTP_URL is not set: set it to email the invitations, or pass --outbox DIR to write them as .eml files"
    )


def letterhead(settings: Settings, template_path: Path | None, channel: Channel) -> Letterhead:
    signup_url = settings.get("INVITES_SIGNUP_URL")
    templates.check_signup_url(signup_url)
    sender = settings.get("INVITES_FROM") or (OUTBOX_SENDER if channel.outbox is not None else None)
    if sender is None:
        raise InvitesError("INVITES_FROM is not set: the From address of the invitations")
    return Letterhead(
        sender=sender,
        reply_to=settings.get("INVITES_REPLY_TO"),
        signup_url=signup_url,
        template=templates.load(template_path, signup_url=signup_url),
    )
