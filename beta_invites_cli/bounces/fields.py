"""Reading the fields providers' events share: timestamps, Message-IDs, headers."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")


def day_of(value: Any) -> date | None:
    """A provider's timestamp (ISO 8601, or seconds since the epoch) as a UTC day."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=timezone.utc).date()
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc)
        return moment.date()
    return None


def message_id(value: Any) -> str | None:
    """A Message-ID as we keep it: without angle brackets."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().strip("<>") or None


def header(headers: Any, name: str) -> str | None:
    """A header's value from the shapes providers use: a list of {name, value} objects (any
    case), or an object of name to value."""
    wanted = name.lower()
    if isinstance(headers, dict):
        for key, value in headers.items():
            if str(key).lower() == wanted and isinstance(value, str):
                return value
    if isinstance(headers, list):
        for item in headers:
            if isinstance(item, dict):
                key = item.get("name", item.get("Name"))
                value = item.get("value", item.get("Value"))
                if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
                    return value
    return None


def enhanced_in(text: Any) -> str | None:
    """The first enhanced status code in a provider's free text."""
    found = _ENHANCED.search(text) if isinstance(text, str) else None
    return found.group(1) if found else None


def recipients(value: Any) -> list[str]:
    """One address or a list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
