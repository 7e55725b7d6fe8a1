"""What goes on the wire, and what happens when the mail server is strict, slow or silent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Invoke, run_invites, run_with_full_disk
from tests.smtp import Behaviour, SmtpServer, TricklingServer
from tests.test_issue_send import FROM, body, codes_in_db, people, smtp_env

QUICK = {"INVITES_SMTP_TIMEOUT": "1"}


def status_of(conn: psycopg.Connection[Any], email: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT sent_at IS NOT NULL, delivery_outcome, delivery_reply FROM beta_invites"
        " WHERE email = %s",
        (email,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_messages_use_crlf_and_short_lines(invites: Invoke, tmp_path: Path) -> None:
    long_line = "Dear friend, " + "we would love to hear what you think of the beta. " * 16
    assert len(long_line) > 800
    (tmp_path / "long.txt").write_text(f"Subject: Your code\n\n{long_line}\nCode: {{code}}\n")
    with SmtpServer() as server:
        result = invites(
            "send",
            "--cohort",
            "press-x",
            "--email",
            "a@example.com",
            "--template",
            "long.txt",
            env=smtp_env(server),
        )
        assert result.exit_code == 0, result.stderr
        (raw,) = server.recorder.raw
        lines = raw.split(b"\r\n")
        assert all(b"\n" not in line and b"\r" not in line for line in lines)
        assert max(len(line) for line in lines) <= 78
        assert long_line in body(server.recorder.messages[0])


@pytest.mark.parametrize("smtputf8", [True, False])
def test_international_addresses(
    invites: Invoke, conn: psycopg.Connection[Any], smtputf8: bool
) -> None:
    addresses = ["zoë@example.com", "ada@bücher.example", "plain@example.com"]
    with SmtpServer(smtputf8=smtputf8) as server:
        args = ["send", "--cohort", "press-x"]
        for address in addresses:
            args += ["--email", address]
        result = invites(*args, env=smtp_env(server))
        assert "Traceback" not in result.output
        recipients = sorted(rcpt for _, rcpts in server.recorder.envelopes for rcpt in rcpts)
        if smtputf8:
            assert result.exit_code == 0, result.stderr
            assert recipients == [
                "ada@xn--bcher-kva.example",
                "plain@example.com",
                "zoë@example.com",
            ]
        else:
            # Without SMTPUTF8 the one address that needs it fails cleanly; the rest go out.
            assert result.exit_code == 1
            assert recipients == ["ada@xn--bcher-kva.example", "plain@example.com"]
            assert (
                "failed: zoë@example.com: the mail server does not accept internationalised "
                "addresses (no SMTPUTF8)"
            ) in result.stderr
            assert status_of(conn, "zoë@example.com")[:2] == (False, "failed")
            assert result.stderr.splitlines()[-1] == "sent 2, failed 1, bounced 0, skipped 0"


def test_one_bad_recipient_never_stops_the_cohort(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # An address stored by the host application that cannot be encoded for the wire.
    people(3, tmp_path)
    invites("generate", "--cohort", "press-x", "--recipients", "people.csv", "--format", "csv")
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort, created_at)"
        " VALUES ('BADADDRESSAAAAAA', 'x@exa_mple..com', 'press-x', now() - interval '1 day')"
    )
    with SmtpServer() as server:
        result = invites("send", "--cohort", "press-x", env=smtp_env(server))
        # That address can never be written: bounced for good, so a re-run has nothing to do.
        assert result.exit_code == 0
        assert "Traceback" not in result.output
        assert len(server.recorder.messages) == 3
        assert result.stderr.splitlines()[-1] == "sent 3, failed 0, bounced 1, skipped 0"


def test_a_message_whose_answer_never_comes_is_not_sent_again(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(4, tmp_path)
    behaviour = Behaviour(
        silent_after_data={"person1@example.com": 5},
        drop_after_data={"person2@example.com"},
    )
    with SmtpServer(behaviour) as server:
        env = {**smtp_env(server), **QUICK}
        first = invites("send", "--cohort", "press-x", "--recipients", "people.csv", env=env)
        assert first.exit_code == 0  # uncertain ones are not tried again by a re-run: reported
        assert len(server.recorder.messages) == 4  # every message reached the server once
        lines = first.stderr.splitlines()
        assert (
            "uncertain: person1@example.com: no answer to the end of the message within 1 s; "
            "not sent again (--retry-uncertain decides)"
        ) in lines
        assert any(
            line.startswith("uncertain: person2@example.com: the connection was lost")
            for line in lines
        )
        assert lines[-1] == "sent 2, failed 0, bounced 0, uncertain 2, skipped 0"
        assert status_of(conn, "person1@example.com")[:2] == (False, "uncertain")

        # Later runs never send them again on their own, and say so.
        for _ in range(3):
            again = invites("send", "--cohort", "press-x", env=env)
            assert again.exit_code == 0, again.stderr
            assert again.stderr.splitlines() == [
                "warning: 2 invite(s) of press-x have an uncertain delivery from an earlier run "
                "and were not sent again: `invites list --status uncertain` shows them, "
                "--retry-uncertain sends them again (they may arrive twice)",
                "sent 0, failed 0, bounced 0, skipped 0",
            ]
        assert len(server.recorder.messages) == 4
        listed = invites("list", "--status", "uncertain", "--format", "csv")
        assert sorted(line.split(",")[1] for line in listed.stdout.splitlines()[1:]) == [
            "person1@example.com",
            "person2@example.com",
        ]

        # The operator decides: exactly one more copy each.
        server.recorder.behaviour.silent_after_data.clear()
        server.recorder.behaviour.drop_after_data.clear()
        retried = invites("send", "--cohort", "press-x", "--retry-uncertain", env=env)
        assert retried.exit_code == 0, retried.stderr
        assert retried.stderr.splitlines()[-1] == "sent 2, failed 0, bounced 0, skipped 0"
        counts = {k: len(v) for k, v in server.recorder.by_recipient().items()}
        assert counts == {
            "person0@example.com": 1,
            "person1@example.com": 2,
            "person2@example.com": 2,
            "person3@example.com": 1,
        }
        assert status_of(conn, "person1@example.com") == (True, None, None)


def test_a_refusal_is_recorded_without_the_address(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    behaviour = Behaviour(refuse={"ada@example.com": "550 5.1.1 <ada@example.com>: no such user"})
    with SmtpServer(behaviour) as server:
        result = invites(
            "send", "--cohort", "press-x", "--email", "ada@example.com", env=smtp_env(server)
        )
        assert result.exit_code == 0
    assert status_of(conn, "ada@example.com") == (
        False,
        "bounced",
        "550 5.1.1 <recipient>: no such user",
    )
    assert invites("list", "--status", "unsent", "--format", "csv").stdout.count("\n") == 1
    row = conn.execute("SELECT code FROM beta_invites").fetchone()
    assert row is not None
    shown = invites("show", "--format", "json", row[0])
    assert json.loads(shown.stdout)[0]["delivery_reply"] == "550 5.1.1 <recipient>: no such user"


def test_a_server_that_never_answers_changes_nothing(
    db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(3, tmp_path)
    with TricklingServer() as server:
        result = run_invites(
            "send",
            "--cohort",
            "press-x",
            "--recipients",
            str(tmp_path / "people.csv"),
            env={"SMTP_URL": server.url, "DATABASE_URL": db_url, **FROM, **QUICK},
            timeout=60,  # a hang fails the test
        )
    proc, err = result, result.stderr
    assert proc.returncode == 1
    assert err == (
        f"Error: cannot connect to the mail server smtp://127.0.0.1:{server.port}: "
        "no answer in time\n"
    )
    # Reached before anything was issued or locked: nothing changed.
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)


def test_a_server_that_stops_answering_mid_batch_stops_the_run(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(6, tmp_path)
    silent = {f"person{i}@example.com": 3.0 for i in range(6)}
    with SmtpServer(Behaviour(silent_after_data=silent)) as server:
        # One connection: with N, up to N-1 more messages are in flight when the count is hit.
        result = invites(
            "send --cohort press-x --recipients people.csv --connections 1",
            env={**smtp_env(server), **QUICK},
        )
        assert result.exit_code == 1
        assert result.stderr.splitlines()[-1] == (
            f"Error: the mail server smtp://127.0.0.1:{server.port} left 3 messages in a row "
            "without an answer: stopped"
        )
        assert len(server.recorder.messages) == 3
    outcomes = dict(conn.execute("SELECT email, delivery_outcome FROM beta_invites").fetchall())
    assert sorted(outcomes.values(), key=str) == [
        None,
        None,
        None,
        "uncertain",
        "uncertain",
        "uncertain",
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "INVITES_FROM",
            "Beta <beta@example.com>\r\nBcc: all@example.com",
            "INVITES_FROM must be one line",
        ),
        (
            "INVITES_REPLY_TO",
            "help@example.com\nBcc: x@example.com",
            "INVITES_REPLY_TO must be one line",
        ),
        (
            "INVITES_FROM",
            "not an address",
            "INVITES_FROM: 'not an address' is not an email address",
        ),
        ("INVITES_FROM", "zoë@example.com", "INVITES_FROM: 'zoë@example.com': "),
    ],
)
def test_sender_settings_are_checked_at_start(
    invites: Invoke, conn: psycopg.Connection[Any], name: str, value: str, message: str
) -> None:
    with SmtpServer() as server:
        env = {**smtp_env(server), name: value}
        result = invites("send", "--cohort", "press-x", "--email", "a@example.com", env=env)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: {message}")
        assert len(result.stderr.splitlines()) == 1
        assert server.recorder.messages == []
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)


def test_international_sender_names(invites: Invoke) -> None:
    with SmtpServer() as server:
        env = {**smtp_env(server), "INVITES_FROM": "Équipe Bêta <bêta@bücher.example>"}
        env["INVITES_FROM"] = "Équipe Bêta <beta@bücher.example>"
        result = invites("send", "--cohort", "press-x", "--email", "a@example.com", env=env)
        assert result.exit_code == 0, result.stderr
        ((sender, _),) = server.recorder.envelopes
        assert sender == "beta@xn--bcher-kva.example"
        assert str(server.recorder.messages[0]["From"]).startswith("=?utf-8?")


def test_full_disk_while_writing_the_outbox(
    db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(3, tmp_path)
    # The file size limit makes writes fail as a full disk would (EFBIG, not a signal): the
    # spilled list of three people fits in 512 bytes, a message does not.
    proc = run_with_full_disk(
        *["send", "--cohort", "press-x", "--recipients", "people.csv", "--outbox", "mail"],
        limit=512,
        db_url=db_url,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("Error: cannot write mail/")
    assert proc.stderr.splitlines()[-1].endswith(".eml: File too large")
    assert list((tmp_path / "mail").iterdir()) == []  # no half-written .eml.tmp left behind
    row = conn.execute("SELECT count(*) FROM beta_invites WHERE sent_at IS NULL").fetchone()
    assert row == (3,)


def test_resend_rechecks_each_invite_while_it_is_in_flight(
    invites: Invoke, db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """An invite revoked after resend listed it is not mailed."""
    from beta_invites_cli.delivery import resending
    from beta_invites_cli.delivery.channel import Letterhead
    from beta_invites_cli.delivery.outbox import OutboxTransport
    from beta_invites_cli.template import load

    for name in ("keep", "gone"):
        assert (
            invites(
                "send", "--cohort", "c", "--email", f"{name}@example.com", "--outbox", "first"
            ).exit_code
            == 0
        )
    listed = resending.resendable(conn, cohort="c")
    assert len(listed) == 2
    gone = codes_in_db(conn, "c")["gone@example.com"]
    assert invites("revoke", gone).exit_code == 0
    head = Letterhead("b@example.com", None, None, load(None, signup_url=None))
    transport = OutboxTransport(tmp_path / "again")
    transport.connect()
    with psycopg.connect(db_url, autocommit=True) as second:
        outcome = resending.resend([((conn, second), transport)], listed, head)
    assert outcome.sent == 1
    assert [email for email, _ in outcome.failed] == ["gone@example.com"]
    assert [p.name for p in (tmp_path / "again").iterdir()] == [
        f"{codes_in_db(conn, 'c')['keep@example.com']}.eml"
    ]


def test_the_sweep_removes_the_kept_server_reply(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    behaviour = Behaviour(refuse={"ada@example.com": "550 5.1.1 no such user"})
    with SmtpServer(behaviour) as server:
        invites("send", "--cohort", "c", "--email", "ada@example.com", env=smtp_env(server))
    assert status_of(conn, "ada@example.com")[2] == "550 5.1.1 no such user"
    conn.execute("UPDATE beta_invites SET expires_at = now() - interval '1 day'")
    assert invites("expire").exit_code == 0
    row = conn.execute("SELECT email, delivery_reply FROM beta_invites").fetchone()
    assert row is not None and row[0].startswith("anonymized+") and row[1] is None
