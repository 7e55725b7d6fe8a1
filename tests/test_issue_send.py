from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Invoke, invites_process
from tests.smtp import Behaviour, SmtpServer

FROM = {"INVITES_FROM": "Beta Team <beta@example.com>"}


def codes_in_db(conn: psycopg.Connection[Any], cohort: str = "press-x") -> dict[str, str]:
    return dict(
        conn.execute("SELECT email, code FROM beta_invites WHERE cohort = %s", (cohort,)).fetchall()
    )


def unsent(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM beta_invites WHERE sent_at IS NULL").fetchone()
    return int(row[0]) if row else -1


def body(message: Any, subtype: str = "plain") -> str:
    """The decoded text (or html) part of a message."""
    part = next(p for p in message.walk() if p.get_content_type() == f"text/{subtype}")
    return str(part.get_payload(decode=True).decode(part.get_content_charset() or "ascii"))


def smtp_env(server: SmtpServer) -> dict[str, str]:
    return {"SMTP_URL": server.url, **FROM}


def people(n: int, tmp_path: Path, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_text("email\n" + "".join(f"person{i}@example.com\n" for i in range(n)))
    return path


def test_500_recipients_each_get_exactly_their_own_code(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(500, tmp_path)
    with SmtpServer() as server:
        result = invites(
            "send", "--cohort", "press-x", "--recipients", "people.csv", env=smtp_env(server)
        )
        assert result.exit_code == 0, result.stderr
        assert result.stderr.splitlines()[-1] == "sent 500, failed 0, bounced 0, skipped 0"
        received = server.recorder.by_recipient()
        codes = codes_in_db(conn)
        assert len(received) == 500 and set(received) == set(codes)
        for email, messages in received.items():
            assert len(messages) == 1
            assert codes[email] in body(messages[0])
            assert messages[0]["X-Invite-Code"] == codes[email]
            assert messages[0]["From"] == "Beta Team <beta@example.com>"
        # Each of the 4 default connections is opened once and kept for the whole batch.
        assert server.recorder.connections == 4
        assert unsent(conn) == 0

        again = invites(
            "send", "--cohort", "press-x", "--recipients", "people.csv", env=smtp_env(server)
        )
        assert again.exit_code == 0
        assert again.stderr.splitlines()[-1] == "sent 0, failed 0, bounced 0, skipped 500"
        assert len(server.recorder.messages) == 500


def test_send_delivers_what_generate_issued(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    invites(
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        "--email",
        "b@example.com",
        "--format",
        "csv",
    )
    invites("generate", "--cohort", "other", "--email", "c@example.com", "--format", "csv")
    with SmtpServer() as server:
        result = invites(
            "send",
            "--cohort",
            "press-x",
            env={**smtp_env(server), "INVITES_REPLY_TO": "help@example.com"},
        )
        assert result.exit_code == 0, result.stderr
        assert result.stderr == "sent 2, failed 0, bounced 0, skipped 0\n"
        assert sorted(server.recorder.by_recipient()) == ["a@example.com", "b@example.com"]
        assert server.recorder.messages[0]["Reply-To"] == "help@example.com"
    assert unsent(conn) == 1  # the other cohort's


def test_550_bounces_one_and_451_is_retried(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(5, tmp_path)
    behaviour = Behaviour(
        refuse={"person1@example.com": "550 5.1.1 mailbox unavailable"},
        defer_once={"person3@example.com": "451 4.7.1 try again later"},
    )
    with SmtpServer(behaviour) as server:
        result = invites(
            "send", "--cohort", "press-x", "--recipients", "people.csv", env=smtp_env(server)
        )
        assert result.exit_code == 0
        assert result.stderr.splitlines()[-2:] == [
            "bounced: person1@example.com: 550 5.1.1 mailbox unavailable (recipient-gone);"
            " never sent again",
            "sent 4, failed 0, bounced 1, skipped 0",
        ]
        assert server.recorder.rcpt_attempts["person3@example.com"] == 2
        assert sorted(server.recorder.by_recipient()) == [
            f"person{i}@example.com" for i in (0, 2, 3, 4)
        ]
    not_sent = conn.execute("SELECT email FROM beta_invites WHERE sent_at IS NULL").fetchall()
    assert not_sent == [("person1@example.com",)]


def test_dropped_connection_is_reopened(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(20, tmp_path)
    with SmtpServer(Behaviour(drop_after=7)) as server:
        result = invites(
            "send --cohort press-x --recipients people.csv --connections 1", env=smtp_env(server)
        )
        assert result.exit_code == 0, result.stderr
        received = server.recorder.by_recipient()
        assert len(received) == 20 and all(len(m) == 1 for m in received.values())
        assert server.recorder.connections == 2
    assert unsent(conn) == 0


@pytest.mark.parametrize("connections", [1, 4])
def test_killed_mid_batch_then_rerun(
    invites: Invoke, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path, connections: int
) -> None:
    people(60, tmp_path)
    invites("generate", "--cohort", "press-x", "--recipients", "people.csv", "--format", "csv")
    codes = codes_in_db(conn)
    with SmtpServer(Behaviour(delay=0.02)) as server:
        proc = invites_process(
            "send",
            "--cohort",
            "press-x",
            "--connections",
            str(connections),
            env={**smtp_env(server), "DATABASE_URL": db_url},
        )
        deadline = time.monotonic() + 30
        while len(server.recorder.messages) < 15 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        delivered_before = len(server.recorder.messages)
        assert 15 <= delivered_before < 60
        rerun = invites_process(
            "send", "--cohort", "press-x", env={**smtp_env(server), "DATABASE_URL": db_url}
        )
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        received = server.recorder.by_recipient()
        assert set(received) == set(codes)
        twice = [email for email, messages in received.items() if len(messages) > 1]
        assert len(twice) <= connections  # at most the one in flight per connection at the kill
        for email, messages in received.items():
            assert {m["X-Invite-Code"] for m in messages} == {codes[email]}
    assert unsent(conn) == 0


def test_two_senders_at_once_email_nobody_twice(
    invites: Invoke, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(200, tmp_path)
    with SmtpServer(Behaviour(delay=0.002)) as server:
        procs = [
            invites_process(
                "send",
                "--cohort",
                "press-x",
                "--recipients",
                str(tmp_path / "people.csv"),
                "--connections",
                "4",
                env={**smtp_env(server), "DATABASE_URL": db_url},
            )
            for _ in range(2)
        ]
        outcomes = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outcomes
        received = server.recorder.by_recipient()
        codes = codes_in_db(conn)
        assert len(codes) == 200  # nobody got two codes
        assert set(received) == set(codes)
        assert all(len(messages) == 1 for messages in received.values())
        sent_counts = sorted(
            int(err.strip().splitlines()[-1].split()[1].rstrip(",")) for _, err in outcomes
        )
        assert sum(sent_counts) == 200


def test_outbox_default_only_on_the_embedded_database(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    refused = invites("send", "--cohort", "press-x", "--email", "a@example.com")
    assert refused.exit_code == 1
    assert (
        refused.stderr
        == "Error: SMTP_URL is not set: set it to email the invitations, or pass --outbox DIR to write them as .eml files\n"
    )
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)
    written = invites("send", "--cohort", "press-x", "--email", "a@example.com", "--outbox", "mail")
    assert written.exit_code == 0, written.stderr
    (eml,) = (tmp_path / "mail").glob("*.eml")
    code = codes_in_db(conn)["a@example.com"]
    assert eml.name == f"{code}.eml" and code in eml.read_text()
    assert "Nothing was emailed: 1 message(s) were written to mail/" in written.stderr


def test_template_placeholders_are_checked_before_sending(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "bad.txt").write_text("Subject: Hi {name}\n\nYour code {code}\n")
    with SmtpServer() as server:
        bad = invites(
            "send",
            "--cohort",
            "press-x",
            "--email",
            "a@example.com",
            "--template",
            "bad.txt",
            env=smtp_env(server),
        )
        assert bad.exit_code == 1
        assert (
            bad.stderr
            == "Error: bad.txt: unknown placeholder {name}; use {code}, {link}, {cohort}, {expires}, {email}\n"
        )
        (tmp_path / "link.txt").write_text("Subject: Join {cohort}\n\nGo to {link}\n")
        nolink = invites(
            "send",
            "--cohort",
            "press-x",
            "--email",
            "a@example.com",
            "--template",
            "link.txt",
            env=smtp_env(server),
        )
        assert nolink.stderr == "Error: link.txt uses {link} but INVITES_SIGNUP_URL is not set\n"
        assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)
        good = invites(
            "send",
            "--cohort",
            "press-x",
            "--email",
            "a@example.com",
            "--template",
            "link.txt",
            env={**smtp_env(server), "INVITES_SIGNUP_URL": "https://app.example.com/join/{code}"},
        )
        assert good.exit_code == 0, good.stderr
        (message,) = server.recorder.messages
        code = codes_in_db(conn)["a@example.com"]
        assert message["Subject"] == "Join press-x"
        assert body(message).strip() == f"Go to https://app.example.com/join/{code}"


def test_smtp_needs_from_and_hides_its_password(invites: Invoke) -> None:
    result = invites(
        "send",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        env={"SMTP_URL": "smtp://u:pw-secret@127.0.0.1:1"},
    )
    assert result.stderr == "Error: INVITES_FROM is not set: the From address of the invitations\n"
    unreachable = invites(
        "send",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        env={"SMTP_URL": "smtp://u:pw-secret@127.0.0.1:1", **FROM},
    )
    assert unreachable.exit_code == 1
    assert (
        "Error: cannot connect to the mail server smtp://u:***@127.0.0.1:1:" in unreachable.stderr
    )
    assert "pw-secret" not in unreachable.output


def test_dry_run_writes_nothing(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    invites("generate", "--cohort", "press-x", "--email", "a@example.com", "--format", "csv")
    with SmtpServer() as server:
        result = invites(
            "send",
            "--cohort",
            "press-x",
            "--email",
            "b@example.com",
            "--dry-run",
            env=smtp_env(server),
        )
        assert result.exit_code == 0, result.stderr
        assert server.recorder.messages == []
    assert (
        "To: a@example.com" in result.stdout and codes_in_db(conn)["a@example.com"] in result.stdout
    )
    assert (
        result.stderr
        == "dry run: would issue 1 new invite(s) (skip 0) and send 2 message(s); nothing was written or sent\n"
    )
    assert conn.execute("SELECT count(*), count(sent_at) FROM beta_invites").fetchone() == (1, 0)


def test_limit_sends_in_waves(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(5, tmp_path)
    with SmtpServer() as server:
        first = invites(
            "send",
            "--cohort",
            "press-x",
            "--recipients",
            "people.csv",
            "--limit",
            "2",
            env=smtp_env(server),
        )
        assert first.stderr.splitlines()[-1] == "sent 2, failed 0, bounced 0, skipped 0"
        assert unsent(conn) == 3
        second = invites(
            "send", "--cohort", "press-x", "--limit", "10", "--rate", "200", env=smtp_env(server)
        )
        assert second.stderr == "sent 3, failed 0, bounced 0, skipped 0\n"
        assert len(server.recorder.messages) == 5


def test_resend(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    invites(
        "generate",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        "--email",
        "b@example.com",
        "--mark-sent",
        "--format",
        "csv",
    )
    invites("generate", "--cohort", "press-x", "--email", "c@example.com", "--format", "csv")
    codes = codes_in_db(conn)
    conn.execute("UPDATE beta_invites SET used_at = now() WHERE email = 'b@example.com'")
    with SmtpServer() as server:
        refused = invites(
            "resend",
            codes["a@example.com"].lower(),
            codes["b@example.com"],
            codes["c@example.com"],
            env=smtp_env(server),
        )
        assert refused.exit_code == 1
        lines = refused.stderr.splitlines()
        assert lines[0].startswith(f"Error: {codes['b@example.com']} was redeemed at ")
        assert (
            lines[1]
            == f"Error: {codes['c@example.com']} has not been sent yet: use `invites send --cohort press-x`"
        )
        assert lines[2] == "Error: nothing was resent"
        assert server.recorder.messages == []
        ok = invites("resend", "--cohort", "press-x", env=smtp_env(server))
        assert ok.exit_code == 0, ok.stderr
        (message,) = server.recorder.messages
        assert message["To"] == "a@example.com" and codes["a@example.com"] in body(message)
    # The new Message-ID is kept: a bounce of the resent message finds its invite.
    row = conn.execute(
        "SELECT message_id FROM beta_invites WHERE email = 'a@example.com'"
    ).fetchone()
    assert row is not None and f"<{row[0]}>" == message["Message-ID"]


def test_resend_a_cohort_over_four_connections(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(40, tmp_path)
    invites("generate --cohort press-x --recipients people.csv --mark-sent --format csv")
    conn.execute("UPDATE beta_invites SET revoked_at = now() WHERE email = 'person7@example.com'")
    with SmtpServer(Behaviour(delay=0.01)) as server:
        result = invites("resend --cohort press-x --connections 4", env=smtp_env(server))
        assert result.exit_code == 0, result.stderr
        assert result.stderr.splitlines()[-1] == "sent 39, failed 0, bounced 0, skipped 0"
        received = server.recorder.by_recipient()
        assert server.recorder.connections == 4
    assert len(received) == 39 and all(len(m) == 1 for m in received.values())
    assert "person7@example.com" not in received


def test_resend_a_cohort_says_what_it_left_out(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(4, tmp_path)
    invites("generate --cohort press-x --recipients people.csv --mark-sent --format csv")
    assert invites("suppress add person1@example.com --reason unsubscribed").exit_code == 0
    conn.execute(
        "UPDATE beta_invites SET delivery_outcome = 'bounced' WHERE email = 'person2@example.com'"
    )
    with SmtpServer() as server:
        result = invites("resend --cohort press-x", env=smtp_env(server))
        assert result.exit_code == 0, result.stderr
        assert result.stderr.splitlines()[-2:] == [
            "not sent: 1 suppressed (unsubscribed 1); 1 bounced earlier",
            "sent 2, failed 0, bounced 0, skipped 2",
        ]
        assert sorted(server.recorder.by_recipient()) == [
            "person0@example.com",
            "person3@example.com",
        ]
    conn.execute(
        "UPDATE beta_invites SET revoked_at = now() WHERE email IN "
        "('person0@example.com', 'person3@example.com')"
    )
    nothing = invites("resend --cohort press-x", env={"INVITES_OUTBOX": "mail"})
    assert nothing.stderr == (
        "nothing to resend in press-x: no sent, live invites (not resent: 1 suppressed "
        "(unsubscribed 1); 1 bounced earlier)\n"
    )


@pytest.mark.parametrize("url", ["http://example.com", "smtp://"])
def test_bad_smtp_url(invites: Invoke, url: str) -> None:
    result = invites(
        "send", "--cohort", "press-x", "--email", "a@example.com", env={"SMTP_URL": url, **FROM}
    )
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465\n"
    )


def test_ctrl_c_stops_after_the_current_message(
    invites: Invoke, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(40, tmp_path)
    invites("generate", "--cohort", "press-x", "--recipients", "people.csv", "--format", "csv")
    with SmtpServer(Behaviour(delay=0.05)) as server:
        proc = invites_process(
            "send", "--cohort", "press-x", env={**smtp_env(server), "DATABASE_URL": db_url}
        )
        deadline = time.monotonic() + 30
        while len(server.recorder.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        lines = err.splitlines()
        assert lines[-1] == "interrupted: run the same command again to send the rest"
        sent = int(lines[-2].split()[1].rstrip(","))
        # Every message the server accepted was recorded, and nothing more was sent.
        assert len(server.recorder.messages) == sent
        assert unsent(conn) == 40 - sent


def test_rate_is_shared_by_all_connections(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # 9 messages at 20 per second leave at least 8 intervals of 50 ms between their starts,
    # however many connections send them; each connection alone would allow 4 times that.
    people(9, tmp_path)
    with SmtpServer() as server:
        started = time.monotonic()
        result = invites(
            "send --cohort press-x --recipients people.csv --rate 20 --connections 4",
            env=smtp_env(server),
        )
        elapsed = time.monotonic() - started
        assert result.exit_code == 0, result.stderr
        assert len(server.recorder.messages) == 9
    assert elapsed >= 8 / 20


def test_each_message_ends_only_after_the_one_before_is_committed(
    invites: Invoke, db_url: str, tmp_path: Path
) -> None:
    # The commit of message k overlaps the SMTP exchange of message k+1, but k+1's end of DATA
    # (the moment it may be delivered) waits for it: whenever the server sees a message end,
    # every message before it has its sent_at committed. So a kill at any moment leaves at
    # most one accepted message per connection without sent_at.
    people(40, tmp_path)
    arrived: list[str] = []
    lagging: list[tuple[str, int, int]] = []
    watcher = psycopg.connect(db_url, autocommit=True)
    # A slow disk: every commit that records a message as sent takes 30 ms, far longer than
    # one message's SMTP exchange here.
    watcher.execute(
        """
        CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql
          AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE OF sent_at ON beta_invites
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
        """
    )

    def check(recipient: str) -> None:
        row = watcher.execute(
            "SELECT count(*) FROM beta_invites WHERE sent_at IS NOT NULL"
        ).fetchone()
        committed = row[0] if row else -1
        if committed != len(arrived):
            lagging.append((recipient, len(arrived), committed))
        arrived.append(recipient)

    with watcher, SmtpServer(Behaviour(on_end_of_data=check)) as server:
        result = invites(
            "send --cohort press-x --recipients people.csv --connections 1", env=smtp_env(server)
        )
        assert result.exit_code == 0, result.stderr
    assert len(arrived) == 40
    assert lagging == []


def test_ctrl_c_sends_nothing_after_the_message_in_flight(
    invites: Invoke, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The next invite is locked while a message is in flight: Ctrl-C must release it unsent."""
    people(10, tmp_path)
    invites("generate", "--cohort", "press-x", "--recipients", "people.csv")
    with SmtpServer(Behaviour(delay=0.3)) as server:
        proc = invites_process(
            "send",
            "--cohort",
            "press-x",
            "--connections",
            "1",
            env={**smtp_env(server), "DATABASE_URL": db_url},
        )
        deadline = time.monotonic() + 30
        while len(server.recorder.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        # Message 2 was just answered; 0.1 s later message 3 is in flight (the server holds
        # it 0.3 s) and message 4 is locked, waiting its turn.
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert len(server.recorder.messages) == 3  # 3 finishes; 4 never starts
    assert unsent(conn) == 7


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("{{ ''.__class__ }}", "access to attribute '__class__' of 'str' object is unsafe."),
        ("{% for x in range(10**9) %}x{% endfor %}", "Range too big. The sandbox blocks"),
        ("{{ 1 // 0 }}", "integer division or modulo by zero"),
    ],
)
def test_a_template_that_cannot_be_filled_in_fails_before_anything_is_issued(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path, code: str, reason: str
) -> None:
    (tmp_path / "bad.txt").write_text(f"Subject: Hi\n\nYour code {{{{ code }}}} {code}\n")
    with SmtpServer() as server:
        bad = invites(
            "send --cohort press-x --email a@example.com --template bad.txt", env=smtp_env(server)
        )
        assert bad.exit_code == 1
        assert bad.stderr.startswith(f"Error: bad.txt: cannot be filled in: {reason}")
        assert bad.stderr.count("\n") == 1
        assert server.recorder.messages == []
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)


def test_a_template_that_fails_for_one_recipient_stops_the_run_there(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "odd.txt").write_text(
        "Subject: Hi\n\n{{ code }}{% if email.startswith('zz') %}{{ 1 // 0 }}{% endif %}\n"
    )
    # Issued first, so emailed first (invites go out in the order they were issued).
    assert invites("generate --cohort press-x --email aa@example.com").exit_code == 0
    with SmtpServer() as server:
        run = invites(
            "send --cohort press-x --email zz@example.com --template odd.txt --connections 1",
            env=smtp_env(server),
        )
        assert run.exit_code == 1
        assert run.stderr.splitlines()[-1] == (
            "Error: odd.txt: cannot be filled in: integer division or modulo by zero"
        )
        assert [m["To"] for m in server.recorder.messages] == ["aa@example.com"]
    # The other invite is left unsent and unlocked: a run with a fixed template sends it.
    assert conn.execute(
        "SELECT email, sent_at IS NOT NULL FROM beta_invites ORDER BY email"
    ).fetchall() == [("aa@example.com", True), ("zz@example.com", False)]
