"""Opening connections, and turning libpq's failures into one line an operator can act on."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from beta_invites_cli.errors import DatabaseUnavailable
from beta_invites_cli.target import Target

if TYPE_CHECKING:
    import psycopg


def connect(target: Target, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    import psycopg
    from psycopg.conninfo import make_conninfo

    try:
        conninfo = make_conninfo(
            target.conninfo,
            **{"application_name": "invites", "connect_timeout": "10", **target.overrides},
        )
        return psycopg.connect(conninfo, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to the database at {target.host}: {connection_failure_cause(exc)}"
        ) from None
    except psycopg.ProgrammingError as exc:
        # A malformed URL or an unknown connection parameter.
        raise DatabaseUnavailable(f"invalid database URL: {first_line(str(exc))}") from None


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else "unknown error"


def connection_failure_cause(exc: Exception) -> str:
    """The reason libpq gave, without its repeated 'connection to server at ... failed:' prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    # libpq reports one attempt per address; the last one is the most specific.
    attempts = [line for line in lines if "failed:" in line] or lines
    cause = attempts[-1].rsplit("failed:", 1)[-1].strip()
    cause = re.sub(r"^(FATAL|ERROR):\s+", "", cause)
    return cause or lines[0]
