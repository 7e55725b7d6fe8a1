"""Delivery outcomes that last: bounces at send time and by mail later, the suppression list."""

from __future__ import annotations

import hashlib
import json
import mailbox
from pathlib import Path
from typing import Any

import psycopg
import pytest

from beta_invites_cli import unsubscribe
from beta_invites_cli.bounces.mail import read
from tests import dsn_samples
from tests.conftest import Invoke
from tests.smtp import Behaviour, SmtpServer
from tests.test_issue_send import body, people, smtp_env


def outcomes(conn: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT email, sent_at IS NOT NULL, delivery_outcome, delivery_reply FROM beta_invites"
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def suppressed(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    """(hex digest, reason, source) of every entry."""
    return conn.execute(
        "SELECT encode(digest, 'hex'), reason, source FROM beta_invites_suppressions ORDER BY 1"
    ).fetchall()


def digest(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()


def test_a_refusal_for_good_bounces_and_a_rerun_leaves_it_alone(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(4, tmp_path)
    behaviour = Behaviour(
        refuse={
            "person1@example.com": "550 5.1.1 <person1@example.com>: mailbox unavailable",
            "person2@example.com": "550 5.2.1 account disabled",
        }
    )
    with SmtpServer(behaviour) as server:
        first = invites("send --cohort press-x --recipients people.csv", env=smtp_env(server))
        assert first.exit_code == 0, first.stderr
        *bounced, summary = first.stderr.splitlines()[-3:]
        assert sorted(bounced) == [  # in the order they were sent: issue order, then id
            "bounced: person1@example.com: 550 5.1.1 <person1@example.com>: mailbox unavailable"
            " (recipient-gone); never sent again",
            "bounced: person2@example.com: 550 5.2.1 account disabled (recipient-gone);"
            " never sent again",
        ]
        assert summary == "sent 2, failed 0, bounced 2, skipped 0"
        assert outcomes(conn)["person1@example.com"] == (
            False,
            "bounced",
            "550 5.1.1 <recipient>: mailbox unavailable",  # the address is not kept
        )
        assert suppressed(conn) == sorted(
            [
                (digest("person1@example.com"), "bounced", "send"),
                (digest("person2@example.com"), "bounced", "send"),
            ]
        )
        # A cron re-run finds nothing to do and says why, with exit status 0.
        again = invites("send --cohort press-x", env=smtp_env(server))
        assert again.exit_code == 0, again.stderr
        assert again.stderr.splitlines() == [
            "not sent: 2 bounced earlier",
            "sent 0, failed 0, bounced 0, skipped 0",
        ]
        assert server.recorder.rcpt_attempts["person1@example.com"] == 1
        listed = invites("list --status bounced --format json")
        assert sorted(r["email"] for r in json.loads(listed.stdout)) == [
            "person1@example.com",
            "person2@example.com",
        ]
        report = json.loads(invites("report --by cohort --format json").stdout)
        assert [(r["cohort"], r["sent"], r["bounced"], r["pending"]) for r in report] == [
            ("press-x", 2, 2, 4)
        ]


def test_a_refusal_for_now_is_tried_again_and_exits_1(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(2, tmp_path)
    with SmtpServer(Behaviour(refuse={"person0@example.com": "452 4.2.2 mailbox full"})) as server:
        first = invites("send --cohort press-x --recipients people.csv", env=smtp_env(server))
        assert first.exit_code == 1
        assert first.stderr.splitlines()[-1] == "sent 1, failed 1, bounced 0, skipped 0"
        assert outcomes(conn)["person0@example.com"][:2] == (False, "failed")
        assert suppressed(conn) == []
        # The history keeps the reply's codes, never its text.
        assert conn.execute(
            "SELECT e.kind, e.detail FROM beta_invites_events e JOIN beta_invites i"
            " ON i.id = e.invite_id WHERE i.email = 'person0@example.com' ORDER BY e.id"
        ).fetchall() == [
            ("issued", None),
            ("delivery_failed", {"reply_code": "452 4.2.2", "class": "soft"}),
        ]
        server.recorder.behaviour.refuse.clear()
        again = invites("send --cohort press-x", env=smtp_env(server))
        assert again.exit_code == 0
        assert again.stderr.splitlines()[-1] == "sent 1, failed 0, bounced 0, skipped 0"


def test_every_message_carries_a_message_id_kept_with_its_invite(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(3, tmp_path)
    with SmtpServer() as server:
        assert invites("send --cohort press-x --recipients people.csv", env=smtp_env(server))
        sent = {str(m["To"]): str(m["Message-ID"]) for m in server.recorder.messages}
    stored = dict(conn.execute("SELECT email, message_id FROM beta_invites").fetchall())
    assert {email: f"<{mid}>" for email, mid in stored.items()} == sent
    assert all(mid.endswith("@example.com") for mid in stored.values())


@pytest.mark.parametrize(
    "shape", ["postfix", "exim", "exim_plain", "gmail", "exchange"], ids=lambda s: s
)
def test_each_report_shape_names_recipient_status_and_message(shape: str) -> None:
    raw = getattr(dsn_samples, shape)("zoë@example.org", "abc.123@example.com")
    found = read(raw)
    assert found is not None
    (failure,) = found
    assert failure.recipient == "zoë@example.org"
    assert failure.hard
    assert failure.status.startswith("5")
    assert failure.message_id == "abc.123@example.com"


def test_reports_that_are_not_hard_bounces() -> None:
    soft = read(dsn_samples.delayed("ada@example.org", "m@example.com"))
    assert soft is not None and [(f.hard, f.status) for f in soft] == [(False, "4.2.2")]
    complaints = read(dsn_samples.complaint("ada@example.org", "m@example.com"))
    assert complaints is not None
    (complaint,) = complaints
    assert (complaint.complaint, complaint.recipient) == (True, "ada@example.org")
    assert read(dsn_samples.newsletter()) is None


def test_bounces_import_matches_records_suppresses_and_imports_once(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(8, tmp_path)
    with SmtpServer() as server:
        assert invites("send --cohort press-x --recipients people.csv", env=smtp_env(server))
    ids = dict(conn.execute("SELECT email, message_id FROM beta_invites").fetchall())
    reports = tmp_path / "reports"
    reports.mkdir()
    for i, shape in enumerate(["postfix", "exim", "exim_plain", "gmail", "exchange"]):
        address = f"person{i}@example.com"
        (reports / f"{shape}.eml").write_bytes(getattr(dsn_samples, shape)(address, ids[address]))
    # In an mbox: a soft bounce, a complaint, a report about a message we never sent, a
    # report whose Message-ID is unknown but whose recipient is ours, and a newsletter.
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    box.add(dsn_samples.delayed("person5@example.com", ids["person5@example.com"]))
    box.add(dsn_samples.complaint("person6@example.com", ids["person6@example.com"]))
    box.add(dsn_samples.postfix("stranger@example.org", "unknown@elsewhere.example"))
    box.add(dsn_samples.gmail("PERSON7@Example.com", "forwarded@elsewhere.example"))
    box.add(dsn_samples.newsletter())
    box.flush()
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(dsn_samples.exchange("person3@example.com", ids["person3@example.com"]))

    first = invites("bounces import reports bounces.mbox Maildir")
    assert first.exit_code == 0, first.stderr
    assert first.stderr.splitlines() == [
        "unmatched: bounces.mbox message 3: stranger@example.org <unknown@elsewhere.example>:"
        " no invite of ours",
        "soft: bounces.mbox message 1: person5@example.com 4.2.2 (delayed)",
        # Exim's 550 5.7.1 (under a Status: 5.0.0) is a policy refusal: the sender's fault.
        "sender refused: reports/exim.eml: person1@example.com 550 5.7.1: the sender's fault,"
        " not suppressed",
        "not a bounce: bounces.mbox message 5",
        "read 11 report(s): matched 7 [recipient-gone 6, sender-refused 1] (6 new), complaints 1,"
        " unmatched 1, soft 1, not a bounce 1; 6 address(es) newly suppressed",
    ]
    bounced = sorted(e for e, (_, outcome, _) in outcomes(conn).items() if outcome == "bounced")
    assert bounced == [f"person{i}@example.com" for i in (0, 2, 3, 4, 7)]
    assert outcomes(conn)["person1@example.com"][1] == "failed"
    assert outcomes(conn)["person0@example.com"][2] == (
        "5.1.1 smtp; 550 5.1.1 <recipient>: Recipient address rejected: User unknown in"
        " virtual mailbox table"
    )
    reasons = {row[0]: row[1] for row in suppressed(conn)}
    assert reasons[digest("person6@example.com")] == "complained"
    assert reasons[digest("person7@example.com")] == "bounced"
    assert digest("person5@example.com") not in reasons
    before = (outcomes(conn), suppressed(conn))

    again = invites("bounces import reports bounces.mbox Maildir")
    assert again.exit_code == 0
    assert again.stderr.splitlines()[-1] == (
        "read 11 report(s): matched 7 [recipient-gone 6, sender-refused 1] (0 new), complaints 1,"
        " unmatched 1, soft 1,"
        " not a bounce 1; 0 address(es) newly suppressed"
    )
    assert (outcomes(conn), suppressed(conn)) == before


def test_the_readme_unsubscribe_endpoint_answers_strangers_quietly(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    """The README's one-click endpoint, as written there: a bot's garbage, a code we never
    issued and a real one; only the real one suppresses, and none raises."""
    from beta_invites_cli import InvalidCode, UnknownCode

    def one_click_unsubscribe(conn: psycopg.Connection[Any], code: str) -> None:
        with conn.transaction():
            try:  # noqa: SIM105 - as the README writes it
                unsubscribe(conn, code=code)
            except (InvalidCode, UnknownCode):
                pass

    assert invites("generate --cohort press-x --email ada@example.com").exit_code == 0
    (code,) = conn.execute("SELECT code FROM beta_invites").fetchone() or ("",)
    for stranger in ("<script>", "x" * 5000, "", "AAAA-AAAA-AAAA-AAAA"):
        one_click_unsubscribe(conn, stranger)
    assert suppressed(conn) == []
    with pytest.raises(UnknownCode) as unknown:
        unsubscribe(conn, code="aaaa-aaaa-aaaa-aaaa")
    assert str(unknown.value) == "AAAAAAAAAAAAAAAA is not an invite code we issued"
    one_click_unsubscribe(conn, code)
    assert len(suppressed(conn)) == 1
    # An invite whose address the sweep removed: nothing left to suppress, and no error.
    assert invites("generate --cohort press-x --email old@example.com").exit_code == 0
    conn.execute(
        "UPDATE beta_invites SET expires_at = now() - interval '40 days' WHERE email = 'old@example.com'"
    )
    conn.commit()
    (old,) = conn.execute(
        "SELECT code FROM beta_invites WHERE email = 'old@example.com'"
    ).fetchone() or ("",)
    assert invites("expire").exit_code == 0
    assert unsubscribe(conn, code=old) is False
    assert len(suppressed(conn)) == 1


def test_suppression_outlives_the_sweep_and_stops_issuing(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    assert invites("generate --cohort press-x --email Ada@Example.com --format csv")
    row = conn.execute("SELECT code FROM beta_invites").fetchone()
    assert row is not None
    code = row[0]
    assert unsubscribe(conn, code=code.lower()) is True
    assert unsubscribe(conn, email="ada@example.com") is False  # already on the list
    conn.execute("UPDATE beta_invites SET expires_at = now() - interval '40 days'")
    assert invites("expire").exit_code == 0
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE email LIKE '%ada%'"
    ).fetchone() == (0,)
    # The list holds no address, yet still knows Ada, whatever the case she types.
    assert "ada" not in json.dumps(invites("suppress list --format json").stdout).lower()
    again = invites("generate --cohort press-y --email ADA@example.com --format csv")
    assert again.exit_code == 0
    assert again.stderr.splitlines() == [
        "skipped: ADA@example.com: is suppressed (unsubscribed); --include-suppressed issues a"
        " code anyway",
        "created 0, skipped 1, invalid 0, duplicates 0",
    ]
    forced = invites("generate --cohort press-y --email ADA@example.com --include-suppressed")
    assert "created 1" in forced.stderr
    with SmtpServer() as server:
        sent = invites("send --cohort press-y", env=smtp_env(server))
        assert sent.stderr.splitlines() == [
            "not sent: 1 suppressed (unsubscribed 1)",
            "sent 0, failed 0, bounced 0, skipped 0",
        ]
        assert server.recorder.messages == []


def test_suppress_commands(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    added = invites("suppress add ada@example.com Grace@Example.com --reason unsubscribed")
    assert (added.exit_code, added.stderr) == (0, "suppressed 2, already suppressed 0\n")
    assert invites("suppress add ada@example.com").stderr == "suppressed 0, already suppressed 1\n"
    bad = invites("suppress add not-an-address ada@example.com")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: 'not-an-address': ")
    checked = json.loads(
        invites("suppress check grace@example.com bob@example.com --format json").stdout
    )
    assert [(c["email"], c["suppressed"], c["reason"]) for c in checked] == [
        ("grace@example.com", True, "unsubscribed"),
        ("bob@example.com", False, None),
    ]
    listed = json.loads(invites("suppress list --format json").stdout)
    assert sorted(e["digest"] for e in listed) == sorted(
        [digest("ada@example.com"), digest("grace@example.com")]
    )
    assert {e["source"] for e in listed} == {"suppress-add"}
    removed = invites("suppress remove GRACE@example.com bob@example.com")
    assert removed.stderr == "removed 1, not on the list 1\n"
    assert [r[0] for r in suppressed(conn)] == [digest("ada@example.com")]
    # The SQL digest is the Python one: what the host's own SQL can check.
    row = conn.execute(
        "SELECT encode(public.invites_email_digest('ADA@example.com'), 'hex')"
    ).fetchone()
    assert row == (digest("ada@example.com"),)


def test_html_part_escapes_values_and_headers_offer_unsubscribe(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    settings = {
        "INVITES_SIGNUP_URL": "https://app.example.com/join?code={code}&src=mail",
        "INVITES_UNSUBSCRIBE_MAILTO": "unsubscribe@example.com",
        "INVITES_UNSUBSCRIBE_URL": "https://app.example.com/unsubscribe?code={code}",
    }
    with SmtpServer() as server:
        result = invites(
            "send",
            "--cohort",
            "<script>alert(1)</script>",
            "--email",
            "tom&jerry@example.com",
            env={**smtp_env(server), **settings},
        )
        assert result.exit_code == 0, result.stderr
        (message,) = server.recorder.messages
    code = conn.execute("SELECT code FROM beta_invites").fetchone()[0]  # type: ignore[index]
    assert message.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in message.walk()]
    assert kinds == ["multipart/alternative", "text/plain", "text/html"]
    text, page = body(message), body(message, "html")
    assert code in text and code in page
    assert "tom&amp;jerry@example.com" in page and "tom&jerry@example.com" not in page
    assert f'href="https://app.example.com/join?code={code}&amp;src=mail"' in page
    assert " ".join(message["List-Unsubscribe"].split()) == (  # unfolded
        f"<mailto:unsubscribe@example.com?subject=unsubscribe%20{code}>, "
        f"<https://app.example.com/unsubscribe?code={code}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Date"] and message["Message-ID"]
    # As the README says: no line of the message over 78 characters, headers included.
    (raw,) = server.recorder.raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_a_cohort_name_cannot_inject_html_or_headers(invites: Invoke, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(
        "Subject: Welcome to {{ cohort }}\n\nHi {{ email }}\n--- html ---\n<p>{{ cohort }}</p>\n"
    )
    with SmtpServer() as server:
        result = invites(
            "send",
            "--cohort",
            "<b>vip</b>",
            "--email",
            "ada@example.com",
            "--template",
            "t.txt",
            env=smtp_env(server),
        )
        assert result.exit_code == 0, result.stderr
        (message,) = server.recorder.messages
    assert "<p>&lt;b&gt;vip&lt;/b&gt;</p>" in body(message, "html")
    assert message["Subject"] == "Welcome to <b>vip</b>"  # a header is text, not HTML


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("INVITES_UNSUBSCRIBE_URL", "http://app.example.com/u?c={code}", "must be an https:// URL"),
        ("INVITES_UNSUBSCRIBE_URL", "https://app.example.com/u", "must be an https:// URL"),
        ("INVITES_UNSUBSCRIBE_URL", "https://a.example/u?c={code}\r\nBcc: x@y.z", "one line"),
        ("INVITES_UNSUBSCRIBE_MAILTO", "not an address", "is not an email address"),
        ("INVITES_FROM", "Beta Team", "is not an email address"),
    ],
)
def test_bad_sender_settings_are_one_error_before_anything(
    invites: Invoke, conn: psycopg.Connection[Any], name: str, value: str, error: str
) -> None:
    with SmtpServer() as server:
        result = invites(
            "send --cohort press-x --email ada@example.com", env={**smtp_env(server), name: value}
        )
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: ") and error in result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert server.recorder.messages == []
    assert conn.execute("SELECT count(*) FROM beta_invites").fetchone() == (0,)


@pytest.mark.parametrize("connections", [1, 4])
def test_auto_pause_after_failures_in_a_row(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path, connections: int
) -> None:
    people(20, tmp_path)
    refuse = {f"person{i}@example.com": "550 5.1.1 no such user" for i in range(20)}
    with SmtpServer(Behaviour(refuse=refuse)) as server:
        result = invites(
            f"send --cohort press-x --recipients people.csv --max-errors 5 --connections {connections}",
            env=smtp_env(server),
        )
        assert result.exit_code == 1
        assert result.stderr.splitlines()[-1] == (
            "Error: 5 deliveries in a row failed: stopped to protect the sender's reputation; "
            "the rest stay unsent (check the failures, then run again; --max-errors sets the limit)"
        )
        attempts = sum(server.recorder.rcpt_attempts.values())
        # The other connections finish the message they hold: at most N-1 more.
        assert 5 <= attempts <= 5 + connections - 1
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE delivery_outcome = 'bounced'),"
        " count(*) FILTER (WHERE delivery_outcome IS NULL AND sent_at IS NULL) FROM beta_invites"
    ).fetchone()
    assert counts == (attempts, 20 - attempts)


def test_a_421_mid_batch_is_retried_on_a_new_connection(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(10, tmp_path)
    with SmtpServer(Behaviour(shutdown_after=4)) as server:
        result = invites(
            "send --cohort press-x --recipients people.csv --connections 1", env=smtp_env(server)
        )
        assert result.exit_code == 0, result.stderr
        assert result.stderr.splitlines()[-1] == "sent 10, failed 0, bounced 0, skipped 0"
        received = server.recorder.by_recipient()
        assert len(received) == 10 and all(len(m) == 1 for m in received.values())
        assert server.recorder.connections == 2
    assert conn.execute("SELECT count(*) FROM beta_invites WHERE sent_at IS NULL").fetchone() == (
        0,
    )


def test_timeout_option_treats_a_silent_server_as_a_dropped_connection(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    with SmtpServer(Behaviour(silent_after_data={"ada@example.com": 5.0})) as server:
        result = invites(
            "send --cohort press-x --email ada@example.com --email bob@example.com"
            " --connections 1 --timeout 0.5",
            env=smtp_env(server),
        )
        assert result.exit_code == 0, result.stderr
        assert (
            "uncertain: ada@example.com: no answer to the end of the message within 0.5 s;"
            " not sent again (--retry-uncertain decides)"
        ) in result.stderr.splitlines()
        assert result.stderr.splitlines()[-1] == (
            "sent 1, failed 0, bounced 0, uncertain 1, skipped 0"
        )
    rows = dict(conn.execute("SELECT email, delivery_outcome FROM beta_invites").fetchall())
    assert rows == {"ada@example.com": "uncertain", "bob@example.com": None}
