"""Which database a command talks to, how to connect to it, and how to name it safely.

The explicit URL (`--database-url`), else DATABASE_URL or DATABASE_URL_FILE, else libpq's PG*
variables, else the embedded database (started on first use). Connections never use
server-side prepared statements, so PgBouncer in transaction mode can carry them, and load the
infinite timestamps PostgreSQL allows. libpq's failures become one line naming the host and
the cause, without the password.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from beta_invites_cli import urls
from beta_invites_cli.errors import DatabaseUnavailable, InvitesError
from beta_invites_cli.settings import Settings
from beta_invites_cli.timestamps import register as load_infinity
from beta_invites_cli.urls import scrub

if TYPE_CHECKING:
    import psycopg

POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class Target:
    conninfo: str
    overrides: dict[str, str]
    label: str | None = None  # how to name it, when not by its URL
    password: str | None = None  # kept only to scrub it from libpq's messages

    def _params(self) -> dict[str, str] | None:
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(self.conninfo, **self.overrides)
        except Exception:
            return None
        return {k: str(v) for k, v in params.items() if v is not None}

    def describe(self) -> str:
        """`postgresql://user:***@host:port/dbname`, from what libpq will actually use."""
        if self.label is not None:
            return self.label
        params = self._params()
        if params is None:
            return "the configured database (its connection string could not be parsed)"
        user = params.get("user") or os.environ.get("PGUSER") or ""
        dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
        has_password = bool(params.get("password") or os.environ.get("PGPASSWORD"))
        userinfo = quote(user, safe="") + (":***" if has_password else "")
        host = host_of(params)
        location = host if not host.startswith("socket ") else quote(host[7:], safe="")
        return (
            f"postgresql://{userinfo + '@' if userinfo else ''}{location}/{quote(dbname, safe='')}"
        )

    @property
    def host(self) -> str:
        params = self._params()
        return "?" if params is None else host_of(params)


def host_of(params: dict[str, str]) -> str:
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    if host.startswith("/"):
        return f"socket {host}"
    return f"{host}:{port}"


def resolve(settings: Settings) -> Target:
    """The explicit URL, else DATABASE_URL (or DATABASE_URL_FILE), else libpq's PG* variables."""
    url = settings.database_url or settings.secret("DATABASE_URL")
    overrides = settings.libpq_overrides()
    if not url:
        return Target(conninfo="", overrides=overrides, password=overrides.get("password"))
    parsed = urls.parse(url)
    if parsed is None:  # a key=value connection string
        return Target(conninfo=url.strip(), overrides=overrides, password=urls.password_of(url))
    # postgresql+psycopg:// and friends are SQLAlchemy's spellings of the same URL.
    if parsed.scheme.split("+", 1)[0] not in POSTGRES_SCHEMES:
        raise InvitesError(
            f"the database URL {parsed.masked()} must start with postgresql:// "
            "(like postgresql://user:password@host:5432/dbname)"
        )
    return Target(
        conninfo=parsed.with_credentials("postgresql"),
        overrides=overrides,
        password=parsed.password,
    )


ACTING_FOR = "invites by "
ACT = "SELECT set_config('invites.actor', %s, true)"


def application_name(actor: str | None) -> str:
    """`invites by <actor>` (the operator's user id, or `cron`), else `invites`: shown in
    pg_stat_activity, and read back by act()."""
    if actor and actor.isascii() and actor.isprintable():
        return f"{ACTING_FOR}{actor}"[:63]
    return "invites"


def act(conn: psycopg.Connection[Any]) -> None:
    """Name who acts in the history (sql/997) for the current transaction, which this starts
    unless one is open: each transaction of ours that changes invites begins with it. Set per
    transaction, not per session: behind PgBouncer a session setting would reach other
    clients."""
    name = conn.info.get_parameters().get("application_name", "")
    actor = name[len(ACTING_FOR) :] if name.startswith(ACTING_FOR) else "operator"
    conn.execute(ACT, (actor,))


def connect(
    target: Target, *, autocommit: bool = False, actor: str | None = None
) -> psycopg.Connection[Any]:
    import psycopg
    from psycopg.conninfo import make_conninfo

    secret = target.password
    try:
        conninfo = make_conninfo(
            target.conninfo,
            **{
                "application_name": application_name(actor),
                "connect_timeout": "10",
                **target.overrides,
            },
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
        reason = scrub(first_line(str(exc)), secret)
        raise DatabaseUnavailable(
            f"invalid database URL {urls.mask(target.conninfo)}: {reason}"
        ) from None
    load_infinity(conn)
    return conn


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else "unknown error"


def connection_failure_cause(exc: Exception) -> str:
    """The reason libpq gave, without its repeated 'connection to server at ... failed:' prefix."""
    import re

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    # libpq reports one attempt per address; the last one is the most specific.
    attempts = [line for line in lines if "failed:" in line] or lines
    cause = attempts[-1].rsplit("failed:", 1)[-1].strip()
    cause = re.sub(r"^(FATAL|ERROR):\s+", "", cause)
    return cause or lines[0]


class Database:
    """The database of these settings: resolved once, the embedded one started on first use.

    `on_start` hears "Created ..." or "Started ..." when the embedded cluster had to be created
    or started, and nothing otherwise (cron jobs stay silent)."""

    def __init__(self, settings: Settings, on_start: Callable[[str], None] = lambda _: None):
        self.settings = settings
        self.on_start = on_start
        self._target: Target | None = None
        # False for a command that only cleans up (`expire`): with no embedded database yet,
        # it says so instead of creating and starting one (a cron job that forgot its `cd`).
        self.may_create = True
        # Who the history says made the changes: the operator's user id, or `cron`.
        self.actor: str | None = settings.get("INVITES_SENT_BY") or None

    @property
    def embedded(self) -> bool:
        return self.settings.uses_embedded_database

    def target(self) -> Target:
        if self._target is None:
            if self.embedded:
                from beta_invites_cli.embedded import EmbeddedCluster, default_home

                cluster = EmbeddedCluster(default_home(self.settings.values))
                self._target, started = cluster.ensure_running(create=self.may_create)
                if started:
                    self.on_start(
                        f"{started} the embedded database in {cluster.home} "
                        "(set DATABASE_URL to use another; `invites db stop` stops it)."
                    )
            else:
                self._target = resolve(self.settings)
        return self._target

    def described(self) -> str | None:
        """The database this command has reached, as shown to people; None before that."""
        return self._target.describe() if self._target is not None else None

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        conn = connect(self.target(), autocommit=autocommit, actor=self.actor)
        try:
            yield conn
        finally:
            conn.close()
