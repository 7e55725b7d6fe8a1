"""Standard output that cannot take what is written: one line says so (and, after a change
was committed, that the change was made); a closed pipe ends quietly."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg
import pytest

from tests.conftest import Invoke, invites_process

FULL = "could not write the output (No space left on device)"


def to_full_disk(db_url: str, *args: str) -> tuple[int, str]:
    """`invites ARGS` with standard output on /dev/full (every write fails with ENOSPC)."""
    with open("/dev/full", "w") as full:
        proc = invites_process(*args, env={"DATABASE_URL": db_url}, stdout=full)
        _, errors = proc.communicate(timeout=60)
    return proc.returncode, errors


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--format", "json"],
        ["list", "--format", "csv"],
        ["report"],
        ["history", "--format", "jsonl"],
        ["show", "AAAA-AAAA-AAAA-AAAA", "--format", "json"],
        ["--version"],
    ],
)
def test_a_full_disk_is_one_line(db_url: str, invites: Invoke, args: list[str]) -> None:
    assert invites("generate --cohort press-x --email ada@example.com").exit_code == 0
    if args[0] == "show":
        code = invites("list", "--format", "csv").stdout.splitlines()[1].split(",")[0]
        args = ["show", code, "--format", "json"]
    assert to_full_disk(db_url, *args) == (1, f"Error: {FULL}\n")


def test_what_was_committed_is_said(
    db_url: str, invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    status, errors = to_full_disk(
        db_url, "generate", "--cohort", "press-x", "--email", "a@example.com"
    )
    assert (status, errors) == (
        1,
        "Error: 1 invite(s) were issued, but the output could not be written (No space left "
        "on device): `invites list --cohort press-x --format csv` lists them\n",
    )
    code = conn.execute("SELECT code FROM beta_invites WHERE cohort = 'press-x'").fetchone()
    assert code is not None
    csv = ["generate", "--cohort", "press-y", "--email", "b@example.com", "--format", "csv"]
    assert to_full_disk(db_url, *csv)[1].startswith("Error: 1 invite(s) were issued, but")
    assert to_full_disk(db_url, "extend", code[0], "--by", "1d") == (
        1,
        "Error: 1 invite(s) were extended, but the output could not be written "
        "(No space left on device)\n",
    )
    assert to_full_disk(db_url, "revoke", code[0]) == (
        1,
        "Error: 1 invite(s) were revoked, but the output could not be written "
        "(No space left on device)\n",
    )
    assert conn.execute(
        "SELECT count(*) FILTER (WHERE revoked_at IS NOT NULL), count(*) FROM beta_invites"
    ).fetchone() == (1, 2)


def test_a_closed_pipe_ends_quietly(db_url: str, invites: Invoke) -> None:
    people = [arg for i in range(3000) for arg in ("--email", f"p{i}@example.com")]
    assert invites("generate", "--cohort", "press-x", *people).exit_code == 0
    # `invites list --format csv | head -c 100`: far more than a pipe holds, read 100 bytes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "beta_invites_cli", "list", "--format", "csv"],
        env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100).startswith(b"code,email,cohort")
    proc.stdout.close()
    errors = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert errors == b""
