"""Timestamps PostgreSQL can hold and Python cannot: `infinity` and `-infinity`.

The host application may set `expires_at = 'infinity'` (an invite that never expires). psycopg
refuses to load it, so every connection the tool uses loads the two infinities as the largest
and smallest aware datetimes instead; rendering shows them as `infinity` / `-infinity` again.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import abc
    from psycopg.abc import AdaptContext, Buffer
    from psycopg.adapt import Loader
    from psycopg.pq import Format

FAR_FUTURE = datetime.max.replace(tzinfo=timezone.utc)
FAR_PAST = datetime.min.replace(tzinfo=timezone.utc)

# How the infinities arrive: as text, and as the int64 extremes in binary results.
_INFINITIES = {
    b"infinity": FAR_FUTURE,
    b"-infinity": FAR_PAST,
    b"\x7f\xff\xff\xff\xff\xff\xff\xff": FAR_FUTURE,
    b"\x80\x00\x00\x00\x00\x00\x00\x00": FAR_PAST,
}


def infinity_name(value: datetime) -> str | None:
    if value == FAR_FUTURE:
        return "infinity"
    if value == FAR_PAST:
        return "-infinity"
    return None


def register(context: AdaptContext) -> None:
    """Load infinite timestamptz values on this connection or cursor instead of failing."""
    import psycopg
    from psycopg.pq import Format

    oid = psycopg.adapters.types["timestamptz"].oid
    for fmt in (Format.TEXT, Format.BINARY):
        finite = context.adapters.get_loader(oid, fmt)
        if finite is not None and not getattr(finite, "handles_infinity", False):
            context.adapters.register_loader(oid, _infinity_loader(finite, fmt))


@functools.lru_cache(maxsize=16)
def _infinity_loader(finite: type[abc.Loader], fmt: Format) -> type[Loader]:
    """The fast (C) loader cannot be subclassed: wrap it, and answer the two infinities."""
    from psycopg.adapt import Loader

    class InfinityLoader(Loader):
        handles_infinity = True
        format = fmt

        def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
            super().__init__(oid, context)
            self._inner = finite(oid, context)

        def load(self, data: Buffer) -> Any:
            if len(data) <= 9:  # text timestamps are longer; binary ones are 8 bytes
                special = _INFINITIES.get(bytes(data))
                if special is not None:
                    return special
            return self._inner.load(data)

    return InfinityLoader
