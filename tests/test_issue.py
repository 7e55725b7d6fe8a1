from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from beta_invites_cli.codes import ALPHABET, LENGTH, new_code, new_codes, normalise
from beta_invites_cli.errors import InvalidCode
from beta_invites_cli.intake import prepare
from beta_invites_cli.issuing import issue
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


def test_every_symbol_is_equally_likely_in_every_position() -> None:
    # 20,000 codes: each symbol is expected 625 times per position (standard deviation 25), so
    # a skew such as a modulus that misses a symbol, or favours some, falls far outside.
    codes = new_codes(20_000)
    assert len(set(codes)) == 20_000
    for position in range(LENGTH):
        counts = Counter(code[position] for code in codes)
        assert set(counts) == set(ALPHABET)
        assert min(counts.values()) > 500 and max(counts.values()) < 750


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

    def draw(n: int) -> list[str]:
        return [next(drawn) for _ in range(n)]

    monkeypatch.setattr("beta_invites_cli.intake.new_codes", draw)  # the first draw
    monkeypatch.setattr("beta_invites_cli.issuing.new_codes", draw)  # after a collision
    request = prepare(
        "press-x",
        [],
        [("--email", "a@example.com"), ("--email", "b@example.com")],
        expires_in=None,
        sent_by=None,
        skip_invalid=False,
    )
    with issue(conn, request) as issued:
        created = [(r["email"], r["code"]) for r in issued.records(None)]
    assert created == [("a@example.com", "CCCCCCCCCCCCCCCC"), ("b@example.com", "DDDDDDDDDDDDDDDD")]
    assert rows(conn, "SELECT email, code FROM beta_invites WHERE cohort = 'press-x'") == created


def test_concurrent_issuers_never_give_anyone_two_codes(db_url: str) -> None:
    people = [f"person{i}@example.com" for i in range(300)]
    request = prepare(
        "press-x",
        [],
        [("--email", p) for p in people],
        expires_in=None,
        sent_by=None,
        skip_invalid=False,
    )
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                barrier.wait()
                with issue(own, request):
                    pass
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


# -- files as spreadsheets and people write them ----------------------------------------------------


def test_a_stray_quote_stops_everything_naming_its_line(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    lines = [f"Person {i},person{i}@example.com" for i in range(1000)]
    lines[10] = '"Person 10,person10@example.com'  # the quote is never closed
    (tmp_path / "people.csv").write_text("name,email\n" + "\n".join(lines) + "\n")
    result = invites("generate", "--cohort", "press-x", "--recipients", "people.csv")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: people.csv: line 12: malformed CSV: "
        "a quote opened here is never closed (a stray quote?)\n"
    )
    # ... and a quote closed many lines later swallows those lines: also an error.
    lines[20] = 'Person 20,"person20@example.com'
    lines[30] = 'x",person30@example.com'
    lines[10] = "Person 10,person10@example.com"
    (tmp_path / "people.csv").write_text("name,email\n" + "\n".join(lines) + "\n")
    swallowed = invites("generate", "--cohort", "press-x", "--recipients", "people.csv")
    assert swallowed.exit_code == 1
    assert swallowed.stderr == (
        "Error: people.csv: line 22: a quoted field runs on to line 32; a stray quote? "
        "(a record must fit on one line)\n"
    )
    assert rows(conn) == []


def test_a_huge_line_is_one_clear_error(invites: Invoke, tmp_path: Path) -> None:
    for length in (100_000, 5_000_000):
        (tmp_path / "big.csv").write_bytes(
            b"email\n" + b"x" * length + b"@example.com\nb@example.com\n"
        )
        result = invites("generate", "--cohort", "press-x", "--recipients", "big.csv")
        assert result.exit_code == 1
        assert result.stderr == (
            "Error: big.csv: line 2 is longer than 65,536 characters: not a list of email addresses\n"
        )
    (tmp_path / "quoted.csv").write_bytes(b'email\n"' + b"x\n" * 100_000)
    quoted = invites("generate", "--cohort", "press-x", "--recipients", "quoted.csv")
    assert quoted.exit_code == 1
    assert quoted.stderr == (
        "Error: quoted.csv: line 2: malformed CSV: a quote opened here is never closed (a stray quote?)\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("\ufeffemail\nada@example.com\n", ["ada@example.com"]),
        (
            "\ufeffada@example.com\r\ngrace@example.com\r\n",
            ["ada@example.com", "grace@example.com"],
        ),
        ("Name;E-mail\nAda;ada@example.com\n", ["ada@example.com"]),
        ("First name,Last name,Email Address\nAda,L,ada@example.com\n", ["ada@example.com"]),
        ("E-Mail-Adresse\tName\nada@example.com\tAda\n", ["ada@example.com"]),
        ('"Name","EMAIL"\n"Ada ""the"" first","ada@example.com"\n', ["ada@example.com"]),
    ],
)
def test_spreadsheet_exports(
    invites: Invoke,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
    content: str,
    expected: list[str],
) -> None:
    (tmp_path / "export.csv").write_text(content, encoding="utf-8")
    result = invites(
        "generate", "--cohort", "press-x", "--recipients", "export.csv", "--format", "csv"
    )
    assert result.exit_code == 0, result.stderr
    assert sorted(r[0] for r in rows(conn)) == expected


def test_an_address_without_a_dot_in_its_domain_is_refused(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    result = invites("generate", "--cohort", "press-x", "--email", "ada@example")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --email: 'ada@example': ")
    assert rows(conn) == []


def test_addresses_compare_alike_whatever_the_collation(admin_url: str, invites: Invoke) -> None:
    """In a database created with the C collation lower() folds only ASCII; our key does not."""
    from tests.conftest import url_for

    name = f"invites_c_{id(invites)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8 LC_COLLATE "C" LC_CTYPE "C"'
        )
    try:
        url = url_for(admin_url, name)
        run = Invoke(url)
        assert run("migrate", "--create-users-table").exit_code == 0
        first = run(
            "generate", "--cohort", "press-x", "--email", "ÅSA@example.com", "--format", "csv"
        )
        assert first.exit_code == 0, first.stderr
        second = run(
            "generate", "--cohort", "press-y", "--email", "åsa@example.com", "--format", "csv"
        )
        assert second.exit_code == 0, second.stderr
        assert "skipped: åsa@example.com: already holds a live invite" in second.stderr
        listed = run("list", "--email", "åsa@EXAMPLE.com", "--format", "csv")
        assert listed.stdout.count("\n") == 2
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (1,)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_sql_key_is_the_python_key(conn: psycopg.Connection[Any]) -> None:
    from beta_invites_cli.emailkey import LOWER, UPPER, key

    samples = [UPPER, "ÅSA@Example.COM", "İstanbul@x.example", "plain@example.com", "ẞ@x.example"]
    for text in samples:
        row = conn.execute("SELECT public.invites_email_key(%s)", (text,)).fetchone()
        assert row == (key(text),)
    assert key(UPPER) == LOWER


# -- output -------------------------------------------------------------------------------------


def test_output_format_follows_the_extension(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    for name in ("codes.csv", "codes.json", "codes.jsonl"):
        result = invites(
            "generate", "--cohort", name, "--email", f"{name}@example.com", "--output", name
        )
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "codes.csv").read_text().startswith("email,code,cohort,expires_at,link\n")
    assert json.loads((tmp_path / "codes.json").read_text())[0]["email"] == "codes.json@example.com"
    assert (
        json.loads((tmp_path / "codes.jsonl").read_text().splitlines()[0])["cohort"]
        == "codes.jsonl"
    )
    forced = invites(
        "generate",
        "--cohort",
        "t",
        "--email",
        "t@example.com",
        "--output",
        "t.csv",
        "--format",
        "json",
    )
    assert forced.exit_code == 0
    assert json.loads((tmp_path / "t.csv").read_text())[0]["email"] == "t@example.com"


def test_an_unwritable_output_issues_nothing(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    missing = invites(
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        "--output",
        "no/such/dir/codes.csv",
    )
    assert missing.exit_code == 1
    assert missing.stderr == (
        "Error: --output no/such/dir/codes.csv: cannot write there (No such file or directory)\n"
    )
    (tmp_path / "adir").mkdir()
    directory = invites(
        "generate", "--cohort", "press-x", "--email", "a@example.com", "--output", "adir"
    )
    assert directory.exit_code in (1, 2)
    assert rows(conn) == []
    # Nothing half-written is left behind either.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_thousands_of_rows_are_never_drawn_as_a_table(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "many.txt").write_text("".join(f"p{i}@example.com\n" for i in range(1500)))
    result = invites("generate", "--cohort", "press-x", "--recipients", "many.txt")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "1500 invites are too many to draw as a table: add --output codes.csv, "
        "or run `invites list --cohort press-x --format csv`"
    )
    assert rows(conn, "SELECT count(*) FROM beta_invites") == [(1500,)]


def test_csv_cells_never_start_a_formula(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    result = invites(
        "generate", "--cohort", "=HYPERLINK(1)", "--email", "-x@example.com", "--format", "csv"
    )
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()[1:]
    assert line.startswith("'-x@example.com,") and ",'=HYPERLINK(1)," in line
    listed = invites("list", "--format", "csv").stdout.splitlines()[1]
    assert ",'-x@example.com,'=HYPERLINK(1)," in listed
    report = invites("report", "--format", "csv").stdout.splitlines()[1]
    assert report.startswith("'=HYPERLINK(1),")
    # The database keeps the values exactly; JSON shows them as they are.
    assert rows(conn) == [("-x@example.com", "=HYPERLINK(1)")]
    assert json.loads(invites("list", "--format", "json").stdout)[0]["cohort"] == "=HYPERLINK(1)"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "https://beta.example.com/signup",
            "must contain {code}: 'https://beta.example.com/signup'",
        ),
        ("htps://beta.example.com/j/{code}", "must be an http:// or https:// URL"),
        ("javascript:alert('{code}')", "must be an http:// or https:// URL"),
        ("https:///j/{code}", "must be an http:// or https:// URL"),
        ("https://beta.example.com/j/{code} now", "must be an http:// or https:// URL"),
        ("https://[::1/j/{code}", "must be an http:// or https:// URL"),
    ],
)
def test_a_signup_url_that_cannot_be_a_link_issues_nothing(
    invites: Invoke, conn: psycopg.Connection[Any], url: str, why: str
) -> None:
    result = invites(
        "generate", "--cohort", "press-x", "--email", "a@example.com",
        env={"INVITES_SIGNUP_URL": url},
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: INVITES_SIGNUP_URL {why}")
    assert result.stderr.count("\n") == 1
    assert rows(conn) == []


ESCAPED = ["-ada@example.org", "+41@example.org", "=cmd@example.org"]


def test_an_exported_csv_read_back_issues_nothing_new(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people = [*ESCAPED, "plain@example.org"]
    generated = invites(
        "generate", "--cohort", "press-x", *(a for p in people for a in ("--email", p)),
        "--format", "csv", "--output", "codes.csv",
    )  # fmt: skip
    assert generated.exit_code == 0, generated.stderr
    listed = invites("list", "--format", "csv")
    (tmp_path / "listed.csv").write_text(listed.stdout)
    # The escape is in the file, and each export comes back in as the same four people.
    assert ",'-ada@example.org," in listed.stdout and ",'=cmd@example.org," in listed.stdout
    # A spreadsheet's "Unicode text" export: UTF-16 with a BOM, tab-separated.
    tabbed = listed.stdout.replace(",", "\t")
    (tmp_path / "libreoffice.txt").write_bytes(tabbed.encode("utf-16"))
    for export in ("codes.csv", "listed.csv", "libreoffice.txt"):
        again = invites("generate", "--cohort", "press-x", "--recipients", export)
        assert again.exit_code == 0, again.stderr
        assert again.stderr.splitlines()[-1] == ("created 0, skipped 4, invalid 0, duplicates 0"), (
            export
        )
    assert sorted(rows(conn, "SELECT email FROM beta_invites")) == sorted((p,) for p in people)


def test_a_typed_escaped_address_is_the_address(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    assert invites("generate --cohort press-x --email -ada@example.org").exit_code == 0
    again = invites("generate", "--cohort", "press-x", "--email", "'-ada@example.org")
    assert again.stderr.splitlines()[-1].startswith("created 0, skipped 1")
    assert rows(conn, "SELECT email FROM beta_invites") == [("-ada@example.org",)]


@pytest.mark.parametrize(
    "value", ["-x", "'-x", "''-x", "'x", "''x", "x'", "=1+1", "'", "", "\t@x", "it's", "@"]
)
def test_the_formula_escape_is_undone_exactly(value: str) -> None:
    from beta_invites_cli.exporting import csv_safe, csv_unguard

    assert csv_unguard(csv_safe(value)) == value
