"""Postmark's bounce and spam complaint webhooks (RecordType Bounce / SpamComplaint).

The bounce Type says what Postmark made of the refusal; its Details, when they carry an SMTP
reply, are read first (a HardBounce whose Details say 5.7.1 is a sender refusal). Types that
are not refusals (auto-replies, subscription changes) record nothing."""

from __future__ import annotations

from typing import Any

from beta_invites_cli.bounces.events import Failure
from beta_invites_cli.bounces.fields import day_of, header, message_id

NAME = "postmark"
# Type -> (a refusal, not a delay; the status to read when Details carry none)
TYPES = {
    "HardBounce": (True, "5.0.0"),
    "Unknown": (True, "5.0.0"),
    "BadEmailAddress": (True, "5.1.3"),
    "SoftBounce": (True, "4.0.0"),
    "DnsError": (True, "4.4.3"),
    "Transient": (False, "4.0.0"),
    "SpamNotification": (True, "5.7.1"),
    "VirusNotification": (True, "5.7.1"),
    "Blocked": (True, "5.7.1"),
    "DMARCPolicy": (True, "5.7.1"),
    "ContentRelated": (True, "5.6.0"),
}


def recognises(document: dict[str, Any]) -> bool:
    return (isinstance(document.get("RecordType"), str) and "Email" in document) or (
        "TypeCode" in document and "Email" in document
    )


def failures(document: dict[str, Any]) -> list[Failure]:
    email = document["Email"]
    ours = message_id(header(document.get("Headers"), "Message-ID")) or message_id(
        document.get("MessageID")
    )
    record_type = document.get("RecordType", "Bounce")
    kind = document.get("Type", "")
    if record_type == "SpamComplaint" or kind == "SpamComplaint":
        day = day_of(document.get("BouncedAt") or document.get("ReceivedAt"))
        return [Failure(email, True, "abuse", "complaint: SpamComplaint", ours, True, day)]
    if record_type != "Bounce" or kind not in TYPES:
        return []
    refused, status = TYPES[kind]
    details = str(document.get("Details") or document.get("Description") or "")
    return [
        Failure(
            email,
            refused,
            status,
            f"{kind}: {details}",
            ours,
            day=day_of(document.get("BouncedAt")),
        )
    ]
