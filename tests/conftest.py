from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from beta_invites_cli import migrations
from beta_invites_cli.cli import cli

TEMPLATE = "invites_test_template"
_counter = itertools.count()

# Settings that would leak from a developer's shell into the tests.
HERMETIC = (
    "DATABASE_URL",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGSERVICE",
    "SMTP_URL",
    "INVITES_HOME",
    "INVITES_FROM",
    "INVITES_REPLY_TO",
    "INVITES_OUTBOX",
    "INVITES_SIGNUP_URL",
    "INVITES_SENT_BY",
    "INVITES_SEGMENTS",
    "NO_COLOR",
)


def url_for(admin_url: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_url)
    params["dbname"] = dbname
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """A superuser connection to the session's server (INVITES_TEST_DATABASE_URL, or our own)."""
    external = os.environ.get("INVITES_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from tests.pgharness import start_server

    server = start_server()
    try:
        yield server.url()  # not dsn(): its "database" key is not a libpq keyword
    finally:
        server.stop()


@pytest.fixture(scope="session")
def template_url(admin_url: str) -> str:
    """A database with every migration applied, cloned for each test."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    url = url_for(admin_url, TEMPLATE)
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.migrate(conn, create_users_table=True)
    return url


def _fresh_database(admin_url: str, template: str) -> Iterator[str]:
    name = f"invites_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield url_for(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(admin_url: str, template_url: str) -> Iterator[str]:
    """A clean database with every migration applied."""
    yield from _fresh_database(admin_url, TEMPLATE)


@pytest.fixture
def empty_db_url(admin_url: str) -> Iterator[str]:
    """A clean database with nothing in it: no users table, no migrations."""
    yield from _fresh_database(admin_url, "template0")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in HERMETIC:
        monkeypatch.delenv(name, raising=False)
    # No stray ./.env of the developer's is read: every test starts in its own directory.
    monkeypatch.chdir(tmp_path)


@dataclass
class Invoke:
    url: str

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli,
            list(args),
            env={"DATABASE_URL": self.url, **(env or {})},
            input=input,
            catch_exceptions=False,
        )


@pytest.fixture
def invites(db_url: str) -> Invoke:
    """Run the CLI in-process against the test's database."""
    return Invoke(db_url)
