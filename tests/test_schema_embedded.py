"""The embedded default database, driven as an operator would: separate `invites` processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from beta_invites_cli.embedded import EmbeddedCluster
from tests.conftest import run_invites


@pytest.fixture
def home(scratch_dir: Path) -> Iterator[Path]:
    # In the session's scratch directory, with open traversal: as root the server runs as
    # another account.
    base = Path(tempfile.mkdtemp(prefix="embedded-", dir=scratch_dir))
    base.chmod(0o755)
    home = base / "home"
    try:
        yield home
    finally:
        EmbeddedCluster(home).stop()
        shutil.rmtree(base, ignore_errors=True)


def invites(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_invites(*args, env={"INVITES_HOME": str(home)})


def test_embedded_database_is_created_reused_and_stopped(home: Path) -> None:
    def notice(verb: str) -> str:
        return (
            f"{verb} the embedded database in {home} "
            "(set DATABASE_URL to use another; `invites db stop` stops it).\n"
        )

    before = invites(home, "db", "status")
    assert (
        before.stdout
        == f"location: {home}\nstate: not created yet (the first command that needs it creates it)\n"
    )

    first = invites(home, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith(notice("Created"))
    assert first.stderr.count("the embedded database") == 1
    assert "created a minimal public.users table" in first.stderr
    assert (home / "pgdata" / "PG_VERSION").is_file()

    running = invites(home, "db", "status")
    assert "state: running (pid " in running.stdout
    pid_line = running.stdout.splitlines()[1]

    # Once it runs, commands say nothing about it: cron stays silent.
    second = invites(home, "migrate", "--status", "--format", "csv")
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""
    assert "990_beta_invites.sql,applied" in second.stdout
    assert invites(home, "db", "status").stdout.splitlines()[1] == pid_line  # the same server

    stopped = invites(home, "db", "stop")
    assert stopped.returncode == 0
    assert stopped.stderr == f"stopped the embedded database in {home}\n"
    assert "state: stopped" in invites(home, "db", "status").stdout
    assert (
        invites(home, "db", "stop").stderr == f"the embedded database in {home} was not running\n"
    )

    # The next command starts it again, with the data kept.
    again = invites(home, "migrate")
    assert again.returncode == 0, again.stderr
    assert again.stderr == notice("Started") + "Up to date: nothing to apply.\n"
    quiet = invites(home, "--quiet", "migrate")
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_binaries_that_moved_are_found_again(home: Path) -> None:
    """The virtualenv that created the cluster is gone: status and stop find binaries again."""
    from beta_invites_cli.embedded import find_binaries

    assert invites(home, "migrate").returncode == 0
    real = Path((home / "binaries").read_text().strip())
    assert real == find_binaries() or "pgserver-copy" in str(real)
    (home / "binaries").write_text("/nonexistent/venv/pgserver/pginstall/bin\n")
    status = invites(home, "db", "status")
    assert status.returncode == 0, status.stderr
    assert "state: running (pid " in status.stdout
    assert "/nonexistent" not in (home / "binaries").read_text()
    (home / "binaries").write_text("/nonexistent/venv/pgserver/pginstall/bin\n")
    stopped = invites(home, "db", "stop")
    assert (stopped.returncode, stopped.stderr) == (
        0,
        f"stopped the embedded database in {home}\n",
    )
    (home / "PG_VERSION.saved").write_text((home / "pgdata" / "PG_VERSION").read_text())
    (home / "binaries").unlink()
    (home / "pgdata" / "PG_VERSION").write_text("9\n")  # a version nothing here provides
    gone = invites(home, "db", "status")
    assert gone.returncode == 1
    assert gone.stderr.startswith(
        "Error: the embedded database was created by PostgreSQL 9, whose binaries are gone"
    )
    assert "Traceback" not in gone.stderr
    (home / "pgdata" / "PG_VERSION").write_text((home / "PG_VERSION.saved").read_text())


def test_root_copies_wheel_binaries_the_server_account_cannot_reach(home: Path) -> None:
    """As root, a pgserver wheel under a closed directory (like /root) is copied beside the cluster."""
    from beta_invites_cli.embedded import candidate_binary_dirs

    wheel_bin = next(iter(candidate_binary_dirs()))
    if os.geteuid() != 0 or "pginstall" not in str(wheel_bin):
        pytest.skip("needs root and the pgserver wheel")
    closed = wheel_bin.parents[2]  # site-packages: nobody but root may enter it now
    mode = closed.stat().st_mode
    closed.chmod(mode & ~0o011)
    try:
        result = invites(home, "migrate")
    finally:
        closed.chmod(mode)
    assert result.returncode == 0, result.stderr
    assert (home / "binaries").read_text().strip() == str(
        home / "pgserver-copy" / "pgserver" / "pginstall" / "bin"
    )


def test_the_readme_first_command_writes_to_the_outbox(home: Path, tmp_path: Path) -> None:
    """On the embedded database, with no SMTP_URL, messages land in ./outbox."""
    assert run_invites("migrate", env={"INVITES_HOME": str(home)}, cwd=tmp_path).returncode == 0
    sent = run_invites(
        "send",
        "--cohort",
        "press-demo",
        "--email",
        "ada@example.com",
        env={"INVITES_HOME": str(home)},
        cwd=tmp_path,
    )
    assert sent.returncode == 0, sent.stderr
    (message,) = (tmp_path / "outbox").glob("*.eml")
    assert "To: ada@example.com" in message.read_text()


def test_a_home_that_cannot_hold_the_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    for home, reason in ((tmp_path / "a-file", "not a directory"), (Path("/proc/nope"), None)):
        result = run_invites("report", env={"INVITES_HOME": str(home)})
        assert result.returncode == 1
        assert result.stderr.startswith(f"Error: the embedded database cannot live in {home} (")
        assert result.stderr.endswith(
            "): set INVITES_HOME to a directory of yours, or DATABASE_URL to use a server\n"
        )
        assert reason is None or f"({reason})" in result.stderr
