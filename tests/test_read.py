from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from beta_invites_cli.cli import cli
from tests.conftest import Invoke

COHORTS = [
    "creator-vinyl-pressing",
    "creator-tape",
    "listener-jazz-mailing-list",
    "community-member-discord",
    "community-garden",
    "press-pitchfork",
    "press",
    "other",
]


@pytest.fixture
def population(conn: psycopg.Connection[Any]) -> None:
    """Generated invites in every state, across cohorts, days and senders."""
    users = [
        r[0]
        for r in conn.execute("INSERT INTO users SELECT FROM generate_series(1, 2) RETURNING id")
    ]
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, created_at, expires_at, sent_at, used_at, sent_by)
        SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'),
               'p' || i || '@example.com',
               (%(cohorts)s::text[])[1 + i %% 8],
               now() - (i %% 5) * interval '1 day',
               CASE WHEN i %% 4 = 0 THEN now() - interval '1 hour' ELSE now() + interval '20 days' END,
               CASE WHEN i %% 3 = 0 THEN NULL ELSE now() - (i %% 5) * interval '1 day' END,
               -- redeemed up to 10 hours after issue, never in the future (whatever the time of day)
               CASE WHEN i %% 7 = 0 THEN least(now(), now() - (i %% 5) * interval '1 day' + (i %% 11) * interval '1 hour') END,
               CASE WHEN i %% 2 = 0 THEN %(u1)s::uuid WHEN i %% 5 = 0 THEN %(u2)s::uuid END
          FROM generate_series(1, 2000) AS i
        """,
        {"cohorts": COHORTS, "u1": users[0], "u2": users[1]},
    )


def direct(conn: psycopg.Connection[Any], group: str) -> dict[Any, tuple[int, ...]]:
    rows = conn.execute(
        f"""
        SELECT {group}, count(*), count(sent_at), count(used_at),
               count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > now()),
               count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at <= now()),
               count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NOT NULL)
          FROM beta_invites GROUP BY 1
        """
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def as_counts(record: dict[str, Any]) -> tuple[int, ...]:
    return tuple(
        int(record[k]) for k in ("issued", "sent", "redeemed", "pending", "expired", "revoked")
    )


def test_report_by_cohort_agrees_with_sql(
    invites: Invoke, conn: psycopg.Connection[Any], population: None
) -> None:
    result = invites("report", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {d["cohort"]: as_counts(d) for d in data} == direct(conn, "cohort")
    for d in data:
        issued, _, redeemed, pending, expired, revoked = as_counts(d)
        assert issued == redeemed + pending + expired + revoked
        assert d["redemption_rate"] == round(redeemed / issued, 4)
        assert 0 <= d["redemption_rate"] <= 1
    assert list(data[0]) == [
        "cohort",
        "issued",
        "sent",
        "redeemed",
        "pending",
        "expired",
        "revoked",
        "bounced",
        "redemption_rate",
        "median_hours_to_redeem",
        "reminded",
        "redeemed_after_reminder",
        "failed",
        "sender_refused",
        "complained",
        "complaint_rate",
        "seats",
        "waiting",
        "waitlist_invited",
        "median_days_to_invite",
        "reclaimed",
    ]
    median = conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM used_at - created_at) / 3600)"
        " FROM beta_invites WHERE cohort = 'press-pitchfork' AND used_at IS NOT NULL"
    ).fetchone()
    assert median is not None
    (press,) = [d for d in data if d["cohort"] == "press-pitchfork"]
    assert press["median_hours_to_redeem"] == round(median[0], 1)


def test_report_by_segment_uses_the_longest_prefix(
    invites: Invoke, conn: psycopg.Connection[Any], population: None
) -> None:
    data = json.loads(invites("report", "--by", "segment", "--format", "json").stdout)
    by_segment = {d["segment"]: as_counts(d) for d in data}
    cohorts = direct(conn, "cohort")

    def total(*names: str) -> tuple[int, ...]:
        return tuple(sum(values) for values in zip(*(cohorts[n] for n in names), strict=True))

    assert by_segment == {
        "creator": total("creator-vinyl-pressing", "creator-tape"),
        "listener": total("listener-jazz-mailing-list"),
        "community-member": total("community-member-discord"),
        "community": total(
            "community-garden"
        ),  # not a configured segment: text before the first '-'
        "press": total("press-pitchfork", "press"),
        "other": total("other"),
    }
    custom = json.loads(
        invites(
            "report",
            "--by",
            "segment",
            "--format",
            "json",
            env={"INVITES_SEGMENTS": "creator-vinyl,press"},
        ).stdout
    )
    assert {d["segment"] for d in custom} == {
        "creator-vinyl",
        "creator",
        "listener",
        "community",
        "press",
        "other",
    }


def test_report_by_sender_day_and_week(
    invites: Invoke, conn: psycopg.Connection[Any], population: None
) -> None:
    sender = json.loads(invites("report", "--by", "sender", "--format", "json").stdout)
    expected = {str(k) if k else "(none)": v for k, v in direct(conn, "sent_by").items()}
    assert {d["sender"]: as_counts(d) for d in sender} == expected
    day = list(
        csv.DictReader(io.StringIO(invites("report", "--by", "day", "--format", "csv").stdout))
    )
    assert {r["day"]: as_counts(r) for r in day} == {
        str(k): v for k, v in direct(conn, "created_at::date").items()
    }
    redemptions = dict(
        conn.execute(
            "SELECT used_at::date::text, count(*) FROM beta_invites WHERE used_at IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    assert {r["day"]: int(r["redemptions"]) for r in day if int(r["redemptions"])} == redemptions
    week = json.loads(invites("report", "--by", "week", "--format", "json").stdout)
    assert sum(d["issued"] for d in week) == 2000


def test_report_filters(invites: Invoke, conn: psycopg.Connection[Any], population: None) -> None:
    data = json.loads(invites("report", "--cohort", "press*", "--format", "json").stdout)
    assert sorted(d["cohort"] for d in data) == ["press", "press-pitchfork"]
    today = conn.execute("SELECT current_date::text").fetchone()
    assert today is not None
    recent = json.loads(invites("report", "--since", today[0], "--format", "json").stdout)
    expected = conn.execute(
        "SELECT count(*) FROM beta_invites WHERE created_at >= current_date"
    ).fetchone()
    assert expected is not None and sum(d["issued"] for d in recent) == expected[0]
    bad = invites("report", "--since", "yesterday")
    assert bad.exit_code == 2  # a usage error
    assert (
        bad.stderr.splitlines()[-1]
        == "Error: Invalid value for '--since': 'yesterday' is not a date like 2026-11-26"
    )


def test_report_table_has_totals_and_no_emails(invites: Invoke, population: None) -> None:
    result = invites("report")
    assert result.exit_code == 0
    assert "Invites by cohort, as of " in result.stdout
    total_line = next(line for line in result.stdout.splitlines() if "Total" in line)
    assert "2000" in total_line
    assert "@example.com" not in result.stdout


def test_empty_database(invites: Invoke) -> None:
    result = invites("report")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no invites yet\n")
    assert invites("report", "--format", "json").stdout == "[]\n"


def test_list_filters(invites: Invoke, conn: psycopg.Connection[Any], population: None) -> None:
    pending = list(
        csv.DictReader(
            io.StringIO(
                invites(
                    "list", "--status", "pending", "--cohort", "press-*", "--format", "csv"
                ).stdout
            )
        )
    )
    expected = conn.execute(
        "SELECT code FROM beta_invites WHERE cohort LIKE 'press-%%' AND used_at IS NULL AND expires_at > now() ORDER BY created_at DESC, id DESC"
    ).fetchall()
    assert [r["code"] for r in pending] == [e[0] for e in expected]
    assert {r["status"] for r in pending} <= {"sent", "unsent"}
    one = json.loads(invites("list", "--email", "P14@EXAMPLE.COM", "--format", "json").stdout)
    assert [d["email"] for d in one] == ["p14@example.com"] and one[0]["status"] == "redeemed"
    table = invites("list")
    assert table.stderr == "showing the newest 50; --limit N for more, --format csv for all\n"
    nothing = invites("list", "--cohort", "nothing-*")
    assert (nothing.stdout, nothing.stderr) == ("", "no invites match\n")  # no empty table


def test_show(invites: Invoke, conn: psycopg.Connection[Any], population: None) -> None:
    row = conn.execute(
        "SELECT code, sent_by FROM beta_invites WHERE sent_by IS NOT NULL LIMIT 1"
    ).fetchone()
    assert row is not None
    typed = "-".join(row[0][i : i + 4] for i in range(0, 16, 4)).lower()
    shown = json.loads(invites("show", typed, "--format", "json").stdout)[0]
    assert shown["code"] == row[0] and shown["sent_by"] == str(row[1])
    missing = invites("show", "ZZZZZZZZZZZZZZZZ")
    assert (
        missing.exit_code == 1
        and missing.stderr == "Error: ZZZZZZZZZZZZZZZZ is not an invite code we issued\n"
    )


def test_shell_completion() -> None:
    result = CliRunner().invoke(
        cli, [], prog_name="invites", env={"_INVITES_COMPLETE": "bash_source"}
    )
    assert "_invites_completion" in result.output


@pytest.mark.slow
def test_million_row_export_streams_in_constant_memory(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort)
        SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'), 'p' || i || '@example.com', 'bulk'
          FROM generate_series(1, 1000000) AS i
        """
    )
    # The peak resident size of this process's own address space (VmHWM): ru_maxrss would also
    # count the test runner's memory, which a child spawned from it inherits across exec.
    script = (
        "import runpy, sys; sys.argv = ['invites', 'list', '--format', sys.argv[1]];\n"
        "try:\n runpy.run_module('beta_invites_cli', run_name='__main__')\n"
        "finally:\n"
        " peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        " print(peak.split()[1], file=sys.stderr)"
    )
    # Header + rows; rows; "[" + rows + "]".
    for fmt, lines in (("csv", 1_000_001), ("jsonl", 1_000_000), ("json", 1_000_002)):
        proc = subprocess.run(
            [sys.executable, "-c", script, fmt],
            env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("\n") == lines, fmt
        if fmt == "json":
            assert len(json.loads(proc.stdout)) == 1_000_000
        peak_kib = int(proc.stderr.strip().splitlines()[-1])
        # A million rows held in memory would take several hundred MiB; streaming stays near
        # start-up size.
        assert peak_kib < 120 * 1024, (fmt, peak_kib)


def test_segments_longest_prefix_and_the_dash_boundary(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    for cohort in ("press-uk-guardian", "press-pitchfork", "pressure-x", "press"):
        invites(
            "generate", "--cohort", cohort, "--email", f"{cohort}@example.com", "--format", "csv"
        )
    data = json.loads(
        invites(
            "report",
            "--by",
            "segment",
            "--format",
            "json",
            env={"INVITES_SEGMENTS": "press,press-uk"},
        ).stdout
    )
    assert {d["segment"]: d["issued"] for d in data} == {
        "press-uk": 1,  # press-uk beats press: the longest configured prefix wins
        "press": 2,  # press-pitchfork and press itself
        "pressure": 1,  # pressure-x is not press: a segment ends at a '-'
    }


def test_the_median_interpolates_between_the_two_middle_values(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, created_at, used_at) VALUES
          ('MEDAAAAAAAAAAAAA', 'a@example.com', 'm', now() - interval '10 hours', now() - interval '9 hours'),
          ('MEDBAAAAAAAAAAAA', 'b@example.com', 'm', now() - interval '10 hours', now() - interval '7 hours')
        """
    )
    (row,) = json.loads(invites("report", "--format", "json").stdout)
    assert row["median_hours_to_redeem"] == 2.0  # between 1 h and 3 h


def test_json_and_jsonl_agree_with_the_database(
    invites: Invoke, conn: psycopg.Connection[Any], population: None
) -> None:
    listed = json.loads(invites("list", "--cohort", "press*", "--format", "json").stdout)
    lines = invites("list", "--cohort", "press*", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == listed
    rows = conn.execute(
        "SELECT code, email, cohort, created_at, sent_at, used_at, expires_at FROM beta_invites"
        " WHERE cohort LIKE 'press%%' ORDER BY created_at DESC, id DESC"
    ).fetchall()
    # Compared as instants: PostgreSQL writes 14:03:17.12345, Python 14:03:17.123450.
    assert [
        (
            r["code"],
            r["email"],
            r["cohort"],
            *(
                datetime.fromisoformat(r[k]) if r[k] else None
                for k in ("created_at", "sent_at", "used_at", "expires_at")
            ),
        )
        for r in listed
    ] == [tuple(row) for row in rows]
    assert list(listed[0]) == [
        "code",
        "email",
        "cohort",
        "status",
        "created_at",
        "sent_at",
        "used_at",
        "expires_at",
        "refusal",
    ]
    assert invites("list", "--cohort", "none-*", "--format", "json").stdout == "[]\n"
    assert invites("list", "--cohort", "none-*", "--format", "jsonl").stdout == ""


def test_list_email_and_until_in_every_format(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, created_at) VALUES
          ('LSTAAAAAAAAAAAAA', 'Ada@Example.com', 'c', '2026-11-20 23:30+00'),
          ('LSTBAAAAAAAAAAAA', 'bob@example.com', 'c', '2026-11-21 00:30+00')
        """
    )
    for fmt in ("csv", "json", "jsonl", "table"):
        by_email = invites("list", "--email", "ADA@example.COM", "--format", fmt).stdout
        assert "LSTAAAAAAAAAAAAA" in by_email and "LSTBAAAAAAAAAAAA" not in by_email, fmt
    # Dates are days in the session's time zone: UTC here, as the rows were written.
    until = invites("list", "--until", "2026-11-20", "--format", "csv", env={"PGTZ": "UTC"}).stdout
    assert "LSTAAAAAAAAAAAAA" in until  # the whole day of --until counts
    assert "LSTBAAAAAAAAAAAA" not in until


ISO_SHAPE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d"


def test_timestamps_have_one_shape_everywhere(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    """A whole second (no fraction) is written like any other instant: one ISO 8601 shape with
    microseconds, so a column parses with one format (pandas' inferred one included)."""
    import re

    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, created_at, sent_at, used_at, expires_at)
        VALUES ('AAAABBBBCCCCDDDD', 'a@example.org', 'press-x', '2026-11-02 12:00:00+00',
                '2026-11-02 12:00:00.5+00', NULL, 'infinity'),
               ('EEEEFFFFGGGGHHHH', 'b@example.org', 'press-x', '2026-11-02 12:00:01.123456+00',
                NULL, '2026-11-03 08:00:00+00', '2026-12-02 12:00:00+00')
        """
    )
    # Events are stamped now(), so the clock decides their fraction: add two whose fraction ends
    # in zeros, so the check does not depend on it (it passed 9 runs in 10 with history's JSON
    # dropping those zeros).
    conn.execute(
        "INSERT INTO beta_invites_events (invite_id, kind, at, actor)"
        " SELECT id, 'extended', timestamptz '2026-11-02 12:00:00+00', 'test' FROM beta_invites"
        " UNION ALL"
        " SELECT id, 'extended', timestamptz '2026-11-02 12:00:00.79+00', 'test' FROM beta_invites"
    )
    seen: list[str] = []
    for fmt in ("csv", "json", "jsonl"):
        out = invites("list", "--format", fmt).stdout
        records = (
            list(csv.DictReader(io.StringIO(out)))
            if fmt == "csv"
            else json.loads(out)
            if fmt == "json"
            else [json.loads(line) for line in out.splitlines()]
        )
        for record in records:
            seen += [record[k] for k in ("created_at", "sent_at", "used_at", "expires_at")]
    for fmt in ("csv", "json"):
        out = invites("history", "--format", fmt).stdout
        records = list(csv.DictReader(io.StringIO(out))) if fmt == "csv" else json.loads(out)
        seen += [record["at"] for record in records]
    (shown,) = json.loads(invites("show", "AAAABBBBCCCCDDDD", "--format", "json").stdout)
    seen += [shown["created_at"], shown["sent_at"]]
    values = [v for v in seen if v not in ("", None)]
    assert len(values) > 20
    odd = [v for v in values if not re.fullmatch(ISO_SHAPE, v) and v != "infinity"]
    assert odd == []
    assert "2026-11-02T12:00:00.000000+00:00" in values
    # Newest first, by the instant (not by the text shown).
    codes = [r["code"] for r in json.loads(invites("list", "--format", "json").stdout)]
    assert codes == ["EEEEFFFFGGGGHHHH", "AAAABBBBCCCCDDDD"]
