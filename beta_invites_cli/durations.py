"""Durations as operators type them: `14d`, `36h`, `90m`, `2w`, or `0d`."""

from __future__ import annotations

import re
from datetime import timedelta

from beta_invites_cli.errors import InvitesError, excerpt

_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_PATTERN = re.compile(r"^\s*(\d{1,9})\s*([wdhms])\s*$", re.IGNORECASE)
# Longer than any beta runs; a larger number is a typo, and PostgreSQL's timestamps end anyway.
MAXIMUM = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    match = _PATTERN.match(text)
    if match is None:
        raise InvitesError(
            f"{excerpt(text, 30)} is not a duration; use a number and a unit, "
            "like 14d, 36h, 90m or 2w"
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    try:
        duration = timedelta(**{_UNITS[unit]: amount})
    except OverflowError:
        duration = timedelta.max
    if duration > MAXIMUM:
        raise InvitesError(f"{text.strip()} is longer than 10 years (3650d)")
    return duration
