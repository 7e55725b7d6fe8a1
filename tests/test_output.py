"""Standard output that cannot take what is written: one line says so (and, after a change
was committed, that the change was made); a closed pipe ends quietly."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
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


# -- --output never replaces what it points at ----------------------------------------------------

GENERATE = ["generate", "--cohort", "press-x", "--email", "ada@example.com", "--format", "csv"]


def null_device(where: Path) -> Path:
    """A character device like /dev/null (the same major and minor numbers), made here: a
    test that regressed would replace this one, never the machine's."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root (CI is root)")
    path = where / "null"
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


@pytest.mark.parametrize("command", [GENERATE, ["report", "--format", "html"]])
def test_a_device_is_written_through_not_replaced(
    invites: Invoke, tmp_path: Path, command: list[str]
) -> None:
    device = null_device(tmp_path)
    before = os.stat(device)
    result = invites(*command, "--output", str(device))
    assert result.exit_code == 0, result.stderr
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".null")] == []


def test_a_fifo_is_written_through(invites: Invoke, tmp_path: Path) -> None:
    fifo = tmp_path / "codes.fifo"
    os.mkfifo(fifo)
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = invites(*GENERATE, "--output", str(fifo))
    reader.join(timeout=10)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert read[0].decode().splitlines()[0] == "email,code,cohort,expires_at,link"
    assert "ada@example.com" in read[0].decode()


def test_a_symlink_is_written_through_keeping_mode_and_owner(
    invites: Invoke, tmp_path: Path
) -> None:
    real_dir = tmp_path / "exports"
    real_dir.mkdir()
    real = real_dir / "codes.csv"
    real.write_text("old content\n")
    os.chmod(real, 0o640)
    owner = (1234, 5678) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        os.chown(real, *owner)
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    result = invites(*GENERATE, "--output", str(link))
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "ada@example.com" in real.read_text()
    info = os.stat(real)
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, *owner)
    # The temporary file was made beside the real file, and is gone.
    assert sorted(p.name for p in real_dir.iterdir()) == ["codes.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "latest.csv"]


def test_a_dangling_symlink_creates_its_target(invites: Invoke, tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    link = tmp_path / "latest.csv"
    link.symlink_to(tmp_path / "exports" / "new.csv")
    assert invites(*GENERATE, "--output", str(link)).exit_code == 0
    assert link.is_symlink() and "ada@example.com" in (tmp_path / "exports" / "new.csv").read_text()


def test_a_new_file_gets_the_umask_mode(db_url: str, tmp_path: Path) -> None:
    script = (
        "import os, sys; os.umask(0o027); sys.argv = ['invites'] + sys.argv[1:];"
        "from beta_invites_cli.cli import main; main()"
    )
    out = tmp_path / "codes.csv"
    done = subprocess.run(
        [sys.executable, "-c", script, *GENERATE, "--output", str(out)],
        env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


def test_dev_stdout_is_standard_output(db_url: str, tmp_path: Path) -> None:
    proc = invites_process(*GENERATE, "--output", "/dev/stdout", env={"DATABASE_URL": db_url})
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    assert out.splitlines()[0].startswith("email,code,cohort") and "ada@example.com" in out
    assert os.path.islink("/dev/stdout")


def test_a_socket_is_one_line(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        result = invites(*GENERATE, "--output", str(path))
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: --output {path}: cannot write there (No such device or address)\n",
    )
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)
