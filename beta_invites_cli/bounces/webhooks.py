"""Provider events as their webhooks deliver them, saved to files or piped in: one JSON document,
a JSON array of events, or JSON lines; SES notifications also inside their SNS envelope.

Each provider is one module with the same two functions (the Reader protocol): `recognises`
says whether a document is one of its events, `failures` what it says, recipient by
recipient. A document that is not JSON, or not an event of the provider asked for, is one
problem naming the file and its position; the others are read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from beta_invites_cli.bounces import mailgun, postmark, resend, sendgrid, ses
from beta_invites_cli.bounces.events import Failure


class Reader(Protocol):
    NAME: str

    def recognises(self, document: dict[str, Any]) -> bool: ...

    def failures(self, document: dict[str, Any]) -> list[Failure]: ...


READERS: dict[str, Reader] = {
    reader.NAME: reader for reader in (ses, sendgrid, postmark, mailgun, resend)
}
FORMATS = tuple(READERS)


@dataclass(frozen=True)
class Read:
    """One document: what it says (None: nothing we record, such as a delivery), or why it
    could not be read."""

    where: str
    failures: list[Failure] | None = None
    problem: str | None = None


def looks_like_json(data: bytes) -> bool:
    return data.lstrip()[:1] in (b"{", b"[")


def documents(where: str, data: bytes, fmt: str | None) -> Iterator[Read]:
    """Every event in one file's bytes, read by the provider `fmt` (None: recognised)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield Read(where, problem=f"not UTF-8 (byte {exc.start + 1})")
        return
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.lineno == 1 and "\n" not in text.strip():
            yield Read(where, problem=f"not JSON (line {exc.lineno}, column {exc.colno})")
            return
        yield from _lines(where, text, fmt)
        return
    if isinstance(whole, list):
        for number, document in enumerate(whole, 1):
            yield _one(f"{where} event {number}", document, fmt)
    else:
        yield _one(where, whole, fmt)


def _lines(where: str, text: str, fmt: str | None) -> Iterator[Read]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Read(f"{where} line {number}", problem=f"not JSON (column {exc.colno})")
            continue
        events = document if isinstance(document, list) else [document]
        for index, event in enumerate(events, 1):
            label = f"{where} line {number}" + (f" event {index}" if len(events) > 1 else "")
            yield _one(label, event, fmt)


def _one(where: str, document: Any, fmt: str | None) -> Read:
    if not isinstance(document, dict):
        return Read(where, problem="not a JSON object")
    if document.get("Type") == "SubscriptionConfirmation":
        return Read(where, problem="an SNS subscription confirmation: open its SubscribeURL once")
    document = ses.unwrapped(document)
    if document is None:
        return Read(where, problem="an SNS envelope whose Message is not JSON")
    readers = [READERS[fmt]] if fmt else list(READERS.values())
    reader = next((r for r in readers if r.recognises(document)), None)
    if reader is None:
        wanted = f"a {fmt} event" if fmt else f"an event of {', '.join(FORMATS)}"
        return Read(where, problem=f"not {wanted}")
    try:
        return Read(where, failures=reader.failures(document) or None)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Read(where, problem=f"a {reader.NAME} event without what it needs ({exc})")
