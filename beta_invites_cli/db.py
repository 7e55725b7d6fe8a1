"""Opening connections, and turning libpq's failures into one line an operator can act on."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from beta_invites_cli import urls
from beta_invites_cli.errors import DatabaseUnavailable
from beta_invites_cli.target import Target
from beta_invites_cli.timestamps import register as load_infinity
from beta_invites_cli.urls import scrub

if TYPE_CHECKING:
    import psycopg


def connect(target: Target, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    import psycopg
    from psycopg.conninfo import make_conninfo

    secret = target.password
    try:
        conninfo = make_conninfo(
            target.conninfo,
            **{"application_name": "invites", "connect_timeout": "10", **target.overrides},
        )
        # prepare_threshold=None: no server-side prepared statements, which a pooler such as
        # PgBouncer in transaction mode cannot follow from one server connection to the next.
        conn = psycopg.connect(conninfo, autocommit=autocommit, prepare_threshold=None)
    except psycopg.OperationalError as exc:
        cause = scrub(connection_failure_cause(exc), secret)
        raise DatabaseUnavailable(
            f"cannot connect to the database at {scrub(target.host, secret)}: {cause}"
        ) from None
    except psycopg.ProgrammingError as exc:
        # A malformed URL or an unknown connection parameter.
        reason = first_line(str(exc))
        raise DatabaseUnavailable(
            f"invalid database URL {urls.mask(target.conninfo)}: {scrub(reason, secret)}"
        ) from None
    load_infinity(conn)
    return conn


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
