"""Where messages go (an SMTP server or an outbox directory) and who they come from: the
whole setup is checked before anything is issued or sent."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import ssl
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from beta_invites_cli import template as templates
from beta_invites_cli.delivery import dkim
from beta_invites_cli.delivery import outbox as outboxes
from beta_invites_cli.delivery.dkim import Signer
from beta_invites_cli.delivery.message import Unsubscribe, ascii_domain, check_header_value
from beta_invites_cli.delivery.outbox import OutboxTransport
from beta_invites_cli.delivery.smtp import Deadlines, SmtpConfig, SmtpTransport, parse_smtp_url
from beta_invites_cli.delivery.transport import Transport
from beta_invites_cli.errors import InvitesError, excerpt
from beta_invites_cli.settings import Settings
from beta_invites_cli.template import Template

DEFAULT_OUTBOX = Path("outbox")
OUTBOX_SENDER = "beta-invites@localhost"


class NoMailServer(InvitesError):
    """Neither SMTP_URL nor an outbox: the CLI says how to choose one."""


@dataclass(frozen=True)
class Letterhead:
    """What every message of a run shares: sender, Reply-To, signup link and template."""

    sender: str
    reply_to: str | None
    signup_url: str | None
    template: Template
    unsubscribe: Unsubscribe | None = None
    dkim: Signer | None = None


@dataclass(frozen=True)
class Channel:
    """Where messages go: an SMTP server, or an outbox directory of .eml files."""

    smtp: SmtpConfig | None
    outbox: Path | None
    deadlines: Deadlines = field(default_factory=Deadlines)

    def open(self) -> Transport:
        if self.outbox is not None:
            return OutboxTransport(self.outbox)
        assert self.smtp is not None
        return SmtpTransport(self.smtp, deadlines=self.deadlines)


def choose_channel(
    settings: Settings, outbox: Path | None, *, embedded: bool, timeout: float | None = None
) -> Channel:
    """SMTP_URL, unless an outbox is asked for; the ./outbox default only on the embedded database,
    so that a misconfigured cron job never "sends" into a folder by accident."""
    explicit = outbox or (
        Path(settings.get("INVITES_OUTBOX") or "") if settings.get("INVITES_OUTBOX") else None
    )
    if explicit is not None:
        outboxes.remember(settings.values, explicit)
        return Channel(None, explicit)
    smtp_url = settings.secret("SMTP_URL")
    if smtp_url:
        config = parse_smtp_url(smtp_url)  # a malformed URL is an error now, not after issuing
        sender = settings.get("INVITES_FROM")
        if not sender:
            raise InvitesError("INVITES_FROM is not set: the From address of the invitations")
        config = dataclasses.replace(
            config, ca_file=ca_file_setting(settings), helo=helo_setting(settings, sender)
        )
        return Channel(config, None, smtp_deadlines(settings, timeout))
    if embedded:
        outboxes.remember(settings.values, DEFAULT_OUTBOX)
        return Channel(None, DEFAULT_OUTBOX)
    raise NoMailServer("SMTP_URL is not set")


def ca_file_setting(settings: Settings) -> str | None:
    """INVITES_SMTP_CA_FILE: PEM certificates of a private CA, loaded once now so that a wrong
    path or a file that holds no certificate is an error before anything is issued."""
    path = settings.get("INVITES_SMTP_CA_FILE")
    if path is None:
        return None
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except OSError as exc:
        reason = exc.strerror if exc.strerror and not isinstance(exc, ssl.SSLError) else None
        raise InvitesError(
            f"INVITES_SMTP_CA_FILE {path}: "
            + (reason or "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        ) from None
    return path


_DOMAIN = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_LITERAL = re.compile(r"\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+)\]")


def helo_setting(settings: Settings, sender: str) -> str:
    """The name we give in EHLO: INVITES_SMTP_HELO, else this machine's fully qualified name,
    else the From address's domain (smtplib's fallback, an address literal such as
    [127.0.0.1], is scored as spam, and a bare host name is refused by strict servers)."""
    given = settings.get("INVITES_SMTP_HELO")
    if given is not None:
        name = given.strip()
        if not (_DOMAIN.fullmatch(name) or _LITERAL.fullmatch(name)):
            raise InvitesError(
                f"INVITES_SMTP_HELO: {excerpt(given)} is not a fully qualified domain name "
                "(like mail.example.com) or an address literal (like [192.0.2.1])"
            )
        return name
    fqdn = socket.getfqdn()
    if _DOMAIN.fullmatch(fqdn) and not fqdn.endswith((".localdomain", ".local", ".localhost")):
        return fqdn
    domain = parseaddr(sender)[1].rpartition("@")[2]
    with contextlib.suppress(UnicodeError):  # INVITES_FROM's own check names the problem
        domain = domain.encode("idna").decode("ascii")
    return domain or "localhost"


DEFAULT_TIMEOUT = 60.0  # a relay that takes longer than this for one step is not answering


def smtp_deadlines(settings: Settings, timeout: float | None = None) -> Deadlines:
    """Each SMTP step's deadline: RFC 5321's, capped by --timeout, else INVITES_SMTP_TIMEOUT,
    else a minute. A step past its deadline counts as a dropped connection."""
    if timeout is not None:
        return Deadlines.capped(timeout)
    text = settings.get("INVITES_SMTP_TIMEOUT")
    if text is None:
        return Deadlines.capped(DEFAULT_TIMEOUT)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1
    if not 0.1 <= seconds <= 3600:
        raise InvitesError(
            f"INVITES_SMTP_TIMEOUT: {excerpt(text, 20)} is not a number of seconds from 0.1 to 3600"
        )
    return Deadlines.capped(seconds)


def check_address_setting(name: str, value: str) -> str:
    """A From or Reply-To setting: one line, `Name <address>` or an address, ASCII before the @."""
    from email_validator import EmailNotValidError, validate_email

    check_header_value(name, value)
    _, address = parseaddr(value)
    if "@" not in address:
        raise InvitesError(
            f"{name}: {excerpt(value)} is not an email address (like Beta Team <beta@example.com>)"
        )
    try:
        validate_email(
            address, check_deliverability=False, allow_smtputf8=False, globally_deliverable=False
        )
    except EmailNotValidError as exc:
        raise InvitesError(f"{name}: {excerpt(address)}: {str(exc).rstrip('.')}") from None
    return value


def letterhead(
    settings: Settings, template_path: Path | None, channel: Channel, kind: str = "invitation"
) -> Letterhead:
    signup_url = settings.get("INVITES_SIGNUP_URL")
    templates.check_signup_url(signup_url)
    sender = settings.get("INVITES_FROM")
    if sender is not None:
        check_address_setting("INVITES_FROM", sender)
    elif channel.outbox is not None:
        sender = OUTBOX_SENDER
    else:
        raise InvitesError("INVITES_FROM is not set: the From address of the invitations")
    reply_to = settings.get("INVITES_REPLY_TO")
    if reply_to is not None:
        check_address_setting("INVITES_REPLY_TO", reply_to)
    return Letterhead(
        sender=sender,
        reply_to=reply_to,
        signup_url=signup_url,
        template=templates.load(template_path, signup_url=signup_url, kind=kind),
        unsubscribe=unsubscribe_setting(settings),
        dkim=dkim_setting(settings, sender),
    )


def dkim_setting(settings: Settings, sender: str) -> Signer | None:
    """INVITES_DKIM_KEY_FILE, INVITES_DKIM_SELECTOR and INVITES_DKIM_DOMAIN (default: the
    domain of INVITES_FROM), checked before anything is issued or sent."""
    key_file = settings.get("INVITES_DKIM_KEY_FILE")
    selector = settings.get("INVITES_DKIM_SELECTOR")
    if not key_file:
        if selector:
            raise InvitesError("INVITES_DKIM_SELECTOR is set but INVITES_DKIM_KEY_FILE is not")
        return None
    domain = settings.get("INVITES_DKIM_DOMAIN") or parseaddr(sender)[1].rpartition("@")[2]
    try:
        domain = ascii_domain(f"x@{domain.strip().rstrip('.')}").partition("@")[2].lower()
    except ValueError as exc:
        raise InvitesError(f"INVITES_DKIM_DOMAIN: {excerpt(domain)}: {exc}") from None
    return dkim.load(key_file, selector, domain)


def unsubscribe_setting(settings: Settings) -> Unsubscribe | None:
    """INVITES_UNSUBSCRIBE_MAILTO (an address) and INVITES_UNSUBSCRIBE_URL (https, with
    {code}), checked before anything is sent."""
    mailto = settings.get("INVITES_UNSUBSCRIBE_MAILTO")
    url = settings.get("INVITES_UNSUBSCRIBE_URL")
    if mailto is not None:
        mailto = mailto.strip().removeprefix("mailto:")
        check_address_setting("INVITES_UNSUBSCRIBE_MAILTO", mailto)
        if parseaddr(mailto)[1] != mailto or not mailto.isascii():
            raise InvitesError(
                f"INVITES_UNSUBSCRIBE_MAILTO: {excerpt(mailto)} must be a plain ASCII address"
            )
    if url is not None:
        url = url.strip()
        check_header_value("INVITES_UNSUBSCRIBE_URL", url)
        if not url.startswith("https://") or "{code}" not in url:
            raise InvitesError(
                "INVITES_UNSUBSCRIBE_URL must be an https:// URL containing {code} "
                f"(RFC 8058 one-click unsubscribe): {excerpt(url)}"
            )
        if not url.isascii() or any(c in url for c in ' <>,"\t'):
            raise InvitesError(f"INVITES_UNSUBSCRIBE_URL: {excerpt(url)} is not a plain URL")
    if mailto is None and url is None:
        return None
    return Unsubscribe(mailto, url)
