"""Bounce reports that arrive by mail: .eml files, mboxes and Maildirs.

RFC 3464 delivery status notifications (`multipart/report; report-type=delivery-status`:
Postfix, Exim 4, Gmail, Exchange) are read field by field; the older free-text shapes ("Mail
delivery failed", "failure notice", "Undeliverable") by their SMTP status codes. Spam
complaints in ARF (`report-type=feedback-report`, RFC 5965) are complaints.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import date
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from beta_invites_cli.bounces.events import Failure
from beta_invites_cli.errors import InvitesError

_PARSER = BytesParser(policy=policy.default)
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([45])\d\d\b")
_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*<?([^<>\s]+)>?", re.IGNORECASE | re.MULTILINE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned to sender|delivery (status notification|failure|has failed)|"
    r"mail delivery failed|failure notice|could not be delivered|delivery problem",
    re.IGNORECASE,
)
_QUOTED = re.compile(
    r"(?im)^[ -]*(?:This is a copy of|-+ ?Original message|Below this line|"
    r"The original message was|Original message headers).*$"
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (subsystem|system)", re.IGNORECASE)


def is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def messages(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    """(where, raw message) for every message under the paths: .eml files, mboxes, Maildirs
    and directories of .eml files."""
    for path in paths:
        if path.is_dir():
            if is_maildir(path):
                maildir = mailbox.Maildir(path, factory=None, create=False)
                for key in sorted(maildir.keys()):
                    yield f"{path}/{key}", maildir.get_bytes(key)
            else:
                for child in sorted(p for p in path.iterdir() if p.is_file()):
                    yield from messages([child])
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(5)
        except OSError as exc:
            raise InvitesError(f"{path}: {exc.strerror}") from None
        if head == b"From ":
            box = mailbox.mbox(path, factory=None, create=False)
            for number, key in enumerate(box.keys(), 1):
                yield f"{path} message {number}", box.get_bytes(key)
        else:
            yield str(path), path.read_bytes()


def read(raw: bytes) -> list[Failure] | None:
    """What a report says, recipient by recipient; None when it is not a bounce report."""
    message = _PARSER.parsebytes(raw)
    failures = _read(message)
    day = _day(message)
    return [replace(f, day=day) for f in failures] if failures is not None else None


def _day(message: Message) -> date | None:
    try:
        return parsedate_to_datetime(str(message.get("Date", ""))).date()
    except (TypeError, ValueError):
        return None


def _read(message: Message) -> list[Failure] | None:
    content_type = message.get_content_type()
    param = message.get_param("report-type")
    report_type = param.lower() if isinstance(param, str) else ""
    if content_type == "multipart/report" and report_type == "feedback-report":
        return _complaint(message)
    if content_type == "multipart/report" and report_type == "delivery-status":
        failures = _delivery_status(message)
        if failures is not None:
            return failures
    return _free_text(message)


def _original_message_id(message: Message) -> str | None:
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) else inner
            if isinstance(original, Message) and original.get("Message-ID"):
                return str(original["Message-ID"]).strip().strip("<>")
        if kind in ("text/rfc822-headers", "message/global-headers"):
            found = _MESSAGE_ID.search(_text(part))
            if found:
                return found.group(1)
    return None


def _delivery_status(message: Message) -> list[Failure] | None:
    status_part = next(
        (
            p
            for p in message.walk()
            if p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
        ),
        None,
    )
    if status_part is None:
        return None
    blocks = _field_blocks(status_part)
    message_id = _original_message_id(message)
    failures = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        action = block.get("action", "").lower()
        status = block.get("status", "")
        if action not in ("failed", "delayed") and not status.startswith(("4", "5")):
            continue
        recipient = _address_of(block.get("original-recipient")) or _address_of(
            block.get("final-recipient")
        )
        hard = action == "failed" and not status.startswith("4")
        failures.append(
            Failure(recipient, hard, status, block.get("diagnostic-code", ""), message_id)
        )
    return failures or None


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The per-message and per-recipient field groups of a delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        parsed = [
            {k.lower(): " ".join(str(v).split()) for k, v in block.items()}
            for block in payload
            if isinstance(block, Message)
        ]
        if parsed:
            return parsed
    text = payload if isinstance(payload, str) else _text(part)
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                groups.append(current)
            current, last = {}, None
        elif line[0] in " \t" and last:
            current[last] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            current[last] = value.strip()
    if current:
        groups.append(current)
    return groups


def _address_of(value: str | None) -> str | None:
    """`rfc822; ada@example.com` -> `ada@example.com`."""
    if not value:
        return None
    found = _ADDRESS.search(value.partition(";")[2] or value)
    return found.group(0) if found else None


def _free_text(message: Message) -> list[Failure] | None:
    """The older shapes: a bounce by its sender and subject, read off its text."""
    subject = str(message.get("Subject", ""))
    sender = str(message.get("From", ""))
    if not (_BOUNCE_SUBJECT.search(subject) or _DAEMON.search(sender)):
        return None
    body = _text(message.get_body(("plain",)) if isinstance(message, EmailMessage) else message)
    if not body:
        body = "\n".join(_text(p) for p in message.walk() if p.get_content_maintype() == "text")
    # The original message is quoted at the end: its headers must not be read as the report.
    marker = _QUOTED.search(body)
    report, quoted = (body[: marker.start()], body[marker.end() :]) if marker else (body, "")
    message_id = _original_message_id(message)
    if message_id is None:
        found = _MESSAGE_ID.search(quoted or body)
        message_id = found.group(1) if found else None
    status = _STATUS.search(report)
    reply = _SMTP_REPLY.search(report)
    if status is None and reply is None:
        return None
    code = status.group(0) if status else reply.group(0) if reply else ""
    hard = code.startswith("5")
    ours = {a.lower() for a in _ADDRESS.findall(sender)}
    recipients = [a for a in dict.fromkeys(_ADDRESS.findall(report)) if a.lower() not in ours]
    line = next((ln.strip() for ln in report.splitlines() if code and code in ln), code)
    if not recipients:
        return [Failure(None, hard, code, line, message_id)]
    return [Failure(r, hard, code, line, message_id) for r in recipients[:1]]


def _complaint(message: Message) -> list[Failure] | None:
    """An ARF spam complaint: the complaining recipient, from the report or the original."""
    fields: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            for block in _field_blocks(part):
                fields.update(block)
    recipient = _address_of(fields.get("original-rcpt-to"))
    message_id = _original_message_id(message)
    if recipient is None:
        for part in message.walk():
            if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
                found = re.search(r"(?im)^To:\s*(.+)$", _text(part))
                if found:
                    recipient = _address_of(found.group(1))
                    break
    kind = fields.get("feedback-type", "abuse")
    return [Failure(recipient, True, kind, f"complaint: {kind}", message_id, complaint=True)]


def _text(part: Message | None) -> str:
    if part is None:
        return ""
    if part.is_multipart():
        inner = part.get_payload()
        if isinstance(inner, list):
            return "\n".join(_text(p) for p in inner if isinstance(p, Message))
        return ""
    if part.get_content_maintype() == "message":
        inner = part.get_payload()
        original = inner[0] if isinstance(inner, list) else inner
        return original.as_string() if isinstance(original, Message) else str(original)
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return str(part.get_payload())
    # Bounces often carry UTF-8 (an SMTPUTF8 address) under no charset, or us-ascii.
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return data.decode("utf-8", "replace")
