"""Every report and list table reads at 80 columns on a terminal: the least important columns
are left out first (and named under the table), a code, an address or a number is never cut."""

from __future__ import annotations

import io
import json
import os
import pty
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from beta_invites_cli import activity, history, listing
from beta_invites_cli import report as reports
from beta_invites_cli.cli import history as history_cli
from beta_invites_cli.cli import read, report
from beta_invites_cli.cli.render import write_table
from beta_invites_cli.filters import Filters
from tests.conftest import Invoke, invites_process
from tests.test_report_activity import host, write

__all__ = ["host"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    """An 80-column terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    return Terminal()


def fits(text: str) -> None:
    assert text.strip(), "nothing was written"
    assert "…" not in text
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():  # colour takes no column
        assert len(line) <= 80, f"{len(line)} columns: {line}"


def report_of(conn: psycopg.Connection[Any], tmp_path: Path, by: str) -> reports.Report:
    query = activity.ActivityQuery.load(
        Path(write(tmp_path, "a.sql", "SELECT user_id, submitted_at AS at FROM feedback"))
    )
    return reports.build(
        conn, by=by, filters=Filters(), segments=["press", "creator"], activity=query
    )


@pytest.mark.parametrize("by", ["cohort", "segment", "week"])
def test_the_report_with_activity_fits(
    conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path, terminal: Terminal, by: str
) -> None:
    result = report_of(conn, tmp_path, by)
    report.draw_report(result, Filters(), terminal)
    text = terminal.getvalue()
    fits(text)
    assert "Not shown at this width:" in text
    for row in result.rows:
        assert str(row[by]) in text
        assert f" {row['issued']} " in text
        if row["redemption_rate"] is not None:  # a week with redemptions but no issues has none
            assert f"{float(row['redemption_rate']) * 100:5.1f}%" in text


def test_the_retention_matrix_fits(
    conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path, terminal: Terminal
) -> None:
    query = activity.ActivityQuery.load(
        Path(write(tmp_path, "a.sql", "SELECT user_id, submitted_at AS at FROM feedback"))
    )
    matrix = reports.retention(
        conn, by="cohort", filters=Filters(), segments=[], activity=query, weeks=12
    )
    report.draw_retention(matrix, Filters(), terminal)
    fits(terminal.getvalue())
    plain = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())
    assert "W1 " in plain and "W10" in plain  # the last weeks go first
    assert "Not shown at this width: W12, W11 (--format csv shows every column)" in plain


def test_the_funnel_fits(invites: Invoke, host: dict[str, Any], tmp_path: Path) -> None:
    query = write(tmp_path, "a.sql", "SELECT user_id, submitted_at AS at FROM feedback")
    shown = invites("report", "--funnel", "--activity", query)
    assert shown.exit_code == 0
    fits(shown.stdout)
    assert "% of redeemed" in shown.stdout and "█" in shown.stdout


def test_list_and_history_fit(db_url: str, terminal: Terminal, invites: Invoke) -> None:
    long = "someone.with.a.rather.long.address@example-company.co.uk"
    assert invites("generate", "--cohort", "creator-vinyl-pressing", "--email", long).exit_code == 0
    with psycopg.connect(db_url) as conn:  # server-side cursors live in a transaction
        rows = list(listing.invites(conn, Filters()))
        events = list(history.events(conn, history.EventFilters()))
    write_table(rows, read.LIST_COLUMNS, terminal, title="Invites")
    write_table(events, history_cli.COLUMNS, terminal, title="History")
    text = terminal.getvalue()
    fits(text)
    assert long in text and rows[0]["code"] in text
    assert datetime.now(timezone.utc).strftime("%Y-%m-%d") in text


def test_values_are_never_read_as_markup(invites: Invoke) -> None:
    assert invites("generate --cohort c --email a@example.com").exit_code == 0
    code = json.loads(invites("list", "--format", "json").stdout)[0]["code"]
    assert invites("revoke", code, "--reason", "[/x] embargo [bold]moved").exit_code == 0
    shown = invites("history")
    assert shown.exit_code == 0, shown.stderr
    assert "[/x] embargo [bold]moved" in shown.stdout
    listed = invites("list", "--cohort", "[/c]")
    assert listed.exit_code == 0, listed.stderr


def test_colour_means_something_and_no_color_removes_it(
    monkeypatch: pytest.MonkeyPatch, terminal: Terminal
) -> None:
    rows = [
        {"code": "AAAAAAAAAAAAAAAA", "status": "redeemed"},
        {"code": "B" * 16, "status": "revoked"},
    ]
    columns = [c for c in read.LIST_COLUMNS if c.key in ("code", "status")]
    write_table(rows, columns, terminal)
    coloured = terminal.getvalue()
    assert "\x1b[32mredeemed" in coloured and "\x1b[31mrevoked" in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    write_table(rows, columns, plain)
    assert "redeemed" in plain.getvalue() and "\x1b[3" not in plain.getvalue()


def on_terminal(db_url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """`invites ARGS` as a process whose standard output is an 80-column terminal (a pty)."""
    main, screen = pty.openpty()
    proc = invites_process(
        *args, env={"DATABASE_URL": db_url, "COLUMNS": "80", **(env or {})}, stdout=screen
    )
    os.close(screen)
    shown = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(main)
    _, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    return shown.decode("utf-8").replace("\r\n", "\n")


def test_the_other_tables_fit(db_url: str, invites: Invoke) -> None:
    """generate (with a signup link), extend, revoke, migrate --status and the suppression
    list and check, as commands on a terminal."""
    long = "someone.with.a.rather.long.address@example-company.co.uk"
    link = "https://beta.example-company.co.uk/auth/register?invite={code}&utm_source=invite"
    issued = on_terminal(
        db_url, "generate", "--cohort", "creator-vinyl-pressing", "--email", long,
        "--email", "zoë@example.com", env={"INVITES_SIGNUP_URL": link},
    )  # fmt: skip
    fits(issued)
    code = json.loads(invites("list", "--format", "json").stdout)[0]["code"]
    assert code in issued and long in issued and "Not shown at this width: Link" in issued
    extended = on_terminal(db_url, "extend", code, "--by", "14d")
    fits(extended)
    assert code in extended
    revoked = on_terminal(db_url, "revoke", code, "--reason", "embargo moved", "--yes")
    fits(revoked)
    assert code in revoked
    assert invites("suppress", "add", long, "--reason", "unsubscribed").exit_code == 0
    status = on_terminal(db_url, "migrate", "--status")
    fits(status)
    assert "997_beta_invites_history.sql" in status
    assert "Not shown at this width: ms, SHA-256" in status  # a table, not blocks
    for args in (["suppress", "list"], ["suppress", "check", long]):
        fits(on_terminal(db_url, *args))
