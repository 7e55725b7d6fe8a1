from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys
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
from tests import scratch

TEMPLATE = "invites_test_template"
_counter = itertools.count()
_scratch: Path | None = None

# Settings that would leak from a developer's shell into the tests (with every PG* variable
# libpq reads, removed by prefix).
HERMETIC_PREFIXES = ("PG", "INVITES_", "SMTP_", "DATABASE_URL")
HERMETIC = ("NO_COLOR", "COLUMNS")


def pytest_configure(config: pytest.Config) -> None:
    """Everything the session writes goes into one scratch directory, removed at the end."""
    global _scratch
    _scratch = scratch.create()
    scratch.terminate_gracefully()
    if config.option.basetemp is None:
        config.option.basetemp = str(_scratch / "pytest")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _scratch is not None:
        scratch.remove(_scratch)


@pytest.fixture(scope="session")
def scratch_dir() -> Path:
    assert _scratch is not None
    return _scratch


def url_for(admin_url: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_url)
    params["dbname"] = dbname
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})


@pytest.fixture(scope="session")
def admin_url(scratch_dir: Path) -> Iterator[str]:
    """A superuser connection to the session's server (INVITES_TEST_DATABASE_URL, or our own)."""
    external = os.environ.get("INVITES_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from tests.pgharness import start_server

    server = start_server(scratch_dir)
    try:
        yield server.url()  # not dsn(): its "database" key is not a libpq keyword
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pgbouncer(admin_url: str, scratch_dir: Path) -> Iterator[Any]:
    """PgBouncer in transaction mode in front of the test server."""
    from tests.pgharness import start_pgbouncer

    server = conninfo_to_dict(admin_url)
    bouncer = start_pgbouncer(
        scratch_dir, str(server.get("host") or "127.0.0.1"), int(server.get("port") or 5432)
    )
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def pooled_db_url(db_url: str, pgbouncer: Any) -> str:
    """The test's database, reached through PgBouncer in transaction mode."""
    return str(pgbouncer.url(conninfo_to_dict(db_url)["dbname"]))


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
    for name in list(os.environ):
        if name.startswith(HERMETIC_PREFIXES) or name in HERMETIC:
            monkeypatch.delenv(name, raising=False)
    # The tool's state (the embedded database, the list of outboxes) stays in the test's own
    # directory, never in the machine's.
    monkeypatch.setenv("INVITES_HOME", str(tmp_path / "invites-home"))
    # No stray ./.env of the developer's is read: every test starts in its own directory.
    monkeypatch.chdir(tmp_path)


@dataclass
class Invoke:
    """The CLI in-process, against one database: `invites("generate --cohort press-x")`,
    written as in the README (one string, split like a shell does), or as separate arguments."""

    url: str

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        words = shlex.split(args[0]) if len(args) == 1 and " " in args[0] else list(args)
        runner = CliRunner()
        return runner.invoke(
            cli,
            words,
            env={"DATABASE_URL": self.url, **(env or {})},
            input=input,
            catch_exceptions=False,
        )


def process_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A child's environment: nothing of the developer's shell but PATH (and TMPDIR)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "TMPDIR", "INVITES_HOME")}
    return {"PATH": "/usr/bin:/bin", **base, **(env or {})}


def invites_process(
    *args: str | bytes, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """`invites ARGS` as a separate process (kill it, signal it, run several at once)."""
    return subprocess.Popen(
        [sys.executable, "-m", "beta_invites_cli", *args],
        env=process_env(env),
        text=True,
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen},
    )


def run_with_full_disk(
    *args: str, limit: int, db_url: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`invites ARGS` in a process that may write files of at most `limit` bytes: a write past
    it fails as on a full disk (EFBIG, not a signal)."""
    script = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}));"
        "sys.argv = ['invites'] + sys.argv[1:];"
        "from beta_invites_cli.cli import main; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env={
            "DATABASE_URL": db_url,
            "PATH": "/usr/bin:/bin",
            "INVITES_HOME": str(cwd / "home"),
            # Under the size limit Python would write truncated .pyc files into the tree.
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def run_invites(
    *args: str | bytes, env: dict[str, str] | None = None, timeout: float = 180, **run: Any
) -> subprocess.CompletedProcess[str]:
    """`invites ARGS` as a separate process, run to the end."""
    return subprocess.run(
        [sys.executable, "-m", "beta_invites_cli", *args],
        env=process_env(env),
        capture_output=True,
        text=run.pop("text", True),
        timeout=timeout,
        check=False,
        **run,
    )


@pytest.fixture
def invites(db_url: str) -> Invoke:
    """Run the CLI in-process against the test's database."""
    return Invoke(db_url)


def redeem_concurrently(url: str, code: str, attempts: int, **connect: Any) -> list[str]:
    """`attempts` threads redeem `code` at the same moment, each in its own transaction; the
    outcome of each, sorted: "redeemed" or the refusal's status."""
    import threading

    import beta_invites_cli as api

    barrier = threading.Barrier(attempts)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        with psycopg.connect(url, **connect) as conn:
            barrier.wait()
            try:
                api.redeem(conn, code)
                conn.commit()
                result = "redeemed"
            except api.InviteError as exc:
                result = exc.status
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)
