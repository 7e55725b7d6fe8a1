"""Which database a command talks to, and how to name it without its password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from beta_invites_cli import urls
from beta_invites_cli.errors import InvitesError
from beta_invites_cli.settings import Settings


@dataclass(frozen=True)
class Target:
    conninfo: str
    overrides: dict[str, str]
    embedded: bool = False
    label: str | None = None
    password: str | None = None  # kept only to scrub it from libpq's messages

    def describe(self) -> str:
        """`postgresql://user:***@host:port/dbname`, from what libpq will actually use."""
        from psycopg.conninfo import conninfo_to_dict

        if self.label is not None:
            return self.label

        try:
            params = conninfo_to_dict(self.conninfo, **self.overrides)
        except Exception:
            return "the configured database (its connection string could not be parsed)"
        return describe_params({k: str(v) for k, v in params.items() if v is not None})

    @property
    def host(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(self.conninfo, **self.overrides)
        except Exception:
            return "?"
        return host_of({k: str(v) for k, v in params.items() if v is not None})


def host_of(params: dict[str, str]) -> str:
    import os

    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    if host.startswith("/"):
        return f"socket {host}"
    return f"{host}:{port}"


def describe_params(params: dict[str, str]) -> str:
    import os

    user = params.get("user") or os.environ.get("PGUSER") or ""
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    has_password = bool(params.get("password") or os.environ.get("PGPASSWORD"))
    userinfo = quote(user, safe="") + (":***" if has_password else "")
    host = host_of(params)
    location = host if not host.startswith("socket ") else quote(host[7:], safe="")
    return f"postgresql://{userinfo + '@' if userinfo else ''}{location}/{quote(dbname, safe='')}"


POSTGRES_SCHEMES = ("postgresql", "postgres")


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
