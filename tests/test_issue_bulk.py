"""Issuing in bulk: a million people in bounded memory, spreadsheets that cross read chunks,
and an output that is written before anything is committed."""

from __future__ import annotations

import codecs
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from beta_invites_cli.intake import prepare
from beta_invites_cli.issuing import Output, issue
from tests.conftest import Invoke, run_with_full_disk

# Runs `invites ARGS` and prints the peak resident size of its own address space (VmHWM) last
# on stderr: ru_maxrss would also count the test runner, which a child inherits across exec.
PEAK = (
    "import runpy, sys; sys.argv = ['invites', *sys.argv[1:]];\n"
    "try:\n runpy.run_module('beta_invites_cli', run_name='__main__')\n"
    "finally:\n"
    " peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    " print(peak.split()[1], file=sys.stderr)"
)


@pytest.mark.slow
def test_a_million_people_are_issued_in_bounded_memory(
    db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('AAAAAAAAAAAAAAAA', 'P5@example.com', 'old')"
    )
    people = tmp_path / "people.csv"
    with people.open("w") as out:
        out.write("email\n")
        out.writelines(f"p{i}@example.com\n" for i in range(1_000_000))
        out.write("P1@Example.com\n")  # line 1,000,002 names the person on line 3 again
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK,
            "generate",
            "--cohort",
            "bulk",
            "--recipients",
            people.name,
            "--output",
            "codes.csv",
        ],
        env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    *messages, peak = proc.stderr.splitlines()
    assert messages == [
        "duplicate: people.csv line 1000002: P1@example.com duplicates people.csv line 3; "
        "issued once",
        "skipped: p5@example.com: already holds a live invite",
        "created 999999, skipped 1, invalid 0, duplicates 1",
        "wrote 999999 invite(s) to codes.csv",
    ]
    # Every person held in memory would take about 1 KB each; the spill keeps it near start-up.
    assert int(peak) < 200 * 1024, f"peak {int(peak) // 1024} MiB"
    with (tmp_path / "codes.csv").open() as written:
        rows = list(csv.DictReader(written))
    assert len(rows) == 999_999
    assert rows[0]["email"] == "p0@example.com" and rows[-1]["email"] == "p999999@example.com"
    stored = conn.execute(
        "SELECT count(*), count(DISTINCT code) FROM beta_invites WHERE cohort = 'bulk'"
    ).fetchone()
    assert stored == (999_999, 999_999)
    sample = {r["code"]: r["email"] for r in rows[::50_000]}
    found = dict(
        conn.execute(
            "SELECT code, email FROM beta_invites WHERE code = ANY(%s)", (list(sample),)
        ).fetchall()
    )
    assert found == sample


def test_an_output_that_cannot_be_written_issues_nothing(
    db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # The spilled list of 20 people fits in 2 KiB, their output with its signup links does not.
    (tmp_path / "people.txt").write_text("".join(f"p{i}@example.com\n" for i in range(20)))
    proc = run_with_full_disk(
        *["generate", "--cohort", "press-x", "--recipients", "people.txt", "--output", "codes.csv"],
        limit=2048,
        db_url=db_url,
        cwd=tmp_path,
        env={"INVITES_SIGNUP_URL": "https://beta.example.com/signup?invite={code}&utm=invite"},
    )
    assert proc.returncode == 1
    assert (
        proc.stderr
        == "Error: codes.csv could not be written (File too large): nothing was issued\n"
    )
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.txt"]  # no codes.csv, no .tmp


def test_a_code_collision_writes_the_output_again(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('BBBBBBBBBBBBBBBB', 'x@example.com', 'c')"
    )
    # Ada's first code is free, Grace's is taken: only Grace draws again.
    drawn = iter([["AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB"], ["CCCCCCCCCCCCCCCC"]])
    monkeypatch.setattr("beta_invites_cli.intake.new_codes", lambda n: next(drawn))
    monkeypatch.setattr("beta_invites_cli.issuing.new_codes", lambda n: next(drawn))
    people = [("--email", "ada@example.com"), ("--email", "grace@example.com")]
    request = prepare("press-x", [], people, expires_in=None, sent_by=None, skip_invalid=False)
    written = io.BytesIO()
    with issue(conn, request, output=Output("jsonl", written, "https://b.example/{code}")) as done:
        assert done.created == 2
    lines = [json.loads(line) for line in written.getvalue().decode().splitlines()]
    assert [(r["email"], r["code"], r["link"]) for r in lines] == [
        ("ada@example.com", "AAAAAAAAAAAAAAAA", "https://b.example/AAAAAAAAAAAAAAAA"),
        ("grace@example.com", "CCCCCCCCCCCCCCCC", "https://b.example/CCCCCCCCCCCCCCCC"),
    ]
    stored = conn.execute(
        "SELECT email, code FROM beta_invites WHERE cohort = 'press-x' ORDER BY email"
    ).fetchall()
    assert stored == [
        ("ada@example.com", "AAAAAAAAAAAAAAAA"),
        ("grace@example.com", "CCCCCCCCCCCCCCCC"),
    ]


def test_duplicates_within_a_file_compare_as_addresses_do(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "people.txt").write_text(
        "ÅSA@Example.com\n  åsa@example.COM  \nzoë@example.com\nZOË@example.com\n"
    )
    result = invites("generate --cohort press-x --recipients people.txt --format csv")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "duplicate: people.txt line 2: åsa@example.com duplicates people.txt line 1; issued once",
        "duplicate: people.txt line 4: ZOË@example.com duplicates people.txt line 3; issued once",
        "created 2, skipped 0, invalid 0, duplicates 2",
    ]
    assert conn.execute("SELECT email FROM beta_invites ORDER BY email").fetchall() == [
        ("zoë@example.com",),
        ("ÅSA@example.com",),
    ]


def test_a_cohort_with_backslashes_and_quotes_is_stored_as_typed(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    cohort = 'press-\\N-"quoted"\\t'
    result = invites(
        "generate", "--cohort", cohort, "--email", "ada@example.com", "--format", "csv"
    )
    assert result.exit_code == 0, result.stderr
    assert next(csv.DictReader(io.StringIO(result.stdout)))["cohort"] == cohort
    assert conn.execute("SELECT cohort FROM beta_invites").fetchone() == (cohort,)


def test_a_big_spreadsheet_export_across_read_chunks(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # 6,000 rows (about 300 KB: several 64 KiB read chunks), as a spreadsheet in a `;` locale
    # writes them: CRLF line ends, and a quoted name holding the delimiter on every 7th row.
    rows = []
    for i in range(6_000):
        name = f'"Lovelace; Ada {i}"' if i % 7 == 0 else f"Person {i}"
        rows.append(f"{name};p{i}@example.com;{i}\r\n")
    (tmp_path / "people.csv").write_bytes(
        ("\ufeffName;E-mail;Row\r\n" + "".join(rows)).encode("utf-8")
    )
    result = invites("generate --cohort press-x --recipients people.csv --output codes.csv")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == "created 6000, skipped 0, invalid 0, duplicates 0"
    with (tmp_path / "codes.csv").open() as written:
        emails = [row["email"] for row in csv.DictReader(written)]
    assert emails == [f"p{i}@example.com" for i in range(6_000)]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_unicode_text_export_in_utf16(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path, encoding: str
) -> None:
    # Spreadsheets save "Unicode text" as UTF-16 with a BOM, tab-separated; 3,000 rows cross
    # read chunks (a chunk may end inside a character).
    rows = "".join(f"Zoë {i}\tzoë{i}@exämple.com\r\n" for i in range(3_000))
    data = ("Name\tE-mail\r\n" + rows).encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    (tmp_path / "people.txt").write_bytes(data)
    result = invites("generate --cohort press-x --recipients people.txt --output codes.csv")
    assert result.exit_code == 0, result.stderr
    stored = conn.execute("SELECT email FROM beta_invites ORDER BY created_at").fetchall()
    assert sorted(e for (e,) in stored) == sorted(f"zoë{i}@exämple.com" for i in range(3_000))
    # A broken UTF-16 file names its line, and issues nothing.
    (tmp_path / "broken.txt").write_bytes(
        "email\na@example.com\n".encode("utf-16") + b"\x00\xd8A\x00"
    )
    broken = invites("generate --cohort press-y --recipients broken.txt")
    assert (broken.exit_code, broken.stderr) == (
        1,
        "Error: broken.txt: line 3 is not valid UTF-16 (save the file as UTF-8 and try again)\n",
    )
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE cohort = 'press-y'"
    ).fetchone() == (0,)


def test_one_column_with_trailing_delimiters(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # Spreadsheets pad rows with empty cells: `ada@example.com,,` is one address, not a typo.
    (tmp_path / "people.csv").write_text("email\nada@example.com,,\ngrace@example.com\n,,\n")
    result = invites("generate --cohort press-x --recipients people.csv --format csv")
    assert result.exit_code == 0, result.stderr
    assert conn.execute("SELECT email FROM beta_invites ORDER BY email").fetchall() == [
        ("ada@example.com",),
        ("grace@example.com",),
    ]
