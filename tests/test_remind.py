"""`invites remind`: each step once per invite, only to those still owed one, crash-safe and
concurrent like send, and an extension followed by a reminder about the new date."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import psycopg

from beta_invites_cli import suppression
from tests import dsn_samples
from tests.conftest import Invoke, invites_process
from tests.smtp import Behaviour, SmtpServer
from tests.test_issue_send import FROM, body, codes_in_db, people, smtp_env


def sent_days_ago(conn: psycopg.Connection[Any], days: int, expires_in_days: int) -> None:
    """Every invite sent `days` ago, expiring in `expires_in_days`."""
    conn.execute(
        """
        UPDATE beta_invites SET sent_at = now() - make_interval(days => %s),
               expires_at = now() + make_interval(days => %s)
        """,
        (days, expires_in_days),
    )
    conn.commit()


def issue(invites: Invoke, cohort: str, *emails: str) -> None:
    args = [item for email in emails for item in ("--email", email)]
    assert invites("generate", "--cohort", cohort, *args).exit_code == 0


def test_each_invite_owed_a_reminder_gets_one_with_its_code(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    issue(invites, "press-a", "due@example.com", "redeemed@example.com", "revoked@example.com")
    issue(invites, "press-a", "suppressed@example.com", "bounced@example.com")
    issue(invites, "creator-b", "other-cohort@example.com")
    sent_days_ago(conn, 8, 2)
    issue(invites, "press-a", "unsent@example.com")  # never sent: nothing to remind
    issue(invites, "press-a", "later@example.com")
    conn.execute(
        "UPDATE beta_invites SET sent_at = now() - interval '8 days', expires_at = now() + interval '10 days'"
        " WHERE email = 'later@example.com'"
    )
    issue(invites, "press-a", "just-sent@example.com")
    conn.execute(
        "UPDATE beta_invites SET sent_at = now() - interval '2 hours', expires_at = now() + interval '2 days'"
        " WHERE email = 'just-sent@example.com'"
    )
    conn.execute("UPDATE beta_invites SET used_at = now() WHERE email = 'redeemed@example.com'")
    conn.execute(
        "UPDATE beta_invites SET delivery_outcome = 'bounced' WHERE email LIKE 'bounced@%'"
    )
    conn.commit()
    suppression.add(conn, ["suppressed@example.com"], reason="unsubscribed", source="test")
    conn.commit()
    assert invites("revoke", codes_in_db(conn, "press-a")["revoked@example.com"]).exit_code == 0
    codes = codes_in_db(conn, "press-a")
    with SmtpServer(Behaviour()) as server:
        result = invites(
            "remind", "--cohort", "press-*", "--before-expiry", "3d", env=smtp_env(server)
        )
        assert (result.exit_code, result.stderr) == (
            0,
            "reminded 1, failed 0, bounced 0, skipped 0\n",
        )
        received = server.recorder.by_recipient()
        assert list(received) == ["due@example.com"]
        (message,) = received["due@example.com"]
        assert message["X-Invite-Code"] == codes["due@example.com"]
        assert message["Subject"] == "A reminder: your beta invitation is waiting"
        assert codes["due@example.com"] in body(message)
        assert codes["due@example.com"] in body(message, "html")
        # From cron, every few minutes: nothing more.
        again = invites(
            "remind", "--cohort", "press-*", "--before-expiry", "3d", env=smtp_env(server)
        )
        # just-sent@ is due its step, but was invited two hours ago: said, not sent.
        assert (again.exit_code, again.stderr) == (
            0,
            "no reminders due; 1 more not yet: invited or reminded less than a day ago\n",
        )
        assert len(server.recorder.messages) == 1
    row = conn.execute(
        """
        SELECT r.step, r.about_expiry = i.expires_at, r.message_id = e.detail->>'message_id', e.actor
          FROM beta_invites_reminders r
          JOIN beta_invites i ON i.id = r.invite_id
          JOIN beta_invites_events e ON e.invite_id = i.id AND e.kind = 'reminded'
        """
    ).fetchall()
    assert row == [("before-expiry 3d", True, True, "operator")]


def test_after_sent_and_before_expiry_steps(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    issue(invites, "c", "a@example.com", "b@example.com", "recent@example.com")
    sent_days_ago(conn, 8, 20)
    conn.execute(
        "UPDATE beta_invites SET expires_at = now() + interval '1 day' WHERE email = 'b@example.com'"
    )
    conn.execute(  # sent two days ago: its after-sent 7d step is not due
        "UPDATE beta_invites SET sent_at = now() - interval '2 days' WHERE email LIKE 'recent@%'"
    )
    conn.commit()
    with SmtpServer(Behaviour()) as server:
        both = ["--cohort", "c", "--after-sent", "7d", "--before-expiry", "72h"]
        assert invites("remind", *both, env=smtp_env(server)).exit_code == 0
        # Both were due a's first step; b was due both at once and got one message.
        assert sorted(server.recorder.by_recipient()) == ["a@example.com", "b@example.com"]
        assert len(server.recorder.messages) == 2
    steps = conn.execute(
        "SELECT i.email, r.step FROM beta_invites_reminders r JOIN beta_invites i ON i.id = r.invite_id"
        " ORDER BY 1, 2"
    ).fetchall()
    assert steps == [
        ("a@example.com", "after-sent 7d"),
        ("b@example.com", "after-sent 7d"),
        ("b@example.com", "before-expiry 3d"),
    ]


def test_extend_then_remind_talks_about_the_new_date(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    issue(invites, "c", "a@example.com")
    sent_days_ago(conn, 8, 2)
    code = codes_in_db(conn, "c")["a@example.com"]
    remind = ["remind", "--cohort", "c", "--before-expiry", "3d", "--after-sent", "7d"]
    with SmtpServer(Behaviour()) as server:
        assert invites(*remind, env=smtp_env(server)).exit_code == 0
        assert invites("extend", code, "--by", "1d").exit_code == 0
        new_expiry = conn.execute(
            "SELECT to_char(expires_at, 'YYYY-MM-DD') FROM beta_invites"
        ).fetchone()
        assert new_expiry is not None
        # Within a day of the first reminder: none yet.
        assert invites(*remind, env=smtp_env(server)).stderr == (
            "no reminders due; 1 more not yet: invited or reminded less than a day ago\n"
        )
        conn.execute("UPDATE beta_invites_reminders SET reminded_at = now() - interval '2 days'")
        conn.execute("UPDATE beta_invites SET reminded_at = now() - interval '2 days'")
        conn.commit()
        assert invites(*remind, env=smtp_env(server)).exit_code == 0
        first, second = server.recorder.by_recipient()["a@example.com"]
        assert new_expiry[0] in body(second)
        assert new_expiry[0] not in body(first)
        # The after-sent step is once per invite, an extension or not.
    assert conn.execute(
        "SELECT step, count(*) FROM beta_invites_reminders GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("after-sent 7d", 1), ("before-expiry 3d", 2)]
    events = conn.execute("SELECT kind, actor FROM beta_invites_events ORDER BY id").fetchall()
    assert events == [
        ("issued", "operator"),
        ("sent", "host"),  # sent_days_ago() above
        ("extended", "host"),
        ("reminded", "operator"),  # one event per step recorded
        ("reminded", "operator"),
        ("extended", "operator"),
        ("reminded", "operator"),
    ]


def test_two_reminder_runs_at_once_remind_nobody_twice(
    invites: Invoke, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(120, tmp_path)
    assert invites("generate", "--cohort", "press-x", "--recipients", "people.csv").exit_code == 0
    sent_days_ago(conn, 8, 2)
    with SmtpServer(Behaviour(delay=0.002)) as server:
        env = {**smtp_env(server), "DATABASE_URL": db_url}
        command = ["remind", "--cohort", "press-*", "--before-expiry", "3d", "--connections", "3"]
        procs = [invites_process(*command, env=env) for _ in range(2)]
        outcomes = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outcomes
        received = server.recorder.by_recipient()
    assert len(received) == 120
    assert all(len(messages) == 1 for messages in received.values())
    assert conn.execute("SELECT count(*) FROM beta_invites_reminders").fetchone() == (120,)


def test_killed_mid_run_then_rerun(
    invites: Invoke, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(60, tmp_path)
    assert invites("generate", "--cohort", "press-x", "--recipients", "people.csv").exit_code == 0
    sent_days_ago(conn, 8, 2)
    codes = codes_in_db(conn)
    with SmtpServer(Behaviour(delay=0.02)) as server:
        env = {**smtp_env(server), "DATABASE_URL": db_url}
        command = ["remind", "--cohort", "press-x", "--before-expiry", "3d", "--connections", "2"]
        proc = invites_process(*command, env=env)
        deadline = time.monotonic() + 30
        while len(server.recorder.messages) < 15 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 15 <= len(server.recorder.messages) < 60
        rerun = invites_process(*command, env=env)
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        received = server.recorder.by_recipient()
    assert set(received) == set(codes)
    twice = [email for email, messages in received.items() if len(messages) > 1]
    assert len(twice) <= 2  # at most the one in flight per connection at the kill
    for email, messages in received.items():
        assert {m["X-Invite-Code"] for m in messages} == {codes[email]}
    assert conn.execute("SELECT count(*) FROM beta_invites_reminders").fetchone() == (60,)


def test_dry_run_and_usage(invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    issue(invites, "c", "a@example.com", "b@example.com", "new@example.com")
    sent_days_ago(conn, 8, 2)
    conn.execute("UPDATE beta_invites SET sent_at = now() WHERE email = 'new@example.com'")
    conn.commit()
    outbox = str(tmp_path / "mail")
    dry = invites(
        "remind", "--cohort", "c", "--before-expiry", "3d", "--outbox", outbox, "--dry-run"
    )
    assert dry.exit_code == 0
    assert "Subject: A reminder: your beta invitation is waiting" in dry.stdout
    assert dry.stderr == (
        "dry run: would send 2 reminder(s); 1 more not yet: invited or reminded less than a "
        "day ago; nothing was sent\n"
    )
    assert conn.execute("SELECT count(*) FROM beta_invites_reminders").fetchone() == (0,)
    assert not (tmp_path / "mail").exists() or not any((tmp_path / "mail").iterdir())
    none = invites("remind", "--cohort", "c")
    assert none.exit_code == 2
    assert "give --before-expiry DURATION and/or --after-sent DURATION" in none.stderr
    bad = invites("remind", "--cohort", "c", "--before-expiry", "soon")
    assert bad.exit_code == 2 and "'soon' is not a duration" in bad.stderr
    assert FROM  # the From address comes from INVITES_FROM (smtp_env)


def test_a_bounced_reminder_is_matched_by_its_message_id(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    issue(invites, "c", "a@example.com")
    sent_days_ago(conn, 8, 2)
    outbox = str(tmp_path / "mail")
    assert (
        invites("remind", "--cohort", "c", "--before-expiry", "3d", "--outbox", outbox).exit_code
        == 0
    )
    row = conn.execute("SELECT message_id FROM beta_invites_reminders").fetchone()
    assert row is not None
    # The report names another address (a forwarder's): only the Message-ID can match it.
    (tmp_path / "dsn.eml").write_bytes(dsn_samples.postfix("alias@forwarder.example", row[0]))
    imported = invites("bounces", "import", str(tmp_path / "dsn.eml"))
    assert imported.exit_code == 0, imported.stderr
    status = conn.execute("SELECT delivery_outcome FROM beta_invites").fetchone()
    assert status == ("bounced",)


def test_report_counts_reminded_and_redeemed_after_a_reminder(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    issue(invites, "press-a", "a@example.com", "b@example.com", "c@example.com")
    issue(invites, "press-b", "d@example.com")
    sent_days_ago(conn, 8, 2)
    conn.execute("UPDATE beta_invites SET used_at = now() WHERE email = 'c@example.com'")
    conn.commit()
    outbox = str(tmp_path / "mail")
    assert (
        invites("remind", "--cohort", "*", "--before-expiry", "3d", "--outbox", outbox).exit_code
        == 0
    )
    codes = codes_in_db(conn, "press-a")
    assert invites("redeem", codes["a@example.com"]).exit_code == 0
    report = json.loads(invites("report", "--format", "json").stdout)
    counts = {
        r["cohort"]: (r["reminded"], r["redeemed_after_reminder"], r["redeemed"]) for r in report
    }
    assert counts == {"press-a": (2, 1, 2), "press-b": (1, 0, 0)}
