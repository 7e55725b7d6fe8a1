"""The invite's history (sql/997): every change recorded once, by whoever made it, with no
address in it; `invites history`, the timeline of `invites show`, NOTIFY."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

import beta_invites_cli as api
from tests.conftest import Invoke
from tests.smtp import Behaviour, SmtpServer
from tests.test_issue_bulk import PEAK

FROM = {"INVITES_FROM": "Beta Team <beta@example.com>"}


def events(conn: psycopg.Connection[Any], code: str) -> list[tuple[str, str, Any]]:
    """(kind, actor, detail) of one invite's events, oldest first."""
    return [
        tuple(row)
        for row in conn.execute(
            """
            SELECT e.kind, e.actor, e.detail FROM beta_invites_events e
              JOIN beta_invites i ON i.id = e.invite_id
             WHERE i.code = %s ORDER BY e.id
            """,
            (code,),
        )
    ]


def code_of(conn: psycopg.Connection[Any], email: str) -> str:
    row = conn.execute("SELECT code FROM beta_invites WHERE email = %s", (email,)).fetchone()
    assert row is not None
    return str(row[0])


def test_every_change_is_recorded_once_by_whoever_makes_it(
    invites: Invoke, conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    operator = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
    assert operator is not None
    user = str(operator[0])
    people = ["ada@example.com", "zoë@example.com"]
    issued = invites("generate", "--cohort", "press-x", "--sent-by", user, "--email", people[0])
    assert issued.exit_code == 0, issued.stderr
    issued = invites("generate", "--cohort", "press-x", "--email", people[1])
    assert issued.exit_code == 0, issued.stderr
    ada, zoe = code_of(conn, people[0]), code_of(conn, people[1])
    sent = invites("send", "--cohort", "press-x", "--outbox", str(tmp_path / "mail"), env=FROM)
    assert sent.exit_code == 0, sent.stderr
    assert invites("resend", ada, "--outbox", str(tmp_path / "mail"), env=FROM).exit_code == 0
    before = conn.execute("SELECT expires_at FROM beta_invites WHERE code = %s", (ada,)).fetchone()
    assert invites("extend", ada, "--by", "7d").exit_code == 0
    revoked = invites("revoke", zoe, "--reason", "embargo moved")
    assert revoked.exit_code == 0, revoked.stderr
    # The host application's own UPDATE, as the seed's auth handler writes it.
    with psycopg.connect(db_url) as host:
        host.execute(
            "UPDATE public.beta_invites SET used_at = now(), redeemed_by = %s WHERE code = %s",
            (user, ada),
        )
    assert invites("expire").exit_code == 0  # anonymises the revoked one

    ada_events = events(conn, ada)
    assert [(kind, actor) for kind, actor, _ in ada_events] == [
        ("issued", user),
        ("sent", "operator"),
        ("resent", "operator"),
        ("extended", "operator"),
        ("redeemed", "host"),
    ]
    message_ids = conn.execute(
        "SELECT message_id FROM beta_invites WHERE code = %s", (ada,)
    ).fetchone()
    assert message_ids is not None
    assert ada_events[0][2] == {"sent_by": user}
    assert ada_events[1][2]["message_id"] != ada_events[2][2]["message_id"]
    assert ada_events[2][2] == {"message_id": message_ids[0]}
    assert before is not None
    extended = ada_events[3][2]
    assert set(extended) == {"from", "to"}
    assert (
        datetime.fromisoformat(extended["from"]) == before[0]
    )  # as instants: 17.12345 = 17.123450
    assert ada_events[4][2] == {"user_id": user}
    assert [(kind, actor) for kind, actor, _ in events(conn, zoe)] == [
        ("issued", "operator"),
        ("sent", "operator"),
        ("revoked", "operator"),
        ("anonymised", "cron"),
    ]
    assert events(conn, zoe)[2][2] == {"reason": "embargo moved"}
    # No address anywhere in the history, and it outlived the sweep.
    everything = conn.execute("SELECT string_agg(e::text, ' ') FROM beta_invites_events e")
    text = everything.fetchone()
    assert text is not None and "ada@" not in text[0] and "zoë" not in text[0]
    assert "zo" not in json.dumps([detail for _, _, detail in events(conn, zoe)])


def test_the_operator_in_the_environment_and_the_transaction_setting_name_the_actor(
    invites: Invoke, conn: psycopg.Connection[Any], db_url: str
) -> None:
    operator = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
    assert operator is not None
    env = {"INVITES_SENT_BY": str(operator[0])}
    assert invites("generate --cohort c --email a@example.com", env=env).exit_code == 0
    code = code_of(conn, "a@example.com")
    assert invites("extend", code, "--by", "1d", env=env).exit_code == 0
    with psycopg.connect(db_url) as host:
        host.execute("SET LOCAL invites.actor = 'support-desk'")
        api.redeem(host, code)
    assert [actor for _, actor, _ in events(conn, code)] == [str(operator[0])] * 2 + [
        "support-desk"
    ]
    # `invites redeem` (a support case) is the operator's doing, not the host's.
    assert invites("generate --cohort c --email b@example.com").exit_code == 0
    other = code_of(conn, "b@example.com")
    assert invites("redeem", other, env=env).exit_code == 0
    assert [(k, actor) for k, actor, _ in events(conn, other)] == [
        ("issued", "operator"),
        ("redeemed", str(operator[0])),
    ]


def test_bounces_and_failures_keep_the_reply_code_not_the_text(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    refused = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
    with SmtpServer(Behaviour(refuse={"gone@example.com": refused})) as server:
        env = {"SMTP_URL": server.url, **FROM}
        result = invites("send --cohort c --email gone@example.com", env=env)
    assert result.exit_code == 0, result.stderr
    gone = events(conn, code_of(conn, "gone@example.com"))
    assert [(kind, detail) for kind, _, detail in gone] == [
        ("issued", None),
        ("bounced", {"reply_code": "550 5.1.1", "class": "recipient-gone"}),
    ]
    # A refusal for now: tests/test_deliver_outcomes.py (it waits out the retries).


def test_the_history_is_append_only(invites: Invoke, conn: psycopg.Connection[Any]) -> None:
    assert invites("generate --cohort c --email a@example.com").exit_code == 0
    for statement in (
        "UPDATE beta_invites_events SET actor = 'x'",
        "DELETE FROM beta_invites_events",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        conn.rollback()
    assert conn.execute("SELECT count(*) FROM beta_invites_events").fetchone() == (1,)


def test_bulk_issuing_writes_one_event_per_invite(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(3000)))
    assert invites("generate", "--cohort", "bulk", "--recipients", str(people)).exit_code == 0
    assert conn.execute(
        "SELECT kind, count(*), count(DISTINCT invite_id) FROM beta_invites_events GROUP BY kind"
    ).fetchall() == [("issued", 3000, 3000)]


def test_listeners_hear_each_change_without_addresses(
    invites: Invoke, db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN beta_invites_events")
        people = tmp_path / "people.csv"
        people.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(300)))
        assert invites("generate", "--cohort", "bulk", "--recipients", str(people)).exit_code == 0
        with psycopg.connect(db_url) as host:
            invite = api.redeem(host, code_of(host, "p7@example.com"))
        heard = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=2)]
    assert [(n["kind"], n["count"], n["invite_id"]) for n in heard] == [
        ("issued", 300, None),
        ("redeemed", 1, str(invite.id)),
    ]
    assert heard[0]["last_event_id"] - heard[0]["first_event_id"] == 299
    assert heard[1]["first_event_id"] == heard[1]["last_event_id"] == heard[0]["last_event_id"] + 1
    assert all("@" not in json.dumps(n) for n in heard)


def test_a_reader_misses_no_event_of_a_transaction_that_commits_late(
    invites: Invoke, db_url: str
) -> None:
    """Ids are handed out before commit: a reader keeping the last id it read would skip an
    event whose transaction commits after a later one's. beta_invites_events_after (sql/998)
    never does."""
    people = ["--email", "slow@example.com", "--email", "quick@example.com"]
    assert invites("generate", "--cohort", "c", *people).exit_code == 0

    def after(reader: psycopg.Connection[Any], checkpoint: int) -> tuple[list[str], int]:
        rows = reader.execute(
            "SELECT kind, detail->>'user_id', next_checkpoint"
            "  FROM public.beta_invites_events_after(%s)",
            (checkpoint,),
        ).fetchall()
        return [f"{kind} {who}" for kind, who, _ in rows], rows[-1][2] if rows else checkpoint

    with psycopg.connect(db_url, autocommit=True) as admin:
        slow_user, quick_user = (
            str(row[0])
            for row in admin.execute(
                "INSERT INTO public.users SELECT FROM generate_series(1, 2) RETURNING id"
            )
        )
    with (
        psycopg.connect(db_url, autocommit=True) as reader,
        psycopg.connect(db_url) as slow,
        psycopg.connect(db_url, autocommit=True) as quick,
    ):
        seen, checkpoint = after(reader, 0)
        assert seen == ["issued None", "issued None"]
        (last_id,) = reader.execute("SELECT max(id) FROM beta_invites_events").fetchone() or (0,)
        # The slow host takes the next event id and keeps its transaction open ...
        api.redeem(slow, code_of(slow, "slow@example.com"), user_id=slow_user)
        # ... while a quick one takes the id after it and commits.
        api.redeem(quick, code_of(quick, "quick@example.com"), user_id=quick_user)
        by_id = reader.execute(
            "SELECT id, detail->>'user_id' FROM beta_invites_events WHERE id > %s", (last_id,)
        ).fetchall()
        assert [who for _, who in by_id] == [quick_user]  # the slow one's id is below it
        assert after(reader, checkpoint) == ([], checkpoint)  # nothing yet: a gap may fill
        slow.commit()
        # Keeping the last id would now miss the slow redemption for good.
        assert reader.execute(
            "SELECT count(*) FROM beta_invites_events WHERE id > %s", (by_id[-1][0],)
        ).fetchone() == (0,)
        seen, checkpoint = after(reader, checkpoint)
        assert seen == [f"redeemed {slow_user}", f"redeemed {quick_user}"]
        assert after(reader, checkpoint) == ([], checkpoint)


# -- `invites history` and `invites show` -------------------------------------------------------


@pytest.fixture
def story(invites: Invoke, conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Two cohorts: press-a (issued, one redeemed) and creator-b (issued, one revoked)."""
    for cohort, email in (("press-a", "a@example.com"), ("press-a", "b@example.com")):
        assert invites("generate", "--cohort", cohort, "--email", email).exit_code == 0
    assert invites("generate --cohort creator-b --email c@example.com").exit_code == 0
    codes = {e: code_of(conn, e) for e in ("a@example.com", "b@example.com", "c@example.com")}
    api.redeem(conn, codes["a@example.com"])
    conn.commit()
    assert invites("revoke", codes["c@example.com"], "--reason", "duplicate").exit_code == 0
    return codes


def test_history_command_formats_and_filters(invites: Invoke, story: dict[str, str]) -> None:
    rows = list(csv.DictReader(io.StringIO(invites("history", "--format", "csv").stdout)))
    assert [(r["kind"], r["code"], r["cohort"], r["actor"]) for r in rows] == [
        ("issued", story["a@example.com"], "press-a", "operator"),
        ("issued", story["b@example.com"], "press-a", "operator"),
        ("issued", story["c@example.com"], "creator-b", "operator"),
        ("redeemed", story["a@example.com"], "press-a", "host"),
        ("revoked", story["c@example.com"], "creator-b", "operator"),
    ]
    assert list(rows[0]) == ["event_id", "at", "kind", "code", "cohort", "actor", "detail"]
    assert rows[4]["detail"] == '{"reason": "duplicate"}'
    assert "T" in rows[0]["at"] and rows[0]["at"].endswith("+00:00")
    as_json = json.loads(invites("history", "--format", "json", "--cohort", "press-*").stdout)
    assert [(e["kind"], e["code"]) for e in as_json] == [
        ("issued", story["a@example.com"]),
        ("issued", story["b@example.com"]),
        ("redeemed", story["a@example.com"]),
    ]
    lines = invites("history", "--format", "jsonl", "--kind", "revoked", "--kind", "redeemed")
    assert [json.loads(line)["kind"] for line in lines.stdout.splitlines()] == [
        "redeemed",
        "revoked",
    ]
    assert json.loads(lines.stdout.splitlines()[1])["detail"] == {"reason": "duplicate"}
    newest = json.loads(invites("history", "--format", "json", "--limit", "2").stdout)
    assert [e["kind"] for e in newest] == ["redeemed", "revoked"]
    table = invites("history")
    assert table.exit_code == 0
    assert "reason duplicate" in table.stdout and story["c@example.com"] in table.stdout
    none = invites("history", "--since", "2999-01-01")
    assert (none.exit_code, none.stdout, none.stderr) == (0, "", "no events match\n")
    bad = invites("history", "--kind", "exploded")
    assert bad.exit_code == 2 and "'exploded' is not one of" in bad.stderr


def test_show_prints_the_timeline_under_the_fields(invites: Invoke, story: dict[str, str]) -> None:
    shown = invites("show", story["c@example.com"])
    assert shown.exit_code == 0
    fields, timeline = shown.stdout.split("\nHistory\n")
    assert "revoked_reason" in fields
    lines = timeline.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[2:] == ["issued", "by", "operator"]
    assert lines[1].split()[2:] == ["revoked", "by", "operator", "reason", "duplicate"]
    data = json.loads(invites("show", story["a@example.com"], "--format", "json").stdout)
    assert [(e["kind"], e["actor"]) for e in data[0]["history"]] == [
        ("issued", "operator"),
        ("redeemed", "host"),
    ]


def test_history_streams_in_constant_memory(
    conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort)
        SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'), 'p' || i || '@example.com', 'bulk'
          FROM generate_series(1, 300000) AS i
        """
    )
    conn.commit()
    with (tmp_path / "events.jsonl").open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", PEAK, "history", "--format", "jsonl"],
            env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (tmp_path / "events.jsonl").open() as written:
        assert sum(1 for _ in written) == 300_000
    # Held in memory, 300,000 events would take several hundred MiB.
    assert int(proc.stderr.split()[-1]) < 100 * 1024


def test_invites_inserted_as_sent_or_redeemed_say_so(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    marked = invites("generate --cohort c --email a@example.com --mark-sent")
    assert marked.exit_code == 0, marked.stderr
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort, used_at) VALUES ('HHHHHHHHHHHHHHHH', 'h@example.com', 'c', now())"
    )
    assert events(conn, code_of(conn, "a@example.com")) == [
        ("issued", "operator", None),
        ("sent", "operator", None),
    ]
    assert events(conn, "HHHHHHHHHHHHHHHH") == [
        ("issued", "host", None),
        ("redeemed", "host", None),
    ]
