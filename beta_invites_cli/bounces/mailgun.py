"""Mailgun's webhooks (`event-data`): failed (severity permanent or temporary) and complained.
A temporary failure is one Mailgun still retries: only reported."""

from __future__ import annotations

from typing import Any

from beta_invites_cli.bounces.events import Failure
from beta_invites_cli.bounces.fields import day_of, enhanced_in, message_id

NAME = "mailgun"


def _event(document: dict[str, Any]) -> dict[str, Any]:
    inner = document.get("event-data")
    return inner if isinstance(inner, dict) else document


def recognises(document: dict[str, Any]) -> bool:
    event = _event(document)
    return isinstance(event.get("event"), str) and isinstance(event.get("recipient"), str)


def failures(document: dict[str, Any]) -> list[Failure]:
    event = _event(document)
    recipient = event["recipient"]
    headers = (event.get("message") or {}).get("headers") or {}
    ours = message_id(headers.get("message-id"))
    day = day_of(event.get("timestamp"))
    if event["event"] == "complained":
        return [Failure(recipient, True, "abuse", "complaint: complained", ours, True, day)]
    if event["event"] != "failed":
        return []  # accepted, delivered, opened
    status = event.get("delivery-status") or {}
    text = status.get("message") or status.get("description") or ""
    permanent = event.get("severity") == "permanent"
    code = status.get("code")
    diagnostic = f"{code} {text}".strip() if code else str(text)
    enhanced = enhanced_in(text) or ("5.0.0" if permanent else "4.0.0")
    return [Failure(recipient, permanent, enhanced, diagnostic, ours, day=day)]
