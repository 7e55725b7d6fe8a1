"""Invite codes: 16 symbols from a 32-symbol alphabet without 0/1/I/L (80 random bits)."""

from __future__ import annotations

import secrets

from beta_invites_cli.errors import InvalidCode

ALPHABET = "23456789ABCDEFGHJKMNOPQRSTUVWXYZ"
LENGTH = 16
_LOOKALIKES = {"0": "O", "1": "I or L", "I": "1", "L": "1"}


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise(typed: str) -> str:
    """The code a person meant: trimmed, upper-cased, without spaces and hyphens.

    Anything else outside the alphabet is refused, naming the character, because guessing
    (0 for O, say) would turn a typo into somebody else's invite.
    """
    code = "".join(typed.split()).replace("-", "").upper()
    for char in code:
        if char not in ALPHABET:
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            hint = " (codes never contain 0, 1, I or L)" if char in _LOOKALIKES else ""
            raise InvalidCode(f"invalid character {shown} in invite code {typed.strip()!r}{hint}")
    if len(code) != LENGTH:
        raise InvalidCode(
            f"an invite code has {LENGTH} characters; {typed.strip()!r} has {len(code)}"
        )
    return code
