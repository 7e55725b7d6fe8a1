"""Invite codes: 16 symbols from a 32-symbol alphabet without 0/1/I/L (80 random bits)."""

from __future__ import annotations

import secrets

from beta_invites_cli.errors import InvalidCode, excerpt

ALPHABET = "23456789ABCDEFGHJKMNOPQRSTUVWXYZ"
LENGTH = 16
_LOOKALIKES = frozenset("1IL")


# Each random byte picks one symbol by its low five bits: 256 is a multiple of 32, so every
# symbol is equally likely. One translate() call does a whole batch in C.
_SYMBOL_OF_BYTE = bytes(ord(ALPHABET[byte % 32]) for byte in range(256))


def new_code() -> str:
    return new_codes(1)[0]


def new_codes(count: int) -> list[str]:
    """`count` independent codes at once."""
    text = secrets.token_bytes(LENGTH * count).translate(_SYMBOL_OF_BYTE).decode("ascii")
    return [text[i : i + LENGTH] for i in range(0, len(text), LENGTH)]


def normalise(typed: str) -> str:
    """The code a person meant: trimmed, upper-cased, without spaces and hyphens.

    A zero is read as the letter O: codes never contain 0, so nobody else's code can be meant.
    1, I and L are refused, naming the character: 1 could stand for I or L, and guessing would
    turn a typo into somebody else's invite.
    """
    shown_code = excerpt(typed.strip(), 40)
    if len(typed) > 4 * LENGTH:
        raise InvalidCode(f"an invite code has {LENGTH} characters; {shown_code} is far longer")
    code = "".join(typed.split()).replace("-", "").upper().replace("0", "O")
    for char in code:
        if char not in ALPHABET:
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            hint = " (codes never contain 1, I or L)" if char in _LOOKALIKES else ""
            raise InvalidCode(f"invalid character {shown} in invite code {shown_code}{hint}")
    if len(code) != LENGTH:
        raise InvalidCode(f"an invite code has {LENGTH} characters; {shown_code} has {len(code)}")
    return code
