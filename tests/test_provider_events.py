"""Provider events (SES, SendGrid, Postmark, Mailgun, Resend) imported like mail reports:
matched by Message-ID or address, read by the same classes, imported once."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import provider_samples as samples
from tests.conftest import Invoke, run_invites
from tests.smtp import SmtpServer
from tests.test_issue_send import people, smtp_env


@pytest.fixture
def sent(invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path) -> dict[str, str]:
    """Twelve invites emailed through a real server: address -> Message-ID."""
    people(12, tmp_path)
    with SmtpServer() as server:
        assert (
            invites("send --cohort c --recipients people.csv", env=smtp_env(server)).exit_code == 0
        )
    return dict(conn.execute("SELECT email, message_id FROM beta_invites").fetchall())


def state(conn: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """email -> (outcome, class, suppression reason)."""
    rows = conn.execute(
        """
        SELECT i.email, i.delivery_outcome, i.delivery_class, s.reason
          FROM beta_invites i
          LEFT JOIN beta_invites_suppressions s ON s.digest = invites_email_digest(i.email)
         WHERE i.delivery_outcome IS NOT NULL OR s.reason IS NOT NULL
        """
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def p(i: int) -> str:
    return f"person{i}@example.com"


def test_each_provider_format_is_read_classified_and_imported_once(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path, sent: dict[str, str]
) -> None:
    files = {
        # SES through SNS, one notification per file as a webhook receiver saves them.
        "ses-1.json": samples.sns(samples.ses_bounce(p(0), sent[p(0)])),
        "ses-2.json": samples.sns(
            samples.ses_bounce(  # Gmail's refusal, which SES calls Permanent: ours to fix
                p(1),
                sent[p(1)],
                status="5.7.26",
                diagnostic="smtp; 550-5.7.26 This mail is unauthenticated, which poses a security risk",
            )
        ),
        "ses-3.json": samples.ses_complaint(p(2), sent[p(2)]),  # event publishing: no envelope
        # SendGrid posts arrays of events.
        "sendgrid.json": [
            samples.sendgrid(
                p(3),
                sent[p(3)],
                "bounce",
                type="bounce",
                status="5.1.1",
                reason="550 5.1.1 The email account does not exist",
            ),
            samples.sendgrid(
                p(4),
                sent[p(4)],
                "bounce",
                type="blocked",
                status="5.0.0",
                reason="554 Blocked by Spamhaus: 203.0.113.9 is listed",
            ),
            samples.sendgrid(
                p(5), sent[p(5)], "deferred", response="451 4.7.1 Greylisted", attempt="1"
            ),
            samples.sendgrid(p(5), sent[p(5)], "delivered", response="250 OK"),
        ],
        "postmark.json": samples.postmark_bounce(
            p(6), sent[p(6)], "HardBounce", "smtp;550 5.1.1 The email account does not exist."
        ),
        "postmark-dmarc.json": samples.postmark_bounce(p(7), sent[p(7)], "DMARCPolicy", ""),
        "mailgun.json": samples.mailgun(p(8), sent[p(8)]),
        "mailgun-full.json": samples.mailgun(
            p(9), sent[p(9)], code=552, message="5.2.2 The email account is over quota"
        ),
        "resend.json": samples.resend(p(10), sent[p(10)], "email.complained"),
    }
    for name, body in files.items():
        (tmp_path / name).write_text(json.dumps(body, indent=2))
    # Resend's and Mailgun's temporary failures as JSON lines, one event a line.
    (tmp_path / "later.jsonl").write_text(
        json.dumps(samples.resend(p(11), sent[p(11)], "email.delivery_delayed"))
        + "\n"
        + json.dumps(
            samples.mailgun(
                p(11), sent[p(11)], severity="temporary", code=421, message="4.4.2 timed out"
            )
        )
        + "\n"
    )
    names = " ".join([*files, "later.jsonl"])
    first = invites(f"bounces import {names}")
    assert first.exit_code == 0, first.stderr
    assert state(conn) == {
        p(0): ("bounced", "recipient-gone", "bounced"),
        p(1): ("failed", "sender-refused", None),
        p(2): (None, None, "complained"),
        p(3): ("bounced", "recipient-gone", "bounced"),
        p(4): ("failed", "sender-refused", None),
        p(6): ("bounced", "recipient-gone", "bounced"),
        p(7): ("failed", "sender-refused", None),
        p(8): ("bounced", "recipient-gone", "bounced"),
        p(9): ("failed", "soft", None),
        p(10): (None, None, "complained"),
    }
    lines = first.stderr.splitlines()
    assert lines[-1] == (
        "read 14 report(s): matched 8 [recipient-gone 4, sender-refused 3, soft 1] (8 new),"
        " complaints 2, unmatched 0, soft 3, not a bounce 1; 6 address(es) newly suppressed"
    )
    # Deliveries the provider still tries: reported, nothing recorded.
    assert [line for line in lines if line.startswith("soft:")] == [
        "soft: sendgrid.json event 3: person5@example.com 4.0.0 (delayed)",
        "soft: later.jsonl line 1: person11@example.com 4.0.0 (delayed)",
        "soft: later.jsonl line 2: person11@example.com 4.4.2 (delayed)",
    ]
    assert "not a bounce: sendgrid.json event 4" in lines  # a delivery
    assert (
        "sender refused: ses-2.json: person1@example.com 550 5.7.26: the sender's fault,"
        " not suppressed"
    ) in lines
    before = state(conn)
    again = invites(f"bounces import {names}")
    assert again.exit_code == 0
    assert "(0 new)" in again.stderr.splitlines()[-1]
    assert "0 address(es) newly suppressed" in again.stderr.splitlines()[-1]
    assert state(conn) == before


def test_the_format_can_be_named_and_input_piped_with_a_malformed_document_reported(
    invites: Invoke, conn: psycopg.Connection[Any], sent: dict[str, str]
) -> None:
    lines = [
        json.dumps(samples.ses_bounce(p(0), sent[p(0)])),
        '{"notificationType": "Bounce", "mail": ',  # cut off
        json.dumps(
            samples.sns(
                samples.ses_bounce(
                    p(1), sent[p(1)], status=None, diagnostic=None, subtype="NoEmail"
                )
            )
        ),
        json.dumps(samples.mailgun(p(2), sent[p(2)])),  # not SES
    ]
    result = invites("bounces import --format ses -", input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-3:] == [
        "Error: standard input line 2: not JSON (column 40)",
        "Error: standard input line 4: not a ses event",
        "Error: the rest was imported",
    ]
    assert state(conn) == {
        p(0): ("bounced", "recipient-gone", "bounced"),
        p(1): ("bounced", "recipient-gone", "bounced"),  # NoEmail: 5.1.1
    }


def test_events_match_by_address_when_the_message_id_is_not_ours(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path, sent: dict[str, str]
) -> None:
    """Postmark's MessageID is its own; a provider that drops our headers is matched by the
    address (any case), as mail reports are."""
    body = samples.postmark_bounce(
        "PERSON3@Example.com", "not-ours@elsewhere", "HardBounce", "smtp;550 5.1.1 no such user"
    )
    body["Headers"] = []
    (tmp_path / "pm.json").write_text(json.dumps(body))
    stranger = samples.sendgrid(
        "stranger@example.org", "x@y", "bounce", status="5.1.1", reason="550 5.1.1 unknown"
    )
    (tmp_path / "sg.json").write_text(json.dumps([stranger]))
    result = invites("bounces import pm.json sg.json")
    assert result.exit_code == 0, result.stderr
    assert state(conn) == {p(3): ("bounced", "recipient-gone", "bounced")}
    assert result.stderr.splitlines()[0] == (
        "unmatched: sg.json event 1: stranger@example.org <x@y>: no invite of ours"
    )


def test_two_imports_at_once_record_each_event_once(
    conn: psycopg.Connection[Any], db_url: str, tmp_path: Path, sent: dict[str, str]
) -> None:
    """A webhook receiver and a cron job importing the same events together: each refusal is
    recorded (and counted new) by exactly one of them, and nothing deadlocks."""
    events = []
    for i in range(12):
        address = p(i)
        if i % 3 == 0:
            events.append(samples.ses_bounce(address, sent[address]))
        elif i % 3 == 1:
            events.append(
                samples.ses_bounce(
                    address,
                    sent[address],
                    status="5.7.1",
                    diagnostic="smtp; 550 5.7.1 rejected by policy",
                )
            )
        else:
            events.append(samples.ses_complaint(address, sent[address]))
    folder = tmp_path / "events"
    folder.mkdir()
    for n in range(10):  # the same events, many files: the two runs interleave
        (folder / f"{n:02d}.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda _: run_invites(
                    "bounces", "import", str(folder), env={"DATABASE_URL": db_url}
                ),
                range(2),
            )
        )
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    new = [int(re.search(r"\((\d+) new\)", r.stderr).group(1)) for r in runs]  # type: ignore[union-attr]
    assert sum(new) == 8  # 4 gone, 4 sender-refused: each recorded by one run only
    found = state(conn)
    assert [found[p(i)] for i in range(12)] == [
        ("bounced", "recipient-gone", "bounced")
        if i % 3 == 0
        else ("failed", "sender-refused", None)
        if i % 3 == 1
        else (None, None, "complained")
        for i in range(12)
    ]
