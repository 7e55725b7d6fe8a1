"""The waitlist, seats and fill: a cap is never passed, the day's quota holds across runs, and
a waiting person's address leaves no trace once removed."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Invoke, invites_process
from tests.smtp import SmtpServer

FROM = {"INVITES_FROM": "Beta Team <beta@example.com>"}


def people(tmp_path: Path, n: int, name: str = "people.csv", start: int = 0) -> str:
    (tmp_path / name).write_text(
        "email\n" + "".join(f"p{i}@example.com\n" for i in range(start, start + n))
    )
    return name


def one(conn: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def test_waitlist_add_is_idempotent_and_keeps_input_order(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    assert invites("generate --cohort other --email p3@example.com").exit_code == 0
    assert invites("suppress add p4@example.com --reason unsubscribed").exit_code == 0
    first = invites(
        f"waitlist add --cohort beta --recipients {people(tmp_path, 6)} --source landing-page"
    )
    assert first.exit_code == 0, first.stderr
    assert first.stderr.splitlines() == [
        "skipped: p3@example.com: already holds a live invite",
        "skipped: p4@example.com: is suppressed (unsubscribed)",
        "waiting 4, skipped 2, invalid 0, duplicates 0",
    ]
    again = invites(
        "waitlist add --cohort beta --email P0@Example.com --email p9@example.com --priority 5"
    )
    assert again.stderr.splitlines() == [
        "skipped: P0@example.com: is already waiting in this cohort",
        "waiting 1, skipped 1, invalid 0, duplicates 0",
    ]
    listed = invites("waitlist list --cohort beta --format csv").stdout.splitlines()
    assert [line.split(",")[:4] for line in listed] == [
        ["cohort", "email", "status", "position"],
        ["beta", "p9@example.com", "waiting", "1"],  # priority 5 goes first
        ["beta", "p0@example.com", "waiting", "2"],
        ["beta", "p1@example.com", "waiting", "3"],
        ["beta", "p2@example.com", "waiting", "4"],
        ["beta", "p5@example.com", "waiting", "5"],
    ]
    assert invites("waitlist position p5@example.com --cohort beta").stdout == "5\n"
    # One invalid row: nothing is added, unless --skip-invalid.
    bad = invites("waitlist add --cohort beta --email not-an-address --email p7@example.com")
    assert bad.exit_code == 1
    assert bad.stderr.splitlines()[0].startswith("Error: --email: 'not-an-address':")
    assert bad.stderr.splitlines()[-1] == (
        "Error: 1 invalid address(es): nobody was added (--skip-invalid adds the rest)"
    )
    assert one(conn, "SELECT count(*) FROM beta_invites_waitlist") == 5
    skip = invites(
        "waitlist add --cohort beta --email not-an-address --email p7@example.com --skip-invalid"
    )
    assert skip.stderr.splitlines()[-1] == "waiting 1, skipped 0, invalid 1, duplicates 0"


def test_the_sql_join_and_position_and_concurrent_joins(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('AAAABBBBCCCCDDDD', 'in@example.com', 'x')"
    )
    conn.execute(
        "INSERT INTO beta_invites_suppressions (digest, reason, source)"
        " VALUES (invites_email_digest('no@example.com'), 'unsubscribed', 'test')"
    )

    def join(email: str, cohort: str = "beta") -> tuple[str, int | None]:
        return conn.execute(
            "SELECT * FROM beta_invites_waitlist_join(%s, %s, 'landing-page')", (email, cohort)
        ).fetchone()  # type: ignore[return-value]

    assert join("ada@example.com") == ("joined", 1)
    assert join("grace@example.com") == ("joined", 2)
    assert join("ADA@example.com") == ("already_waiting", 1)
    assert join("in@example.com") == ("already_invited", None)
    assert join("no@example.com") == ("suppressed", None)
    assert join("not an address") == ("invalid", None)
    assert join("ada@example.com", "") == ("invalid", None)
    assert one(conn, "SELECT beta_invites_waitlist_position('grace@example.com', 'beta')") == 2
    assert one(conn, "SELECT beta_invites_waitlist_position('nobody@example.com', 'beta')") is None
    # Twenty joins of one address at once, each in its own transaction: one entry.
    results: list[str] = []
    barrier = threading.Barrier(20)

    def attempt() -> None:
        with psycopg.connect(db_url, autocommit=True) as own:
            barrier.wait()
            row = own.execute(
                "SELECT status FROM beta_invites_waitlist_join('same@example.com', 'beta')"
            ).fetchone()
            results.append(row[0] if row else "?")

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(results) == {"joined": 1, "already_waiting": 19}
    assert (
        one(conn, "SELECT count(*) FROM beta_invites_waitlist WHERE email = 'same@example.com'")
        == 1
    )


def test_fill_stops_at_the_cap_and_freed_seats_refill(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    assert invites(f"waitlist add --cohort beta --recipients {people(tmp_path, 12)}").exit_code == 0
    assert invites("cohort set beta --seats 5").stderr == "beta: 5 seats (0 taken)\n"
    with SmtpServer() as server:
        env = {"SMTP_URL": server.url, **FROM}
        first = invites("fill --cohort beta", env=env)
        assert first.exit_code == 0, first.stderr
        assert "beta: invited 5; the rest wait (cap reached: 5 of 5 seats taken)" in first.stderr
        assert sorted(m["To"] for m in server.recorder.messages) == [
            f"p{i}@example.com" for i in range(5)
        ]
        again = invites("fill --cohort beta", env=env)
        assert "invited 0 from the waitlist" in again.stderr
        # Two seats freed: one revoked, one expired (the clock moved in the database).
        codes = [
            r[0] for r in conn.execute("SELECT code FROM beta_invites ORDER BY created_at, code")
        ]
        assert invites(f"revoke {codes[0]} --reason test").exit_code == 0
        conn.execute(
            "UPDATE beta_invites SET expires_at = now() - interval '1 second' WHERE code = %s",
            (codes[1],),
        )
        refill = invites("fill --cohort beta", env=env)
        assert refill.exit_code == 0, refill.stderr
        assert len(server.recorder.messages) == 7
    listed = invites("cohort list --format csv").stdout.splitlines()
    assert listed == [
        "cohort,seats,taken,free,waiting,invited_today,per_day",
        "beta,5,5,0,5,7,",
    ]
    (row,) = [
        r for r in json.loads(invites("report --format json").stdout) if r["cohort"] == "beta"
    ]
    assert (row["seats"], row["waiting"], row["waitlist_invited"], row["revoked"]) == (5, 5, 7, 1)
    assert row["median_days_to_invite"] == 0.0 and row["reclaimed"] == 0
    kinds = Counter(r[0] for r in conn.execute("SELECT kind FROM beta_invites_events"))
    assert (kinds["waitlisted"], kinds["invited_from_waitlist"], kinds["seat_freed"]) == (12, 7, 1)
    # The invite carries its entry's id: its history starts with the waiting.
    code = one(conn, "SELECT code FROM beta_invites WHERE email = 'p5@example.com'")
    shown = invites("show", code).stdout
    events = [line.split()[2] for line in shown.split("History\n")[1].splitlines()]
    assert events[0] == "waitlisted" and {"issued", "invited_from_waitlist", "sent"} <= set(events)


def test_the_day_quota_holds_across_runs_until_the_day_changes(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    assert invites(f"waitlist add --cohort beta --recipients {people(tmp_path, 10)}").exit_code == 0
    env = {**FROM}
    assert invites("fill --cohort beta --per-day 3 --outbox out", env=env).exit_code == 0
    again = invites("fill --cohort beta --per-day 3 --outbox out", env=env)
    assert "beta: invited 0; the rest wait (today's quota used: 3 of 3)" in again.stderr
    plan = invites("fill --cohort beta --per-day 3 --dry-run --outbox out", env=env)
    assert (
        "dry run: beta: would invite 0 of 7 waiting; the rest wait (today's quota used: 3 of 3)"
        in plan.stderr
    )
    conn.execute("UPDATE beta_invites_waitlist SET invited_at = invited_at - interval '1 day'")
    tomorrow = invites("fill --cohort beta --per-day 3 --outbox out", env=env)
    assert "invited 3 from the waitlist" in tomorrow.stderr
    assert len(list((tmp_path / "out").glob("*.eml"))) == 6


def test_a_full_cohort_refuses_generate_and_send_unless_over_cap(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    assert invites("cohort set press-x --seats 2").exit_code == 0
    assert (
        invites("generate --cohort press-x --email a@example.com --email b@example.com").exit_code
        == 0
    )
    full = invites("generate --cohort press-x --email c@example.com")
    assert (full.exit_code, full.stderr) == (
        1,
        "Error: cohort press-x is full: 2 of 2 seats taken; free seats with revoke or wait for"
        " expiries (--over-cap issues anyway)\n",
    )
    sent = invites("send --cohort press-x --email c@example.com --outbox out", env=FROM)
    assert sent.exit_code == 1 and "cohort press-x is full" in sent.stderr
    assert one(conn, "SELECT count(*) FROM beta_invites") == 2
    over = invites("generate --cohort press-x --email c@example.com --over-cap")
    assert over.exit_code == 0, over.stderr
    assert one(conn, "SELECT count(*) FROM beta_invites") == 3


def test_bad_input_is_a_usage_error(invites: Invoke) -> None:
    for args, words in (
        ("cohort set beta --seats -3", "is not a number of seats"),
        ("cohort set beta", "give --seats"),
        ("fill --cohort beta --per-day 0", "0 is not in the range x>=1"),
        ("fill --cohort nosuch --outbox out", "no cohort matches nosuch"),
        ("reclaim --cohort beta --unredeemed-after 7d", "--dry-run (list) or --yes"),
    ):
        result = invites(args, env=FROM)
        assert result.exit_code == 2, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)


@pytest.mark.parametrize("by", ["seats", "per-day"])
def test_eight_fills_at_once_never_pass_the_cap(
    invites: Invoke, conn: psycopg.Connection[Any], db_url: str, tmp_path: Path, by: str
) -> None:
    """8 fill processes and a generate at once, a cap of 100 (or a day's quota of 100), 1,000
    waiting: 100 taken, nobody invited or emailed twice."""
    added = invites(f"waitlist add --cohort beta --recipients {people(tmp_path, 1000)}")
    assert added.exit_code == 0
    pace: list[str] = []
    if by == "seats":
        assert invites("cohort set beta --seats 100").exit_code == 0
    else:
        pace = ["--per-day", "100"]
    env = {"DATABASE_URL": db_url, **FROM}
    procs = [
        invites_process(
            "fill", "--cohort", "beta", *pace, "--outbox", str(tmp_path / f"out{n}"), env=env
        )
        for n in range(8)
    ]
    procs.append(
        invites_process("generate", "--cohort", "beta", "--email", "extra@example.com", env=env)
    )
    procs.append(
        invites_process(
            "send",
            "--cohort",
            "beta",
            "--email",
            "extra2@example.com",
            "--outbox",
            str(tmp_path / "sent"),
            env=env,
        )
    )
    for proc in procs:
        proc.wait(timeout=120)
    failed = [p.stderr.read() for p in procs[:8] if p.returncode != 0 and p.stderr]
    assert failed == []
    invited = one(conn, "SELECT count(*) FROM beta_invites_waitlist WHERE invited_at IS NOT NULL")
    if by == "seats":  # generate and send took a seat each, or came too late and were refused
        assert one(conn, "SELECT count(*) FROM beta_invites WHERE cohort = 'beta'") == 100
        assert invited in (98, 99, 100)
    else:
        assert invited == 100
    # `send` emails every unsent invite of its cohort: some of fill's went out through it.
    outboxes = [tmp_path / f"out{n}" for n in range(8)] + [tmp_path / "sent"]
    sent_codes = Counter(f.stem for box in outboxes for f in box.glob("*.eml"))
    assert max(sent_codes.values()) == 1
    from_waitlist = {
        r[0]
        for r in conn.execute(
            "SELECT i.code FROM beta_invites i JOIN beta_invites_waitlist w ON w.invite_id = i.id"
        )
    }
    assert from_waitlist <= set(sent_codes) and len(from_waitlist) == invited


def test_reclaim_gives_seats_of_people_who_never_came_to_the_next(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    assert invites(f"waitlist add --cohort beta --recipients {people(tmp_path, 4)}").exit_code == 0
    assert invites("cohort set beta --seats 2").exit_code == 0
    assert invites("fill --cohort beta --outbox out", env=FROM).exit_code == 0
    conn.execute(
        "UPDATE beta_invites SET sent_at = now() - interval '8 days' WHERE email = 'p0@example.com'"
    )
    dry = invites("reclaim --cohort beta --unredeemed-after 7d --dry-run --format csv")
    assert dry.stdout.splitlines()[1:] == [
        f"{one(conn, 'SELECT code FROM beta_invites WHERE email = %s', 'p0@example.com')},beta"
    ]
    done = invites("reclaim --cohort beta --unredeemed-after 7d --yes")
    assert done.stderr.splitlines()[-1] == "reclaimed 1 seat(s)"
    assert (
        one(conn, "SELECT revoked_reason FROM beta_invites WHERE email = 'p0@example.com'")
        == "reclaimed"
    )
    assert invites("fill --cohort beta --outbox out", env=FROM).exit_code == 0
    assert one(conn, "SELECT count(*) FROM beta_invites WHERE email = 'p2@example.com'") == 1


def test_removal_and_the_sweep_leave_no_address_anywhere(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    for address in ("gone@example.com", "old@example.com", "kept@example.com"):
        assert invites(f"waitlist add --cohort beta --email {address}").exit_code == 0
    conn.execute(
        "UPDATE beta_invites_waitlist SET joined_at = now() - interval '40 days' WHERE email = 'old@example.com'"
    )
    assert invites("waitlist remove gone@example.com").stderr == "removed 1 waiting entry\n"
    swept = invites("expire --waitlist-ttl 30d")
    assert swept.exit_code == 0, swept.stderr
    for address in ("gone@example.com", "old@example.com"):
        assert found_anywhere(conn, address) == [], address
    assert found_anywhere(conn, "kept@example.com") == ["public.beta_invites_waitlist.email"]
    assert invites("waitlist list --status removed --format csv").stdout.count("\n") == 3


def found_anywhere(conn: psycopg.Connection[Any], text: str) -> list[str]:
    """Every column of every table in the database that holds `text` (as text)."""
    columns = conn.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns"
        " WHERE table_schema IN ('public') AND data_type IN ('text', 'character varying', 'jsonb')"
    ).fetchall()
    hits = []
    for schema, table, column in columns:
        hit = conn.execute(
            f'SELECT 1 FROM "{schema}"."{table}" WHERE "{column}"::text ILIKE %s LIMIT 1',
            (f"%{text}%",),
        ).fetchone()
        if hit:
            hits.append(f"{schema}.{table}.{column}")
    return hits


def test_waitlist_list_filters_by_status(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    assert invites(f"waitlist add --cohort beta --recipients {people(tmp_path, 3)}").exit_code == 0
    assert invites("cohort set beta --seats 1").exit_code == 0
    assert invites("fill --cohort beta --outbox out", env=FROM).exit_code == 0
    assert invites("waitlist remove p2@example.com").exit_code == 0

    def listed(status: str) -> list[tuple[Any, ...]]:
        rows = invites(f"waitlist list --status {status} --format json").stdout
        return [(r["email"], r["status"], r["position"]) for r in json.loads(rows)]

    assert listed("waiting") == [("p1@example.com", "waiting", 1)]
    assert listed("invited") == [(None, "invited", None)]  # the invite holds the address
    assert listed("removed") == [(None, "removed", None)]


@pytest.mark.slow
def test_a_million_people_join_the_waitlist_in_bounded_memory(
    db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.test_issue_bulk import PEAK

    with (tmp_path / "people.csv").open("w") as out:
        out.write("email\n")
        out.writelines(f"p{i}@example.com\n" for i in range(1_000_000))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK,
            "waitlist",
            "add",
            "--cohort",
            "bulk",
            "--recipients",
            "people.csv",
        ],
        env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    *messages, peak = proc.stderr.splitlines()
    assert messages == ["waiting 1000000, skipped 0, invalid 0, duplicates 0"]
    assert int(peak) < 200 * 1024, f"peak {int(peak) // 1024} MiB"
    print(f"peak {int(peak) // 1024} MiB")
    assert (
        one(conn, "SELECT beta_invites_waitlist_position('p999999@example.com', 'bulk')")
        == 1_000_000
    )
