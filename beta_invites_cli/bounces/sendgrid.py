"""SendGrid's Event Webhook: arrays of events; bounce (type bounce or blocked), dropped,
spamreport and deferred are read. A `blocked` bounce is read by its reason like any other, so
a block of our sending IP is the sender's fault."""

from __future__ import annotations

from typing import Any

from beta_invites_cli.bounces.events import Failure
from beta_invites_cli.bounces.fields import day_of, message_id

NAME = "sendgrid"


def recognises(document: dict[str, Any]) -> bool:
    return (
        isinstance(document.get("event"), str)
        and isinstance(document.get("email"), str)
        and any(key in document for key in ("sg_event_id", "sg_message_id", "smtp-id"))
    )


def failures(document: dict[str, Any]) -> list[Failure]:
    event = document["event"]
    email = document["email"]
    ours = message_id(document.get("smtp-id"))
    day = day_of(document.get("timestamp"))
    status = str(document.get("status") or "")
    reason = str(document.get("reason") or document.get("response") or "")
    if event == "bounce":
        return [Failure(email, True, status or "5.0.0", reason, ours, day=day)]
    if event == "spamreport":
        return [Failure(email, True, "abuse", "complaint: spamreport", ours, True, day)]
    if event == "dropped":
        if "spam" in reason.lower():
            return [Failure(email, True, "abuse", f"complaint: {reason}", ours, True, day)]
        if "unsubscribed" in reason.lower():
            return []  # SendGrid's own unsubscribe list: not a refusal of ours to record
        return [Failure(email, True, "5.0.0", f"dropped by SendGrid: {reason}", ours, day=day)]
    if event == "deferred":
        return [Failure(email, False, status or "4.0.0", reason, ours, day=day)]
    return []  # processed, delivered, open, click
