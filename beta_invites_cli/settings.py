"""Settings: real environment variables over a `.env` file, read once per command.

`.env` values are kept in a mapping rather than written into os.environ, so that a library
user (or a test) never finds its process environment changed behind its back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from beta_invites_cli.errors import InvitesError

# libpq reads these from the real environment by itself; when they come from `.env` we have
# to hand them to libpq as connection parameters.
LIBPQ_ENVIRONMENT = {
    "PGHOST": "host",
    "PGHOSTADDR": "hostaddr",
    "PGPORT": "port",
    "PGDATABASE": "dbname",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGPASSFILE": "passfile",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
    "PGCONNECT_TIMEOUT": "connect_timeout",
    "PGAPPNAME": "application_name",
    "PGSERVICE": "service",
    "PGOPTIONS": "options",
}


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, str]
    from_dotenv: frozenset[str] = field(default_factory=frozenset)
    database_url: str | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else default

    def secret(self, name: str) -> str | None:
        """A setting that may hold a password: NAME, else the first line of the file NAME_FILE
        (a URL on the command line is visible to every user of the machine in `ps`)."""
        value = self.get(name)
        if value is not None:
            return value
        path = self.get(f"{name}_FILE")
        return read_secret_file(Path(path), f"{name}_FILE") if path else None

    def libpq_overrides(self) -> dict[str, str]:
        """Connection parameters for PG* variables that only `.env` provides."""
        return {
            keyword: self.values[name]
            for name, keyword in LIBPQ_ENVIRONMENT.items()
            if name in self.from_dotenv and self.values.get(name)
        }

    @property
    def uses_embedded_database(self) -> bool:
        return not (
            self.database_url
            or self.get("DATABASE_URL")
            or self.get("DATABASE_URL_FILE")
            or self.get("PGHOST")
            or self.get("PGDATABASE")
            or self.get("PGSERVICE")
        )


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a file holding a secret; `-` reads standard input."""
    import sys

    try:
        if str(path) == "-":
            line = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8-sig") as handle:
                line = handle.readline(65_536)
    except OSError as exc:
        raise InvitesError(f"{what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvitesError(f"{what} {path}: not UTF-8 text") from None
    value = line.strip()
    if not value:
        raise InvitesError(f"{what} {path}: the first line is empty")
    return value


def load_settings(
    env_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    database_url: str | None = None,
) -> Settings:
    """Merge `.env` (from the current directory, or `env_file`) under the real environment."""
    from dotenv import dotenv_values

    environ = os.environ if environ is None else environ
    path = env_file if env_file is not None else Path(".env")
    dotenv: dict[str, str] = {}
    if env_file is not None and not env_file.is_file():
        raise InvitesError(f"env file not found: {env_file}")
    if path.is_file():
        try:
            raw = dotenv_values(path, encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvitesError(f"{path} is not UTF-8 text ({exc.reason})") from exc
        dotenv = {key: value for key, value in raw.items() if value is not None}
    merged = {**dotenv, **environ}
    from_dotenv = frozenset(key for key in dotenv if key not in environ)
    return Settings(values=merged, from_dotenv=from_dotenv, database_url=database_url)
