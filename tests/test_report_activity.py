"""`invites report --activity FILE.sql`: what redeemers did after signing up, checked against the
same numbers computed here in Python from the raw rows; and every way an activity query can be
wrong."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from beta_invites_cli.emailkey import key as email_key
from tests.conftest import Invoke

NOW = datetime.now(timezone.utc)


@pytest.fixture
def host(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Redeemed invites in two cohorts (some by 3 weeks, some by 2 days), unredeemed ones, and
    the host's feedback (by user id) and sessions (by email) tables."""
    conn.execute("CREATE TABLE feedback (user_id uuid, submitted_at timestamptz, kind text)")
    conn.execute("CREATE TABLE sessions (email text, started_at timestamptz)")
    invites = []
    for i in range(40):
        cohort = "press-a" if i % 2 else "creator-b"
        redeemed_days_ago = (i % 4) * 9 + 2 if i % 5 else None  # 2, 11, 20, 29 days, or never
        user = None
        if redeemed_days_ago is not None:
            row = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
            assert row is not None
            user = row[0]
        used_at = NOW - timedelta(days=redeemed_days_ago) if redeemed_days_ago else None
        email = f"Person{i}@Example.com"
        row = conn.execute(
            """
            INSERT INTO beta_invites (code, email, cohort, created_at, used_at, redeemed_by, sent_at)
            VALUES (translate(upper(substr(md5(%s), 1, 16)), '01IL', 'XYZW'), %s, %s,
                    %s, %s, %s, %s) RETURNING id
            """,
            (str(i), email, cohort, NOW - timedelta(days=40), used_at, user, NOW),
        ).fetchone()
        assert row is not None
        invites.append({"cohort": cohort, "used_at": used_at, "user": user, "email": email})
        if used_at is None or i % 3 == 0:
            continue  # no activity at all for every third redeemer
        # Before the redemption (never counts), then in days 0.5, 3, 9, 16 and 24 after it.
        offsets = [-1.0, 0.5, 3.0, 9.0, 16.0, 24.0][: 2 + i % 5]
        for n, days in enumerate(offsets):
            at = used_at + timedelta(days=days)
            kind = "feedback" if n % 2 else "session"
            conn.execute("INSERT INTO feedback VALUES (%s, %s, %s)", (user, at, kind))
            conn.execute(
                "INSERT INTO sessions VALUES (%s, %s)", (email.lower() if n % 2 else email, at)
            )
    # Every other state too: revoked, expired and bounced invites nobody redeemed.
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, created_at, expires_at, sent_at,
                                  revoked_at, delivery_outcome)
        SELECT translate(upper(substr(md5('x' || i), 1, 16)), '01IL', 'XYZW'), 'other' || i || '@example.com',
               CASE WHEN i % 2 = 0 THEN 'press-a' ELSE 'creator-b' END, now() - interval '40 days',
               CASE WHEN i % 3 = 0 THEN now() - interval '1 day' ELSE now() + interval '9 days' END,
               now() - interval '39 days',
               CASE WHEN i % 3 = 1 THEN now() - interval '2 days' END,
               CASE WHEN i % 3 = 2 THEN 'bounced' END
          FROM generate_series(1, 9) AS i
        """
    )
    for i in range(1, 10):
        invites.append(
            {
                "cohort": "press-a" if i % 2 == 0 else "creator-b",
                "used_at": None,
                "user": None,
                "email": f"other{i}@example.com",
            }
        )
    conn.commit()
    return {"invites": invites}


def expected(
    conn: psycopg.Connection[Any],
    invites: list[dict[str, Any]],
    source: str,
    kind: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The activity measures per cohort, computed in Python from the raw rows."""
    if source == "feedback":
        rows = conn.execute("SELECT user_id, submitted_at, kind FROM feedback").fetchall()
        by_person: dict[Any, list[datetime]] = defaultdict(list)
        for user, at, what in rows:
            if kind is None or what == kind:
                by_person[user].append(at)
        activity_of = {id(inv): by_person.get(inv["user"], []) for inv in invites}
    else:
        rows = conn.execute("SELECT email, started_at FROM sessions").fetchall()
        by_email: dict[str, list[datetime]] = defaultdict(list)
        for email, at in rows:
            by_email[email_key(email)].append(at)
        activity_of = {id(inv): by_email.get(email_key(inv["email"]), []) for inv in invites}
    result: dict[str, dict[str, Any]] = {}
    for cohort in ("press-a", "creator-b"):
        redeemers = [i for i in invites if i["cohort"] == cohort and i["used_at"] is not None]
        after = {id(r): [a for a in activity_of[id(r)] if a >= r["used_at"]] for r in redeemers}
        active = [r for r in redeemers if after[id(r)]]
        count = sum(len(after[id(r)]) for r in active)
        firsts = [(min(after[id(r)]) - r["used_at"]).total_seconds() / 3600 for r in active]
        measures: dict[str, Any] = {
            "active": len(active),
            "activity": count,
            "activity_per_active": round(count / len(active), 2) if active else None,
            "median_hours_to_first_activity": round(statistics.median(firsts), 1)
            if firsts
            else None,
        }
        for week in (1, 2, 3, 4):
            over = [r for r in redeemers if r["used_at"] + timedelta(days=7 * week) <= NOW]
            retained = [
                r
                for r in over
                if any(
                    r["used_at"] + timedelta(days=7 * (week - 1))
                    <= a
                    < r["used_at"] + timedelta(days=7 * week)
                    for a in after[id(r)]
                )
            ]
            measures[f"week_{week}_retention"] = (
                round(len(retained) / len(over), 4) if over else None
            )
        result[cohort] = measures
    return result


def measured(report: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = [
        "active",
        "activity",
        "activity_per_active",
        "median_hours_to_first_activity",
        *(f"week_{n}_retention" for n in (1, 2, 3, 4)),
    ]
    return {
        r["cohort"]: {k: (float(r[k]) if isinstance(r[k], str) else r[k]) for k in keys}
        for r in report
    }


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_activity_by_user_id_agrees_with_the_raw_rows(
    invites: Invoke, conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path
) -> None:
    query = write(
        tmp_path,
        "feedback.sql",
        "-- feedback and sessions, by account\n"
        "SELECT user_id, submitted_at AS at, kind FROM feedback WHERE kind LIKE '%' ;\n",
    )
    result = invites("report", "--activity", query, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert measured(report) == expected(conn, host["invites"], "feedback")
    assert list(report[0])[-8:] == [
        "active",
        "activity",
        "activity_per_active",
        "median_hours_to_first_activity",
        "week_1_retention",
        "week_2_retention",
        "week_3_retention",
        "week_4_retention",
    ]
    only = invites("report", "--activity", query, "--kind", "feedback", "--format", "json")
    assert measured(json.loads(only.stdout)) == expected(
        conn, host["invites"], "feedback", "feedback"
    )
    # The same numbers by segment and by week of issue (one week here), and in the table.
    by_segment = json.loads(
        invites("report", "--by", "segment", "--activity", query, "--format", "json").stdout
    )
    assert {r["segment"]: r["active"] for r in by_segment} == {
        "press": measured(report)["press-a"]["active"],
        "creator": measured(report)["creator-b"]["active"],
    }
    by_week = json.loads(
        invites("report", "--by", "week", "--activity", query, "--format", "json").stdout
    )
    assert sum(r["active"] for r in by_week) == sum(r["active"] for r in report)
    table = invites("report", "--activity", query)
    assert table.exit_code == 0 and "press-a" in table.stdout


def test_activity_by_email_in_any_case(
    invites: Invoke, conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path
) -> None:
    query = write(tmp_path, "sessions.sql", "SELECT email, started_at AS at FROM sessions")
    result = invites("report", "--format", "json", env={"INVITES_ACTIVITY_SQL": query})
    assert result.exit_code == 0, result.stderr
    assert measured(json.loads(result.stdout)) == expected(conn, host["invites"], "sessions")


def test_a_bad_activity_query_is_one_clear_error(
    invites: Invoke, conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path
) -> None:
    cases = {
        "SELECT user_id FROM feedback": "must return the column(s) at; it returns user_id",
        "SELECT submitted_at AS at FROM feedback": "must return the column(s) user_id or email; "
        "it returns at",
        "SELECT user_id, submitted_at AS at FROM nowhere": 'failed: relation "nowhere" does not '
        "exist",
        "SELECT user_id, submitted_at AS at FROM feedback WHERE nextval('s') > 0": "tries to "
        "change data: it must only read",
        "SELECT user_id, submitted_at AS at FROM feedback, pg_sleep(5)": "ran past the timeout",
    }
    conn.execute("CREATE SEQUENCE s")
    conn.commit()
    for n, (text, message) in enumerate(cases.items()):
        path = write(tmp_path, f"bad{n}.sql", text)
        result = invites("report", "--activity", path, "--timeout", "0.5")
        assert result.exit_code == 1, text
        assert result.stderr == f"Error: the activity query {path} {message}" + (
            " (--timeout)\n" if "timeout" in message else "\n"
        ), result.stderr
    assert conn.execute("SELECT last_value, is_called FROM s").fetchone() == (1, False)
    no_kind = write(tmp_path, "nokind.sql", "SELECT user_id, submitted_at AS at FROM feedback")
    kind = invites("report", "--activity", no_kind, "--kind", "feedback")
    assert kind.stderr == (
        f"Error: the activity query {no_kind} must return the column(s) kind (for --kind); "
        "it returns at, user_id\n"
    )
    usage = invites("report", "--kind", "feedback")
    assert usage.exit_code == 2 and "--kind needs an activity query" in usage.stderr
    missing = invites("report", "--activity", str(tmp_path / "missing.sql"))
    assert (
        missing.stderr
        == f"Error: the activity query {tmp_path / 'missing.sql'}: No such file or directory\n"
    )


def test_the_retention_matrix(
    invites: Invoke, conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path
) -> None:
    query = write(tmp_path, "f.sql", "SELECT user_id, submitted_at AS at FROM feedback")
    result = invites(
        "report", "--retention", "--activity", query, "--weeks", "5", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    matrix = json.loads(result.stdout)
    assert list(matrix[0]) == ["cohort", "redeemers", *(f"week_{n}" for n in range(1, 6))]
    want = expected(conn, host["invites"], "feedback")
    for row in matrix:
        redeemers = [i for i in host["invites"] if i["cohort"] == row["cohort"] and i["used_at"]]
        assert row["redeemers"] == len(redeemers)
        for week in (1, 2, 3, 4):
            value = row[f"week_{week}"]
            assert (float(value) if value is not None else None) == want[row["cohort"]][
                f"week_{week}_retention"
            ]
        assert row["week_5"] is None  # nobody redeemed 35 days ago: not over for anyone
    table = invites("report", "--retention", "--activity", query)
    assert table.exit_code == 0
    header = next(line for line in table.stdout.splitlines() if "W1" in line)
    assert "W8" in header and "Redeemers" in header
    usage = invites("report", "--retention")
    assert usage.exit_code == 2 and "--retention needs an activity query" in usage.stderr


def test_a_group_with_no_redeemers_is_a_row_of_the_matrix(
    invites: Invoke, conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path
) -> None:
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('QQQQQQQQQQQQQQQQ', 'q@example.org', 'listener-q')"
    )
    query = write(tmp_path, "f.sql", "SELECT user_id, submitted_at AS at FROM feedback")
    result = invites("report", "--retention", "--activity", query, "--format", "json")
    assert result.exit_code == 0, result.stderr
    matrix = json.loads(result.stdout)
    assert [r["cohort"] for r in matrix][-1] == "listener-q"
    assert matrix[-1] == {
        "cohort": "listener-q",
        "redeemers": 0,
        **{f"week_{n}": None for n in range(1, 9)},
    }


def test_the_funnel(
    invites: Invoke, conn: psycopg.Connection[Any], host: dict[str, Any], tmp_path: Path
) -> None:
    # One code handed out by hand (never sent) and redeemed: it counts as reached.
    conn.execute(
        "UPDATE beta_invites SET sent_at = NULL WHERE cohort = 'press-a' AND used_at IS NOT NULL"
        " AND id = (SELECT min(id::text)::uuid FROM beta_invites WHERE cohort = 'press-a'"
        " AND used_at IS NOT NULL)"
    )
    conn.execute(
        "UPDATE beta_invites SET sent_at = NULL WHERE cohort = 'creator-b' AND used_at IS NULL"
    )
    conn.commit()
    query = write(tmp_path, "f.sql", "SELECT user_id, submitted_at AS at FROM feedback")
    plain = json.loads(invites("report", "--funnel", "--format", "json").stdout)
    assert list(plain[0]) == [
        "cohort",
        "issued",
        "sent",
        "redeemed",
        "sent_of_issued",
        "redeemed_of_sent",
        "reminded",
        "bounced",
    ]
    with_activity = json.loads(
        invites("report", "--funnel", "--activity", query, "--format", "json").stdout
    )
    active = expected(conn, host["invites"], "feedback")
    for row in with_activity:
        mine = [i for i in host["invites"] if i["cohort"] == row["cohort"]]
        redeemed = sum(1 for i in mine if i["used_at"])
        reached = conn.execute(
            "SELECT count(*) FROM beta_invites WHERE cohort = %s"
            " AND (sent_at IS NOT NULL OR used_at IS NOT NULL)",
            (row["cohort"],),
        ).fetchone()
        assert reached is not None
        assert (row["issued"], row["sent"], row["redeemed"], row["active"]) == (
            len(mine),
            reached[0],
            redeemed,
            active[row["cohort"]]["active"],
        )
        assert float(row["redeemed_of_sent"]) == round(redeemed / reached[0], 4)
        assert float(row["active_of_redeemed"]) == round(row["active"] / redeemed, 4)
        assert row["issued"] >= row["sent"] >= row["redeemed"] >= row["active"]
    table = invites("report", "--funnel", "--activity", query)
    assert table.exit_code == 0
    assert "Total" in table.stdout and "of redeemed" in table.stdout
    both = invites("report", "--funnel", "--retention")
    assert both.exit_code == 2
