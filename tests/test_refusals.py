"""Whose fault a refusal is: the rules, the same in PostgreSQL, and what each class does to an
invite and its address, through a real SMTP server refusing at each step."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from beta_invites_cli.delivery.refusals import RULES, Kind, classify
from tests.conftest import Invoke
from tests.smtp import Behaviour, SmtpServer

FROM = {"INVITES_FROM": "Beta Team <beta@example.com>"}

# Replies beyond the rules' own examples: shapes that have tripped senders up.
CORPUS = [
    ("550 5.0.0 smtp; 550 5.7.1 Mailbox unavailable", Kind.SENDER_REFUSED),
    ("5.0.0 smtp; 550 5.7.1 Mailbox unavailable", Kind.SENDER_REFUSED),  # Exim, as kept
    ("5.1.1 smtp; 550 5.1.1 <recipient>: Recipient address rejected", Kind.RECIPIENT_GONE),
    ("550-5.1.1 The email account that you tried to reach does not exist", Kind.RECIPIENT_GONE),
    ("550 5.7.1 <recipient>: Recipient address rejected: Access denied", Kind.SENDER_REFUSED),
    ("550 Requested action not taken: mailbox unavailable", Kind.UNCLASSIFIED),
    ("550 rejected", Kind.UNCLASSIFIED),
    ("554 Transaction failed", Kind.UNCLASSIFIED),
    ("550 <blockchain@example.org>: unknown user", Kind.RECIPIENT_GONE),  # not "blocked"
    ("550 No such user, and you are listed on a blocklist", Kind.SENDER_REFUSED),
    ("451 4.7.1 Greylisted, try again later", Kind.SENDER_REFUSED),
    ("421 4.4.2 Connection timed out", Kind.SOFT),
    ("452 Too many recipients", Kind.SENDER_REFUSED),  # "too many": ours to fix
    ("5.2.2 smtp; 552 5.2.2 Mailbox full", Kind.SOFT),
]
NOT_REFUSALS = ["250 OK", "the address cannot be put on the wire: bad", "", "2.0.0 ok"]


def every_case() -> list[tuple[str, Kind]]:
    return [(example, rule.kind) for rule in RULES for example in rule.examples] + CORPUS


@pytest.mark.parametrize(("reply", "kind"), every_case())
def test_each_reply_is_of_its_class(reply: str, kind: Kind) -> None:
    refusal = classify(reply)
    assert refusal is not None and refusal.kind is kind


def test_what_is_not_a_refusal() -> None:
    assert [classify(reply) for reply in NOT_REFUSALS] == [None] * len(NOT_REFUSALS)


def test_postgresql_classifies_kept_replies_as_python_does(conn: psycopg.Connection[Any]) -> None:
    """The repair migration reads kept replies in SQL: it must agree with the rules."""
    replies = [reply for reply, _ in every_case()] + NOT_REFUSALS
    in_sql = [
        conn.execute("SELECT public.beta_invites_refusal_kind(%s)", (reply,)).fetchone()
        for reply in replies
    ]
    in_python = [(r.kind.value,) if (r := classify(reply)) else (None,) for reply in replies]
    assert list(zip(replies, in_sql, strict=True)) == list(zip(replies, in_python, strict=True))


def test_relay_refusals_are_told_from_a_domains() -> None:
    relay = [
        classify(r) for r in ("554 5.7.1 Relay access denied", "530 5.7.0 Authentication required")
    ]
    assert [r.relay if r else None for r in relay] == [True, True]
    domain = classify("550 5.7.26 This mail is unauthenticated")
    assert domain is not None and not domain.relay


def digest(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()


def state(conn: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """email -> (sent, outcome, class, suppression reason)."""
    rows = conn.execute(
        """
        SELECT i.email, i.sent_at IS NOT NULL, i.delivery_outcome, i.delivery_class, s.reason
          FROM beta_invites i
          LEFT JOIN beta_invites_suppressions s ON s.digest = invites_email_digest(i.email)
        """
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def recipients(tmp_path: Path, addresses: list[str]) -> str:
    (tmp_path / "people.csv").write_text("email\n" + "".join(f"{a}\n" for a in addresses))
    return "people.csv"


REPLIES = {
    "gone": "550 5.1.1 no such user here",
    "soft": "452 4.2.2 mailbox over quota",
    "sender": "550 5.7.26 This mail is unauthenticated",
    "odd": "550 rejected",
}
EXPECTED = {
    "gone": (False, "bounced", "recipient-gone", "bounced"),
    "soft": (False, "failed", "soft", None),
    "sender": (False, "failed", "sender-refused", None),
    "odd": (False, "failed", "unclassified", None),
}


def test_every_class_at_rcpt_at_data_and_at_the_end_of_data(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    behaviour = Behaviour()
    steps = {"rcpt": behaviour.refuse, "data": behaviour.refuse_data, "end": behaviour.refuse_end}
    addresses = ["fine@example.com"]
    for step, refusals in steps.items():
        for kind, reply in REPLIES.items():
            # Each at its own domain: no domain collects enough sender refusals to pause.
            address = f"{kind}-{step}@{kind}-{step}.example"
            refusals[address] = reply
            addresses.append(address)
    with SmtpServer(behaviour) as server:
        result = invites(
            f"send --cohort c --recipients {recipients(tmp_path, addresses)}",
            env={"SMTP_URL": server.url, **FROM},
        )
    assert result.exit_code == 1, result.stderr  # the failed ones are tried again next run
    found = state(conn)
    assert found.pop("fine@example.com") == (True, None, None, None)
    assert found == {
        f"{kind}-{step}@{kind}-{step}.example": EXPECTED[kind] for step in steps for kind in REPLIES
    }
    assert result.stderr.splitlines()[-1] == "sent 1, failed 9, bounced 3, skipped 0"
    assert (
        "failed: sender-end@sender-end.example: 550 5.7.26 This mail is unauthenticated"
        " (sender-refused: not suppressed); tried again next run"
    ) in result.stderr.splitlines()


def test_sender_refusals_pause_their_domain_whatever_succeeds_between(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Gmail refuses us (5.7.26) while every other domain accepts: after 3 refusals gmail is
    paused for the rest of the run, the others all go out, nobody is suppressed."""
    addresses = []
    for i in range(8):
        addresses += [f"g{i}@gmail.example", f"o{i}@other{i}.example"]
    reply = "550 5.7.26 This mail is unauthenticated, which poses a security risk"
    behaviour = Behaviour(refuse_domains={"gmail.example": reply})
    with SmtpServer(behaviour) as server:
        result = invites(
            "send --cohort c --connections 1 --max-sender-refusals 3"
            f" --recipients {recipients(tmp_path, addresses)}",
            env={"SMTP_URL": server.url, **FROM},
        )
        refused = sum(n for a, n in server.recorder.rcpt_attempts.items() if "gmail" in a)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[-3:] == [
        "sent 8, failed 3, bounced 0, skipped 0",
        f'Error: gmail.example: paused after 3 refusals "{reply}": not the recipients\' fault;'
        " nothing suppressed. Check the sending domain (invites doctor), then run again.",
        "left unsent for the next run: 5 (their receiving domain was paused)",
    ]
    assert refused == 3
    found = state(conn)
    assert all(found[f"o{i}@other{i}.example"][0] for i in range(8))
    assert Counter(found[f"g{i}@gmail.example"][1] for i in range(8)) == {"failed": 3, None: 5}
    assert conn.execute("SELECT count(*) FROM beta_invites_suppressions").fetchone() == (0,)


def test_a_relay_that_denies_relaying_stops_the_run_and_suppresses_nobody(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    addresses = [f"p{i}@d{i}.example" for i in range(30)]  # all different domains
    behaviour = Behaviour(refuse_all="554 5.7.1 <x@y>: Relay access denied")
    with SmtpServer(behaviour) as server:
        result = invites(
            f"send --cohort c --connections 1 --recipients {recipients(tmp_path, addresses)}",
            env={"SMTP_URL": server.url, **FROM},
        )
        attempts = sum(server.recorder.rcpt_attempts.values())
    assert result.exit_code == 1
    assert attempts == 5  # --max-sender-refusals' default
    assert f"Error: the relay {server.url}: paused after 5 refusals" in result.stderr
    assert conn.execute("SELECT count(*) FROM beta_invites_suppressions").fetchone() == (0,)
    outcomes = [row[1] for row in state(conn).values()]
    assert Counter(outcomes) == {"failed": 5, None: 25}


def test_a_refusal_at_mail_from_stops_the_run_at_once(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    addresses = [f"p{i}@example.com" for i in range(6)]
    behaviour = Behaviour(refuse_mail="550 5.7.1 Sender address rejected: not owned by user")
    with SmtpServer(behaviour) as server:
        result = invites(
            f"send --cohort c --connections 1 --recipients {recipients(tmp_path, addresses)}",
            env={"SMTP_URL": server.url, **FROM},
        )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: the mail server {server.url} refused the sender at MAIL FROM: 550 5.7.1 Sender"
        " address rejected: not owned by user: not the recipients' fault; nothing suppressed."
        " Check the sending domain (invites doctor), then run again."
    )
    assert Counter(row[1] for row in state(conn).values()) == {"failed": 1, None: 5}
    assert conn.execute("SELECT count(*) FROM beta_invites_suppressions").fetchone() == (0,)


def test_soft_refusals_on_enough_days_suppress_and_an_unclassified_one_bounces_on_its_second(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Days cannot pass in a test: the earlier days' refusals are written as a run would have."""
    for address, kind, days in (
        ("full@example.com", "soft", (1, 2)),
        ("fuller@example.com", "soft", (2,)),
        ("odd@example.com", "unclassified", (1,)),
    ):
        for day in days:
            conn.execute(
                "INSERT INTO beta_invites_refusal_days VALUES"
                " (invites_email_digest(%s), %s, current_date - %s)",
                (address, kind, day),
            )
    behaviour = Behaviour(
        refuse={
            "full@example.com": "552 5.2.2 Mailbox full",
            "fuller@example.com": "552 5.2.2 Mailbox full",
            "odd@example.com": "550 rejected",
        }
    )
    env = {"SMTP_URL": "", **FROM}
    with SmtpServer(behaviour) as server:
        env["SMTP_URL"] = server.url
        result = invites(
            "send --cohort c --email full@example.com --email fuller@example.com"
            " --email odd@example.com",
            env=env,
        )
    assert result.exit_code == 1, result.stderr
    assert state(conn) == {
        "full@example.com": (False, "failed", "soft", "soft-bounced"),  # its third day
        "fuller@example.com": (False, "failed", "soft", None),  # its second
        "odd@example.com": (False, "bounced", "unclassified", "bounced"),
    }
    assert (
        "bounced: full@example.com: 552 5.2.2 Mailbox full (soft): refused on 3 days, suppressed"
        " (soft-bounced); never sent again"
    ) in result.stderr.splitlines()
    # INVITES_SOFT_BOUNCE_LIMIT moves the line; a bad value is an error before anything.
    bad = invites("send --cohort c", env={**env, "INVITES_SOFT_BOUNCE_LIMIT": "three"})
    assert (bad.exit_code, bad.stderr) == (
        1,
        "Error: INVITES_SOFT_BOUNCE_LIMIT must be a whole number of days, at least 1, not"
        " 'three'\n",
    )


OLD_BOUNCES = [
    # (email, kept reply, suppression source or None)
    ("dkim@gmail.example", "550 5.7.26 This mail is unauthenticated", "send"),
    ("gone@example.com", "550 5.1.1 <recipient>: user unknown", "send"),
    ("odd@example.com", "550 rejected", "send"),
    ("exim@example.com", "5.0.0 smtp; 550 5.7.1 Mailbox unavailable", "bounces-import"),
    ("wire@example.com", "the address cannot be put on the wire: bad", None),
    ("twice@example.com", "550 5.7.26 This mail is unauthenticated", "send"),
    ("twice@example.com", "550 5.1.1 user unknown", None),  # a real bounce of the same person
    ("manual@example.com", "550 5.7.26 This mail is unauthenticated", None),
]


def test_the_repair_migration_unbounces_what_the_old_rule_got_wrong(
    invites: Invoke, empty_db_url: str
) -> None:
    from beta_invites_cli.migrations import migrate

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        migrate(conn, create_users_table=True, until="998_beta_invites_events_in_commit_order.sql")
        for i, (email, reply, source) in enumerate(OLD_BOUNCES):
            conn.execute(
                "INSERT INTO beta_invites (code, email, cohort, delivery_outcome,"
                " delivery_outcome_at, delivery_reply)"
                " VALUES (%s, %s, 'c', 'bounced', now() - interval '2 days', %s)",
                (f"AAAABBBBCCCCDDD{'ABCDEFGH'[i]}", email, reply),
            )
            if source is not None:
                conn.execute(
                    "INSERT INTO beta_invites_suppressions (digest, reason, source)"
                    " VALUES (invites_email_digest(%s), 'bounced', %s)",
                    (email, source),
                )
        conn.execute(
            "INSERT INTO beta_invites_suppressions (digest, reason, source)"
            " VALUES (invites_email_digest('manual@example.com'), 'manual', 'suppress-add')"
        )
        result = invites("migrate", env={"DATABASE_URL": empty_db_url})
        assert result.exit_code == 0, result.stderr
        rows = conn.execute(
            "SELECT email, delivery_outcome, delivery_class FROM beta_invites ORDER BY code"
        ).fetchall()
        assert rows == [
            ("dkim@gmail.example", "failed", "sender-refused"),
            ("gone@example.com", "bounced", "recipient-gone"),
            ("odd@example.com", "failed", "unclassified"),
            ("exim@example.com", "failed", "sender-refused"),
            ("wire@example.com", "bounced", None),
            ("twice@example.com", "failed", "sender-refused"),
            ("twice@example.com", "bounced", "recipient-gone"),
            ("manual@example.com", "failed", "sender-refused"),
        ]
        left = conn.execute(
            "SELECT e.email, s.reason FROM beta_invites_suppressions s"
            " JOIN (SELECT DISTINCT email FROM beta_invites) e"
            " ON s.digest = invites_email_digest(e.email) ORDER BY 1"
        ).fetchall()
        assert left == [
            ("gone@example.com", "bounced"),
            ("manual@example.com", "manual"),
            ("twice@example.com", "bounced"),
        ]
        events = conn.execute(
            "SELECT i.email, e.actor, e.detail FROM beta_invites_events e"
            " JOIN beta_invites i ON i.id = e.invite_id WHERE e.kind = 'reclassified'"
            " ORDER BY i.code"
        ).fetchall()
        assert [(email, actor) for email, actor, _ in events] == [
            ("dkim@gmail.example", "migration 9990"),
            ("odd@example.com", "migration 9990"),
            ("exim@example.com", "migration 9990"),
            ("twice@example.com", "migration 9990"),
            ("manual@example.com", "migration 9990"),
        ]
        assert events[0][2] == {"from": "bounced", "to": "failed", "class": "sender-refused"}
        # The unclassified one counts as its first unclassified day.
        assert conn.execute(
            "SELECT kind, day = current_date - 2 FROM beta_invites_refusal_days"
        ).fetchall() == [("unclassified", True)]
        # A repaired invite is sendable again: it was never the recipient's fault.
        assert (
            invites(
                "list --status unsent --format csv", env={"DATABASE_URL": empty_db_url}
            ).stdout.count("\n")
            == 1 + 5
        )


def test_failed_invites_are_listed_and_shown_with_code_and_class_only(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    reply = "550 5.7.26 <dkim@gmail.example>: This mail is unauthenticated"
    with SmtpServer(Behaviour(refuse={"dkim@gmail.example": reply})) as server:
        env = {"SMTP_URL": server.url, **FROM}
        assert invites("send --cohort c --email dkim@gmail.example --email ok@example.com", env=env)
    listed = invites("list --status failed --format json")
    assert [(r["email"], r["refusal"]) for r in json.loads(listed.stdout)] == [
        ("dkim@gmail.example", "550 5.7.26 sender-refused")
    ]
    ((code,),) = conn.execute(
        "SELECT code FROM beta_invites WHERE delivery_outcome = 'failed'"
    ).fetchall()
    (shown,) = json.loads(invites("show", code, "--format", "json").stdout)
    assert (shown["delivery_outcome"], shown["delivery_class"]) == ("failed", "sender-refused")
    assert shown["delivery_reply"] == "550 5.7.26 <recipient>: This mail is unauthenticated"
    assert shown["history"][-1]["detail"] == {"reply_code": "550 5.7.26", "class": "sender-refused"}


def test_suppress_remove_by_reason_since_a_day(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    """A wave of `550 rejected` the day DKIM was broken: the operator takes it back in bulk."""
    for i, (email, days_ago) in enumerate(
        [("a@example.com", 0), ("b@example.com", 1), ("old@example.com", 10)]
    ):
        conn.execute(
            "INSERT INTO beta_invites (code, email, cohort, delivery_outcome, delivery_outcome_at,"
            " delivery_reply, delivery_class) VALUES (%s, %s, 'c', 'bounced',"
            " now() - %s * interval '1 day', '550 rejected', 'unclassified')",
            (f"AAAABBBBCCCCDDD{'ABC'[i]}", email, days_ago),
        )
        conn.execute(
            "INSERT INTO beta_invites_suppressions (digest, reason, source, created_at) VALUES"
            " (invites_email_digest(%s), 'bounced', 'send', now() - %s * interval '1 day')",
            (email, days_ago),
        )
    (since,) = conn.execute("SELECT (current_date - 1)::text").fetchall()[0]
    dry = invites(f"suppress remove --reason bounced --since {since} --dry-run")
    assert dry.stderr == (
        f"dry run: would remove 2 bounced entries made since {since} and send 2 bounced"
        " invite(s) again; nothing was changed\n"
    )
    assert conn.execute("SELECT count(*) FROM beta_invites_suppressions").fetchone() == (3,)
    unsafe = invites(f"suppress remove --reason bounced --since {since}")
    assert unsafe.exit_code == 2 and "--dry-run (count) or --yes (remove)" in unsafe.stderr
    done = invites(f"suppress remove --reason bounced --since {since} --yes")
    assert done.stderr == (
        f"removed 2 bounced entries made since {since}; 2 bounced invite(s) of those addresses"
        " will be sent again\n"
    )
    assert conn.execute(
        "SELECT email, delivery_outcome FROM beta_invites ORDER BY code"
    ).fetchall() == [
        ("a@example.com", "failed"),
        ("b@example.com", "failed"),
        ("old@example.com", "bounced"),
    ]
    assert conn.execute("SELECT count(*) FROM beta_invites_suppressions").fetchone() == (1,)


def test_the_readme_has_the_table_of_rules() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for number, rule in enumerate(RULES, 1):
        assert f"| {number} | {rule.shown} | {rule.kind.value} | {rule.means} |" in readme
