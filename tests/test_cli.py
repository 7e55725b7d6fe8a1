"""The command line as a new user meets it: help, exit statuses, quiet runs, tables, bad input."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest

from beta_invites_cli import __version__
from beta_invites_cli.cli import cli
from beta_invites_cli.cli.render import Column, write_table
from beta_invites_cli.exits import ExitCode
from tests.conftest import Invoke, run_invites

ROOT = Path(__file__).resolve().parent.parent


def all_commands() -> list[list[str]]:
    """Every command and subcommand, found through the lazy command map."""
    found: list[list[str]] = []
    context = click.Context(cli)

    def walk(group: click.Group, path: list[str]) -> None:
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            assert command is not None, name
            found.append([*path, name])
            if isinstance(command, click.Group):
                walk(command, [*path, name])

    walk(cli, [])
    return found


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_dash_h_is_help_everywhere(path: list[str]) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, [*path, "-h"])
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: cli {' '.join(path)} ")
    assert "Example" in result.output


def test_the_exit_code_table_in_the_readme_is_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)
    assert [int(code) for code in rows] == [int(code) for code in ExitCode]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--since", "yesterday"], "Invalid value for '--since'"),
        (["report", "--by", "month"], "Invalid value for '--by'"),
        (["show"], "Missing argument 'CODE'"),
        (["extend", "ABCDEFGHJKMNPQRS"], "Missing option '--by'"),
        (["extend", "ABCDEFGHJKMNPQRS", "--by", "soon"], "Invalid value for '--by'"),
        (
            ["generate", "--cohort", "x", "--email", "a@example.com", "--expires-in", "99999999d"],
            "longer than 10 years",
        ),
        (["send", "--cohort", "x", "--rate", "1e-300"], "Invalid value for '--rate'"),
        (["list", "--status", "lost"], "Invalid value for '--status'"),
        (["expire", "--grace", "-1d"], "Invalid value for '--grace'"),
        (["resend"], "give invite codes or --cohort"),
        (["generate", "--cohort", "x"], "no recipients"),
        *(
            (
                [command, "--since", "2026-12-01", "--until", "2026-11-30"],
                "Error: --until 2026-11-30 is before --since 2026-12-01: nothing can match",
            )
            for command in ("list", "report", "history")
        ),
    ],
)
def test_usage_errors_exit_2(invites: Invoke, args: list[str], message: str) -> None:
    result = invites(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.output


def test_output_dash_is_standard_output(
    invites: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    issued = invites("generate --cohort press-x --email a@example.com --output - --format csv")
    assert issued.exit_code == 0, issued.stderr
    assert issued.stdout.startswith("email,code,cohort,expires_at,link\na@example.com,")
    page = invites("report --format html --output -")
    assert page.exit_code == 0, page.stderr
    assert page.stdout.startswith("<!DOCTYPE html>")
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_quiet_keeps_data_and_errors(invites: Invoke) -> None:
    loud = invites("generate", "--cohort", "c", "--email", "a@example.com", "--format", "csv")
    assert loud.stderr == "created 1, skipped 0, invalid 0, duplicates 0\n"
    quiet = invites(
        "-q", "generate", "--cohort", "c", "--email", "b@example.com", "--format", "csv"
    )
    assert quiet.stderr == "" and quiet.stdout.count("\n") == 2
    failing = invites("--quiet", "show", "ZZZZZZZZZZZZZZZZ")
    assert failing.exit_code == 1
    assert failing.stderr == "Error: ZZZZZZZZZZZZZZZZ is not an invite code we issued\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


ROWS = [
    {
        "code": "RCVVDH8ABCDEFGHJ",
        "email": "someone.with.a.long.name@example.com",
        "cohort": "creator-vinyl-pressing",
        "rate": 0.123456,
    }
]
COLUMNS = [
    Column("code", "Code"),
    Column("email", "Email"),
    Column("cohort", "Cohort"),
    Column("rate", "Rate", numeric=True),
]


@pytest.mark.parametrize("width", ["20", "40", "80", "abc", ""])
def test_a_narrow_terminal_never_cuts_a_value(monkeypatch: pytest.MonkeyPatch, width: str) -> None:
    monkeypatch.setenv("COLUMNS", width)
    out = Terminal()
    write_table(ROWS * 3, COLUMNS, out, title="Invites")
    text = out.getvalue()
    for value in (
        "RCVVDH8ABCDEFGHJ",
        "someone.with.a.long.name@example.com",
        "creator-vinyl-pressing",
        "0.123456",
    ):
        assert text.count(value) == 3, text
    assert "…" not in text


@pytest.mark.parametrize("width", ["30", "abc", "-5"])
def test_piped_tables_are_as_wide_as_their_content(
    monkeypatch: pytest.MonkeyPatch, width: str
) -> None:
    monkeypatch.setenv("COLUMNS", width)
    out = io.StringIO()
    write_table(ROWS, COLUMNS, out)
    assert "someone.with.a.long.name@example.com" in out.getvalue()
    assert "…" not in out.getvalue()


def test_bytes_that_are_not_utf8(db_url: str, tmp_path: Path) -> None:
    result = run_invites(
        b"generate",
        b"--cohort",
        b"press-\xff",
        b"--email",
        b"a@example.com",
        env={"DATABASE_URL": db_url},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr == "Error: argument 3 is not valid UTF-8: b'press-\\xff'\n"
    # The environment reaches Python the same way: a lone surrogate stands for the bad byte.
    env = {"DATABASE_URL": db_url, "INVITES_FROM": "caf\udcff@example.com"}
    bad_env = run_invites("list", env=env, cwd=tmp_path)
    assert bad_env.returncode == 2
    assert bad_env.stderr == "Error: the environment variable INVITES_FROM is not valid UTF-8\n"


def test_ctrl_c_while_starting_is_not_a_traceback(db_url: str, tmp_path: Path) -> None:
    # As the `invites` script does: import the entry point, then call it. The child says when
    # it has the entry point: a Ctrl-C before that lands in the interpreter's own start-up (or in
    # the two-line script pip writes), which no program can guard. After it, at any moment, it
    # must not be a traceback.
    script = (
        "import sys\n"
        "from beta_invites_cli.console import main\n"
        "sys.stdout.write('started\\n'); sys.stdout.flush()\n"
        "sys.argv = ['invites', 'report']\n"
        "main()\n"
    )
    for delay in (0.0, 0.05, 0.1, 0.2, 0.35):
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": db_url},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err
        # 130 when interrupted; 0 when the report was done first; killed by the signal itself
        # when it arrives while Python is already shutting down after the command finished.
        assert proc.returncode in (0, 130, -signal.SIGINT), err


def test_ctrl_c_during_the_imports(tmp_path: Path) -> None:
    """Deterministically: Ctrl-C arrives while the command line is still being imported."""
    script = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def interrupted(name, *args, **kwargs):\n"
        "    if name == 'click':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupted\n"
        "sys.argv = ['invites', 'report']\n"
        "from beta_invites_cli.console import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert (proc.returncode, proc.stderr) == (130, "\ninterrupted\n")


def test_ctrl_c_inside_a_finaliser_is_not_a_traceback(tmp_path: Path) -> None:
    """Deterministically: Ctrl-C lands while Python runs a finaliser (as the import system's
    lock callbacks), where it cannot be raised; Python would print "Exception ignored ...
    Traceback" and go on."""
    script = (
        "import sys\n"
        "import beta_invites_cli.cli as cli\n"
        "class Finaliser:\n"
        "    def __del__(self):\n"
        "        raise KeyboardInterrupt\n"
        "command = cli.main\n"
        "def interrupted():\n"
        "    Finaliser()\n"
        "    command()\n"
        "cli.main = interrupted\n"
        "sys.argv = ['invites', '--version']\n"
        "from beta_invites_cli.console import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        130,
        f"invites, version {__version__}\n",
        "\ninterrupted\n",
    )


def test_database_url_from_a_file_or_stdin(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "url").write_text(db_url + "\n")
    from click.testing import CliRunner

    runner = CliRunner()
    from_file = runner.invoke(cli, ["--database-url-file", "url", "report"])
    assert from_file.exit_code == 0, from_file.output
    from_stdin = runner.invoke(cli, ["--database-url-file", "-", "report"], input=db_url + "\n")
    assert from_stdin.exit_code == 0, from_stdin.output
    from_env = runner.invoke(cli, ["report"], env={"DATABASE_URL_FILE": str(tmp_path / "url")})
    assert from_env.exit_code == 0, from_env.output
    missing = runner.invoke(cli, ["--database-url-file", "nope", "report"])
    assert missing.exit_code == 1
    assert missing.stderr == "Error: --database-url-file nope: No such file or directory\n"


def test_stale_scratch_directories_are_removed(tmp_path: Path) -> None:
    from tests import scratch

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(os.environ.get("TMPDIR", "/tmp")) / f"{scratch.PREFIX}{dead.pid}-zzz"
    stale.mkdir()
    (stale / "file").write_text("x")
    scratch.sweep_stale()
    assert not stale.exists()


def test_outbox_messages_of_anonymised_invites_are_removed(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    for name in ("old", "new"):
        result = invites(
            "send", "--cohort", "c", "--email", f"{name}@example.com", "--outbox", "mail"
        )
        assert result.exit_code == 0, result.stderr
    conn.execute(
        "UPDATE beta_invites SET expires_at = now() - interval '1 day' WHERE email = 'old@example.com'"
    )
    old_code = conn.execute(
        "SELECT code FROM beta_invites WHERE email = 'old@example.com'"
    ).fetchone()
    assert old_code is not None
    (tmp_path / "mail" / "HALFWRITTENAAAAA.eml.tmp").write_text("To: x@example.com")
    swept = invites("expire", "--format", "json")
    assert swept.exit_code == 0, swept.stderr
    assert '"outbox_messages_removed": 1' in swept.stdout
    left = sorted(p.name for p in (tmp_path / "mail").iterdir())
    assert f"{old_code[0]}.eml" not in left and len(left) == 1
    everything = "".join(p.read_text() for p in (tmp_path / "mail").iterdir())
    assert "old@example.com" not in everything and "new@example.com" in everything


def test_invites_debug_shows_the_traceback(db_url: str) -> None:
    plain = run_invites("show", "ZZZZZZZZZZZZZZZZ", env={"DATABASE_URL": db_url})
    assert (plain.returncode, plain.stderr) == (
        1,
        "Error: ZZZZZZZZZZZZZZZZ is not an invite code we issued\n",
    )
    debug = run_invites(
        "show", "ZZZZZZZZZZZZZZZZ", env={"DATABASE_URL": db_url, "INVITES_DEBUG": "1"}
    )
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "UnknownCode: ZZZZZZZZZZZZZZZZ is not an invite code we issued" in debug.stderr


def test_every_command_and_option_is_in_the_readme() -> None:
    """The README is the manual: a command or option missing from it is a test failure."""
    readme = (ROOT / "README.md").read_text()
    context = click.Context(cli)
    missing = [
        f"global {p.opts[0]}"
        for p in cli.params
        if p.opts[0] not in readme and p.opts[0].startswith("--")
    ]
    for path in all_commands():
        group: Any = cli
        for name in path:
            command = group.get_command(context, name)
            group = command
        if f"invites {' '.join(path)}" not in readme:
            missing.append(f"invites {' '.join(path)}")
        for param in command.params:
            long = [o for o in param.opts if o.startswith("--")]
            if long and long[0] not in readme:
                missing.append(f"invites {' '.join(path)} {long[0]}")
    assert missing == []
