from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from beta_invites_cli.codes import ALPHABET, LENGTH, new_code, normalise
from beta_invites_cli.errors import InvalidCode
from beta_invites_cli.issuing import issue
from beta_invites_cli.recipients import collect
from tests.conftest import Invoke


def rows(
    conn: psycopg.Connection[Any],
    sql: str = "SELECT email, cohort FROM beta_invites ORDER BY created_at, email",
) -> list[tuple[Any, ...]]:
    return conn.execute(sql).fetchall()


def test_codes_are_16_symbols_of_the_alphabet() -> None:
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == LENGTH and set(c) <= set(ALPHABET) for c in codes)
    assert not set(ALPHABET) & set("01IL")
    assert len(ALPHABET) == 32


@pytest.mark.parametrize(
    "typed", ["abcd-efgh-jkmn-pqrs", " ABCD EFGH JKMN PQRS ", "abcdefghjkmnpqrs"]
)
def test_normalise_accepts_how_people_type_codes(typed: str) -> None:
    assert normalise(typed) == "ABCDEFGHJKMNPQRS"


def test_a_zero_is_read_as_the_letter_o() -> None:
    # 0 is never in a code, so a typed 0 can only mean O.
    assert normalise("abcd-efgh-jkmn-p0rs") == "ABCDEFGHJKMNPORS"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (
            "ABCD-EFGH-JKMN-PQR1",
            "invalid character '1' in invite code 'ABCD-EFGH-JKMN-PQR1' (codes never contain 1, I or L)",
        ),
        (
            "ABCD-EFGH-JKMN-PQRS-T",
            "an invite code has 16 characters; 'ABCD-EFGH-JKMN-PQRS-T' has 17",
        ),
        ("ABCD-EFGH-JKMN-PQR!", "invalid character '!' in invite code 'ABCD-EFGH-JKMN-PQR!'"),
        ("ABCD", "an invite code has 16 characters; 'ABCD' has 4"),
    ],
)
def test_normalise_names_the_bad_character(typed: str, message: str) -> None:
    with pytest.raises(InvalidCode) as caught:
        normalise(typed)
    assert str(caught.value) == message


def test_generate_from_csv_with_bom_and_duplicates(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "people.csv").write_text(
        "name,email\nAda,ada@Example.COM\nGrace,grace@example.com\nAda again,ADA@example.com\n",
        encoding="utf-8-sig",
    )
    result = invites(
        "generate", "--cohort", "press-pitchfork", "--recipients", "people.csv", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["email"] for d in data] == ["ada@example.com", "grace@example.com"]
    assert set(data[0]) == {"email", "code", "cohort", "expires_at", "link"}
    assert data[0]["link"] is None
    assert result.stderr.splitlines() == [
        "duplicate: people.csv line 4: ADA@example.com duplicates people.csv line 2; issued once",
        "created 2, skipped 0, invalid 0, duplicates 1",
    ]
    stored = rows(
        conn,
        "SELECT email, code, cohort, sent_at, expires_at - created_at FROM beta_invites ORDER BY email",
    )
    assert [(r[0], r[1], r[2], r[3]) for r in stored] == [
        (d["email"], d["code"], "press-pitchfork", None) for d in data
    ]
    assert all(str(r[4]) == "30 days, 0:00:00" for r in stored)


def test_plain_list_stdin_and_email_options(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    result = invites(
        "generate",
        "--cohort",
        "creator-vinyl-pressing",
        "--recipients",
        "-",
        "--email",
        "x@example.org",
        "--expires-in",
        "14d",
        "--format",
        "csv",
        input="# a comment\na@example.org\n\nb@example.org\n",
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "email,code,cohort,expires_at,link"
    assert [line.split(",")[0] for line in lines[1:]] == [
        "a@example.org",
        "b@example.org",
        "x@example.org",
    ]
    days = rows(conn, "SELECT DISTINCT expires_at - created_at FROM beta_invites")
    assert [str(d[0]) for d in days] == ["14 days, 0:00:00"]


def test_signup_link_and_output_file(invites: Invoke, tmp_path: Path) -> None:
    result = invites(
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        "--format",
        "json",
        "--output",
        "out.json",
        env={"INVITES_SIGNUP_URL": "https://app.example.com/signup?code={code}"},
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    (invite,) = json.loads((tmp_path / "out.json").read_text())
    assert invite["link"] == f"https://app.example.com/signup?code={invite['code']}"


def test_invalid_rows_stop_everything(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "list.txt").write_text(
        "good@example.com\nnot-an-address\n" + "x" * 330 + "@example.com\n"
    )
    result = invites("generate", "--cohort", "press-x", "--recipients", "list.txt")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: list.txt line 2: 'not-an-address': An email address must have an @-sign",
        # A bad value is quoted as a short excerpt: a line may be huge.
        f"Error: list.txt line 3: '{'x' * 59}'… (342 characters): longer than 320 characters",
        "Error: 2 invalid address(es): nothing was issued (--skip-invalid issues the rest)",
    ]
    assert rows(conn) == []
    skipping = invites(
        "generate",
        "--cohort",
        "press-x",
        "--recipients",
        "list.txt",
        "--skip-invalid",
        "--format",
        "csv",
    )
    assert skipping.exit_code == 0
    assert rows(conn) == [("good@example.com", "press-x")]
    assert "created 1, skipped 0, invalid 2, duplicates 0" in skipping.stderr


def test_non_utf8_file_names_the_line(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "latin1.csv").write_bytes(
        "email\na@example.com\nj\xf6rg@example.com\n".encode("latin-1")
    )
    result = invites("generate", "--cohort", "press-x", "--recipients", "latin1.csv")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: latin1.csv: line 3 is not valid UTF-8 (save the file as UTF-8 and try again)\n"
    )
    assert rows(conn) == []


def test_csv_without_email_column(invites: Invoke, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("name,address\nAda,a@example.com\n")
    result = invites("generate", "--cohort", "press-x", "--recipients", "p.csv")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: p.csv: no email column in the header line 1 ('name, address'); "
        "name it `email` (or E-mail, Email Address)\n"
    )


@pytest.mark.parametrize(
    ("cohort", "message"),
    [
        ("x" * 65, "Error: Invalid value for '--cohort': is 65 characters long; at most 64"),
        (" press", "Error: Invalid value for '--cohort': ' press' starts or ends with whitespace"),
        ("press\x07", "Error: Invalid value for '--cohort': contains the control character U+0007"),
    ],
)
def test_bad_cohorts(
    invites: Invoke, conn: psycopg.Connection[Any], cohort: str, message: str
) -> None:
    result = invites("generate", "--cohort", cohort, "--email", "a@example.com")
    assert result.exit_code == 2  # a bad option value is a usage error
    assert result.stderr.splitlines()[-1] == message
    assert rows(conn) == []


def test_cohort_is_stored_exactly(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    cohort = 'press-\'; DROP TABLE beta_invites; -- ünïcødé "q"'
    result = invites("generate", "--cohort", cohort, "--email", "a@example.com", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert rows(conn) == [("a@example.com", cohort)]


def test_sent_by_must_exist(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    missing = invites(
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        "--sent-by",
        "9b2f7c1e-0000-4000-8000-000000000000",
    )
    assert missing.exit_code == 1
    assert (
        missing.stderr
        == "Error: --sent-by 9b2f7c1e-0000-4000-8000-000000000000: no such user in public.users\n"
    )
    garbage = invites(
        "generate", "--cohort", "press-x", "--email", "a@example.com", "--sent-by", "bob"
    )
    assert garbage.exit_code == 2
    assert (
        garbage.stderr.splitlines()[-1]
        == "Error: Invalid value for '--sent-by': 'bob' is not a UUID"
    )
    assert rows(conn) == []
    row = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
    assert row is not None
    ok = invites(
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        "--format",
        "csv",
        env={"INVITES_SENT_BY": str(row[0])},
    )
    assert ok.exit_code == 0, ok.stderr
    assert rows(conn, "SELECT sent_by FROM beta_invites") == [(row[0],)]


def test_people_with_live_or_redeemed_invites_are_skipped(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """INSERT INTO beta_invites (code, email, cohort, used_at, expires_at) VALUES
           ('AAAAAAAAAAAAAAAA', 'Live@Example.com', 'old', NULL, now() + interval '1 day'),
           ('BBBBBBBBBBBBBBBB', 'used@example.com', 'old', now(), now() - interval '1 day'),
           ('CCCCCCCCCCCCCCCC', 'gone@example.com', 'old', NULL, now() - interval '1 day')"""
    )
    args = [
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "live@example.com",
        "--email",
        "used@example.com",
        "--email",
        "gone@example.com",
        "--format",
        "csv",
    ]
    result = invites(*args)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "skipped: live@example.com: already holds a live invite",
        "skipped: used@example.com: already redeemed an invite",
        "created 1, skipped 2, invalid 0, duplicates 0",
    ]
    assert [line.split(",")[0] for line in result.stdout.splitlines()[1:]] == ["gone@example.com"]
    forced = invites(*args, "--force")
    assert "created 3, skipped 0" in forced.stderr
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (7,)


def test_mark_sent(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    invites(
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        "--mark-sent",
        "--format",
        "csv",
    )
    assert conn.execute("SELECT sent_at IS NOT NULL FROM beta_invites").fetchone() == (True,)


def test_code_collisions_are_retried(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first two codes drawn collide with existing rows; the issuer must draw again silently.
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('AAAAAAAAAAAAAAAA', 'x@example.com', 'c'), ('BBBBBBBBBBBBBBBB', 'y@example.com', 'c')"
    )
    drawn = iter(["AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB", "CCCCCCCCCCCCCCCC", "DDDDDDDDDDDDDDDD"])
    monkeypatch.setattr(
        "beta_invites_cli.issuing.new_codes", lambda n: [next(drawn) for _ in range(n)]
    )
    found = collect([], ("a@example.com", "b@example.com"))
    result = issue(conn, found.recipients, cohort="press-x")
    assert sorted((i.email, i.code) for i in result.created) == [
        ("a@example.com", "CCCCCCCCCCCCCCCC"),
        ("b@example.com", "DDDDDDDDDDDDDDDD"),
    ]


def test_concurrent_issuers_never_give_anyone_two_codes(db_url: str) -> None:
    people = [f"person{i}@example.com" for i in range(300)]
    found = collect([], tuple(people))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                barrier.wait()
                issue(own, found.recipients, cohort="press-x")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(db_url) as conn:
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT lower(email)) FROM beta_invites"
        ).fetchone()
    assert counts == (300, 300)
