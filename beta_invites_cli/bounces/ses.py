"""Amazon SES notifications (SNS, or event publishing): Bounce, Complaint, DeliveryDelay.

A bounce's recipients carry `status` and `diagnosticCode` when the receiving server answered;
without them the bounce type and subtype say what SES knows. SES's own suppression list
("Suppressed", "OnAccountSuppressionList") is not taken as proof that the address is gone.
"""

from __future__ import annotations

import json
from typing import Any

from beta_invites_cli.bounces.events import Failure
from beta_invites_cli.bounces.fields import day_of, header, message_id

NAME = "ses"
KINDS = ("Bounce", "Complaint", "DeliveryDelay", "Delivery", "Send", "Reject", "Open", "Click")
# (bounceType, bounceSubType) -> the status to read when a recipient has none.
STATUS = {
    ("Permanent", "NoEmail"): "5.1.1",
    ("Transient", "MailboxFull"): "5.2.2",
    ("Transient", "MessageTooLarge"): "5.3.4",
    ("Transient", "ContentRejected"): "5.7.1",
    ("Transient", "AttachmentRejected"): "5.7.1",
    ("Transient", "General"): "4.0.0",
}


def default_status(bounce_type: str, subtype: str) -> str:
    return STATUS.get((bounce_type, subtype), "4.0.0" if bounce_type == "Transient" else "5.0.0")


def unwrapped(document: dict[str, Any]) -> dict[str, Any] | None:
    """The notification inside an SNS envelope (its Message is a JSON string)."""
    if document.get("Type") != "Notification" or "Message" not in document:
        return document
    try:
        inner = json.loads(document["Message"])
    except (TypeError, json.JSONDecodeError):
        return None
    return inner if isinstance(inner, dict) else None


def _kind(document: dict[str, Any]) -> Any:
    return document.get("notificationType") or document.get("eventType")


def recognises(document: dict[str, Any]) -> bool:
    return _kind(document) in KINDS and isinstance(document.get("mail"), dict)


def failures(document: dict[str, Any]) -> list[Failure]:
    mail = document["mail"]
    common = mail.get("commonHeaders") or {}
    ours = message_id(header(mail.get("headers"), "Message-ID") or common.get("messageId"))
    kind = _kind(document)
    if kind == "Bounce":
        bounce = document["bounce"]
        bounce_type = bounce.get("bounceType", "Undetermined")
        subtype = bounce.get("bounceSubType", "General")
        day = day_of(bounce.get("timestamp") or mail.get("timestamp"))
        return [
            Failure(
                recipient["emailAddress"],
                True,
                recipient.get("status") or default_status(bounce_type, subtype),
                recipient.get("diagnosticCode") or f"Amazon SES: {bounce_type} ({subtype})",
                ours,
                day=day,
            )
            for recipient in bounce["bouncedRecipients"]
        ]
    if kind == "Complaint":
        complaint = document["complaint"]
        feedback = complaint.get("complaintFeedbackType") or "abuse"
        day = day_of(complaint.get("timestamp") or mail.get("timestamp"))
        return [
            Failure(r["emailAddress"], True, feedback, f"complaint: {feedback}", ours, True, day)
            for r in complaint["complainedRecipients"]
        ]
    if kind == "DeliveryDelay":
        delay = document["deliveryDelay"]
        day = day_of(delay.get("timestamp"))
        return [
            Failure(
                r["emailAddress"],
                False,
                r.get("status") or "4.0.0",
                r.get("diagnosticCode", ""),
                ours,
                day=day,
            )
            for r in delay["delayedRecipients"]
        ]
    return []  # a delivery, an open: nothing to record
