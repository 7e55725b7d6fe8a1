"""Durations as operators type them: `14d`, `36h`, `90m`, `2w`, or `0d`."""

from __future__ import annotations

import re
from datetime import timedelta

from beta_invites_cli.errors import InvitesError

_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([wdhms])\s*$", re.IGNORECASE)


def parse_duration(text: str, *, option: str = "duration") -> timedelta:
    match = _PATTERN.match(text)
    if match is None:
        raise InvitesError(
            f"{option}: {text!r} is not a duration; use a number and a unit, like 14d, 36h, 90m or 2w"
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    try:
        return timedelta(**{_UNITS[unit]: amount})
    except OverflowError:
        raise InvitesError(f"{option}: {text!r} is too long") from None
