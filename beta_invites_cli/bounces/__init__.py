"""Bounce reports and provider events that arrive after sending: read, matched to invites,
recorded.

Readers turn their input into Failures (events.py): mail reports (mail.py) and the webhook
events of SES, SendGrid, Postmark, Mailgun and Resend (webhooks.py). Each failed recipient is
matched to its invite by the Message-ID its message went out with, else by the recipient's
address, and recorded by the class of its refusal (delivery/refusals.py), as a refusal at send
time is: only an address that does not exist is bounced and suppressed at once; a refusal that
is the sender's fault suppresses nobody. A delivery the server is still trying ("delayed") is
only reported. Importing the same input again changes nothing: a refusal counts for the day of
its report.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from beta_invites_cli import suppression
from beta_invites_cli.bounces import mail, webhooks
from beta_invites_cli.bounces.events import Failure
from beta_invites_cli.bounces.webhooks import Read
from beta_invites_cli.database import act
from beta_invites_cli.delivery.recording import (
    DEFAULT_POLICY,
    RefusalPolicy,
    record_refusal,
    without_address,
)
from beta_invites_cli.delivery.refusals import Kind, Refusal, classify
from beta_invites_cli.emailkey import key as email_key
from beta_invites_cli.errors import InvitesError

if TYPE_CHECKING:
    import psycopg


@dataclass
class Summary:
    reports: int = 0
    matched: int = 0  # refusals matched to an invite
    recorded: int = 0  # ... of which were new (not recorded by an earlier import)
    kinds: Counter[str] = field(default_factory=Counter)  # the matched ones by class
    sender: list[str] = field(default_factory=list)  # refusals that were the sender's fault
    complaints: int = 0
    unmatched: list[str] = field(default_factory=list)  # where, why
    soft: list[str] = field(default_factory=list)
    not_bounces: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # where, why it cannot be read
    suppressed: int = 0  # addresses newly suppressed


STDIN = Path("-")


def import_reports(
    conn: psycopg.Connection[Any],
    paths: Iterable[Path],
    *,
    fmt: str | None = None,
    policy: RefusalPolicy = DEFAULT_POLICY,
    stdin: BinaryIO | None = None,
) -> Summary:
    """Read every report and event under `paths` (`-`: `stdin`), by `fmt` (`mail`, a
    provider's name; None: recognised), and record refusals and complaints, in one
    transaction; delayed deliveries, unmatched failures and what cannot be read are only
    counted."""
    summary = Summary()
    with conn.transaction():
        act(conn)
        for found in reads(paths, fmt, stdin):
            summary.reports += 1
            if found.problem is not None:
                summary.malformed.append(f"{found.where}: {found.problem}")
            elif found.failures is None:
                summary.not_bounces.append(found.where)
            else:
                for failure in found.failures:
                    record(conn, found.where, failure, summary, policy)
    return summary


def reads(paths: Iterable[Path], fmt: str | None, stdin: BinaryIO | None) -> Iterator[Read]:
    """What every file says: mail (.eml, mbox, Maildir) or provider events (JSON)."""
    for path in paths:
        if path == STDIN:
            yield from _piped(stdin.read() if stdin is not None else b"", fmt)
        elif path.is_dir() and not mail.is_maildir(path):
            yield from reads(sorted(p for p in path.iterdir() if p.is_file()), fmt, stdin)
        elif path.is_dir() or fmt == "mail" or not _json_file(path, fmt):
            for where, raw in mail.messages([path]):
                yield Read(where, mail.read(raw))
        else:
            yield from webhooks.documents(str(path), _bytes(path), fmt)


def _piped(data: bytes, fmt: str | None) -> Iterator[Read]:
    if fmt not in (None, "mail") or (fmt is None and webhooks.looks_like_json(data)):
        yield from webhooks.documents("standard input", data, fmt)
    elif data.startswith(b"From "):  # an mbox: mailbox reads files only
        with tempfile.NamedTemporaryFile(suffix=".mbox") as spool:
            spool.write(data)
            spool.flush()
            for where, raw in mail.messages([Path(spool.name)]):
                yield Read(where.replace(spool.name, "standard input"), mail.read(raw))
    else:
        yield Read("standard input", mail.read(data))


def _json_file(path: Path, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt != "mail"
    try:
        with path.open("rb") as handle:
            return webhooks.looks_like_json(handle.read(4096))
    except OSError as exc:
        raise InvitesError(f"{path}: {exc.strerror}") from None


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvitesError(f"{path}: {exc.strerror}") from None


def record(
    conn: psycopg.Connection[Any],
    where: str,
    failure: Failure,
    summary: Summary,
    policy: RefusalPolicy = DEFAULT_POLICY,
) -> None:
    """Record one failure a report (a mail, a provider's event) names, in the caller's
    transaction."""
    if not failure.hard:
        summary.soft.append(f"{where}: {failure.recipient or '?'} {failure.status} (delayed)")
        return
    invite = _match(conn, failure)
    if invite is None:
        summary.unmatched.append(
            f"{where}: {failure.recipient or 'no recipient'}"
            f"{' <' + failure.message_id + '>' if failure.message_id else ''}: no invite of ours"
        )
        return
    invite_id, email = invite
    detail = " ".join(f"{failure.status} {failure.diagnostic}".split())
    if email is not None:
        detail = without_address(detail, email)
    if failure.recipient is not None:
        detail = without_address(detail, failure.recipient)
    address = email or failure.recipient
    if failure.complaint:
        summary.complaints += 1
        conn.execute(
            "UPDATE public.beta_invites SET complained_at = now()"
            " WHERE id = %s AND complained_at IS NULL",
            (invite_id,),
        )
        if address is not None:
            summary.suppressed += suppression.add(
                conn, [address], reason="complained", source="bounces-import", detail=detail[:1000]
            )
        return
    refusal = classify(detail) or Refusal(Kind.UNCLASSIFIED, failure.status, relay=False)
    summary.matched += 1
    summary.kinds[refusal.kind.value] += 1
    recorded = record_refusal(
        conn,
        invite_id,
        address,
        detail,
        refusal,
        policy=policy,
        source="bounces-import",
        day=failure.day,
        once=True,
    )
    summary.recorded += int(recorded.changed)
    summary.suppressed += int(recorded.suppressed is not None)
    if refusal.kind is Kind.SENDER_REFUSED:
        summary.sender.append(
            f"{where}: {failure.recipient or '?'} {refusal.code}: the sender's fault, not suppressed"
        )


def _match(conn: psycopg.Connection[Any], failure: Failure) -> tuple[Any, str | None] | None:
    """The invite a failure is about: by Message-ID (of its invitation, last resend, or a
    reminder), else the latest one sent to the address."""
    if failure.message_id:
        row = conn.execute(
            """
            SELECT id, email FROM public.beta_invites WHERE message_id = %(id)s
            UNION ALL
            SELECT i.id, i.email FROM public.beta_invites_reminders r
              JOIN public.beta_invites i ON i.id = r.invite_id
             WHERE r.message_id = %(id)s
             LIMIT 1
            """,
            {"id": failure.message_id},
        ).fetchone()
        if row is not None:
            return row[0], row[1]
    if failure.recipient:
        row = conn.execute(
            """
            SELECT id, email FROM public.beta_invites
             WHERE public.invites_email_key(email) = %s AND sent_at IS NOT NULL
             ORDER BY sent_at DESC LIMIT 1
            """,
            (email_key(failure.recipient),),
        ).fetchone()
        if row is not None:
            return row[0], row[1]
    return None
