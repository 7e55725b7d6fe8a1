"""Resend's webhooks: email.bounced (with SES's bounce type and subtype), email.complained,
email.delivery_delayed."""

from __future__ import annotations

from typing import Any

from beta_invites_cli.bounces import ses
from beta_invites_cli.bounces.events import Failure
from beta_invites_cli.bounces.fields import day_of, enhanced_in, header, message_id, recipients

NAME = "resend"


def recognises(document: dict[str, Any]) -> bool:
    kind = document.get("type")
    return (
        isinstance(kind, str)
        and kind.startswith("email.")
        and isinstance(document.get("data"), dict)
    )


def failures(document: dict[str, Any]) -> list[Failure]:
    data = document["data"]
    ours = message_id(header(data.get("headers"), "Message-ID"))
    day = day_of(document.get("created_at") or data.get("created_at"))
    to = recipients(data.get("to"))
    kind = document["type"]
    if kind == "email.bounced":
        bounce = data.get("bounce") or {}
        text = str(bounce.get("message") or "")
        status = enhanced_in(text) or ses.default_status(
            str(bounce.get("type") or "Permanent"), str(bounce.get("subType") or "General")
        )
        return [Failure(address, True, status, text, ours, day=day) for address in to]
    if kind == "email.complained":
        return [Failure(a, True, "abuse", "complaint: complained", ours, True, day) for a in to]
    if kind == "email.delivery_delayed":
        return [
            Failure(address, False, "4.0.0", "delivery delayed", ours, day=day) for address in to
        ]
    return []  # sent, delivered, opened, clicked
