"""One invitation as it goes on the wire: envelope addresses and the message's bytes.

RFC 5321 and 5322 as strict servers apply them: CRLF line endings, no line over 78 characters
(long or non-ASCII bodies are quoted-printable), headers that can never carry a line break,
internationalised domains in IDNA form, and a non-ASCII local part only with SMTPUTF8.
"""

from __future__ import annotations

import functools
import quopri
import secrets
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING

from beta_invites_cli.errors import InvitesError

if TYPE_CHECKING:
    from beta_invites_cli.delivery.dkim import Signer

CRLF = "\r\n"


@dataclass(frozen=True)
class Letter:
    """One rendered message: the envelope and the bytes the server receives."""

    sender: str  # envelope address (ASCII: the domain in IDNA form)
    to: str  # envelope address (the domain in IDNA form; the local part may need SMTPUTF8)
    data: bytes  # CRLF line endings, no line over 998 bytes
    name: str  # a file name for the outbox: the invite code
    smtputf8: bool = False  # the local part is not ASCII
    message_id: str = ""  # without angle brackets, as bounce reports quote it


def ascii_domain(address: str) -> str:
    """`ada@bücher.example` -> `ada@xn--bcher-kva.example`; raises ValueError if impossible."""
    local, at, domain = address.rpartition("@")
    if not at:
        raise ValueError(f"{address!r} is not an address")
    if domain.isascii():
        return address
    import idna

    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as exc:
        raise ValueError(f"its domain cannot be written in IDNA form ({exc})") from None


def check_header_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise InvitesError(f"{name} must be one line: it contains a line break")
    return value


def _header(name: str, value: str) -> str:
    """One header line: as it is when short ASCII, else RFC 2047-encoded and folded."""
    check_header_value(name, value)
    line = f"{name}: {value}"
    if value.isascii() and len(line) <= 78:
        return line
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep=CRLF)


@functools.lru_cache(maxsize=64)
def _address_header(name: str, value: str) -> str:
    """From and Reply-To: the same for every message of a batch, so rendered once."""
    check_header_value(name, value)
    display, address = parseaddr(value)
    if not address:
        return _header(name, value)
    return f"{name}: " + formataddr((display, ascii_domain(address)), charset="utf-8")


def _body(text: str, subtype: str = "plain") -> tuple[list[str], str]:
    """Content headers and the body with CRLF line endings, every line under 998 bytes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and all(len(line) <= 78 for line in text.split("\n")):
        headers = [
            f'Content-Type: text/{subtype}; charset="us-ascii"',
            "Content-Transfer-Encoding: 7bit",
        ]
        return headers, text.replace("\n", CRLF)
    headers = [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
    ]
    encoded = quopri.encodestring(text.encode("utf-8")).decode("ascii")  # soft breaks at 76
    return headers, encoded.replace("\n", CRLF)


def _alternative(text: str, html: str) -> tuple[list[str], str]:
    """multipart/alternative: the text part first, the preferred HTML part last (RFC 2046).
    The boundary starts with `=_`, which quoted-printable never writes."""
    boundary = f"=_invite_{secrets.token_hex(12)}"
    parts = []
    for content, subtype in ((text, "plain"), (html, "html")):
        headers, payload = _body(content, subtype)
        if not payload.endswith(CRLF):
            payload += CRLF
        parts.append(f"--{boundary}{CRLF}{CRLF.join(headers)}{CRLF}{CRLF}{payload}")
    headers = [f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"']
    return headers, "".join(parts) + f"--{boundary}--{CRLF}"


@functools.lru_cache(maxsize=64)
def _envelope_sender(sender: str) -> str:
    return ascii_domain(parseaddr(sender)[1])


@dataclass(frozen=True)
class Unsubscribe:
    """Where a recipient opts out (RFC 2369, and RFC 8058's one click for an https URL)."""

    mailto: str | None  # an address
    url: str | None  # https, with {code} in it

    def header_lines(self, code: str) -> list[str]:
        targets = []
        if self.mailto:
            targets.append(f"<mailto:{self.mailto}?subject=unsubscribe%20{code}>")
        if self.url:
            targets.append(f"<{self.url.replace('{code}', code)}>")
        if not targets:
            return []
        # A structured header: folded between its URLs, never encoded (RFC 2369). Both were
        # checked at start to be ASCII without spaces or line breaks.
        value = f",{CRLF} ".join(targets)
        first = f"List-Unsubscribe: {targets[0]}" + ("," if len(targets) > 1 else "")
        # Folded after the colon too when the first URL would make its line longer than 78
        # characters (RFC 5322's recommended limit): every line then holds one URL.
        fold = CRLF if len(first) > 78 else ""
        lines = [f"List-Unsubscribe:{fold} {value}"]
        if self.url:
            lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        return lines


def build_letter(
    *,
    sender: str,
    reply_to: str | None,
    to: str,
    subject: str,
    body: str,
    name: str,
    html: str | None = None,
    unsubscribe: Unsubscribe | None = None,
    dkim: Signer | None = None,
) -> Letter:
    """Render one message: plain text, or multipart/alternative with an HTML part.

    Written out directly rather than through email.message: for these simple messages the
    result is the same, and rendering is several times faster, which shows in big batches.
    Raises ValueError when the recipient's address cannot be put on the wire.
    """
    sender_address = _envelope_sender(sender)
    envelope_to = ascii_domain(to)
    smtputf8 = not envelope_to.isascii()
    message_id = make_msgid(domain=sender_address.rpartition("@")[2] or "localhost")
    lines = [
        _address_header("From", sender),
        # RFC 6532: with SMTPUTF8 the header carries the UTF-8 address as it is.
        f"To: {envelope_to}" if smtputf8 else _header("To", envelope_to),
        *([_address_header("Reply-To", reply_to)] if reply_to else []),
        _header("Subject", subject),
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: {message_id}",
        f"X-Invite-Code: {name}",
        *(unsubscribe.header_lines(name) if unsubscribe else []),
        "MIME-Version: 1.0",
    ]
    if html is None:
        content, payload = _body(body)
    else:
        content, payload = _alternative(body, html)
    data = (CRLF.join(lines + content) + CRLF + CRLF + payload).encode("utf-8")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if dkim is not None:
        data = dkim.sign(data)
    return Letter(
        sender=sender_address,
        to=envelope_to,
        data=data,
        name=name,
        smtputf8=smtputf8,
        message_id=message_id.strip("<>"),
    )
