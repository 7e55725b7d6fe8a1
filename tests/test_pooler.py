"""Every guarantee holds behind PgBouncer in transaction mode, where consecutive transactions of
one client may run on different server connections: no session advisory lock, no server-side
prepared statement, nothing that outlives a transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import invites_process, redeem_concurrently
from tests.smtp import Behaviour, SmtpServer
from tests.test_issue_send import FROM, codes_in_db, people
from tests.test_schema import SQL_FILES, tracked

pytestmark = pytest.mark.usefixtures("pgbouncer")


def processes(url: str, env: dict[str, str], *commands: list[str]) -> list[tuple[int, str]]:
    """The commands at once, each its own process; (exit status, stderr) of each."""
    procs = [invites_process(*command, env={"DATABASE_URL": url, **env}) for command in commands]
    return [(p.wait(timeout=120), p.communicate()[1]) for p in procs]


def test_concurrent_migrates_through_the_pooler(empty_db_url: str, pgbouncer: Any) -> None:
    pooled = pgbouncer.url(conninfo_to_dict(empty_db_url)["dbname"])
    outcomes = processes(pooled, {}, *[["migrate", "--create-users-table"]] * 5)
    assert [code for code, _ in outcomes] == [0] * 5, outcomes
    assert sum(err.count("applied 9") for _, err in outcomes) == len(SQL_FILES)
    assert [n for n, _ in tracked(empty_db_url)] == SQL_FILES
    # No lock is left held by a pooled server connection: another run goes through at once.
    again = processes(pooled, {}, ["migrate"])
    assert again == [(0, "Up to date: nothing to apply.\n")]
    with psycopg.connect(empty_db_url) as conn:
        assert advisory_locks(conn) == 0


def test_concurrent_senders_through_the_pooler(
    pooled_db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(200, tmp_path)
    with SmtpServer(Behaviour(delay=0.001)) as server:
        env = {"SMTP_URL": server.url, **FROM}
        outcomes = processes(
            pooled_db_url,
            env,
            *[["send", "--cohort", "press-x", "--recipients", str(tmp_path / "people.csv")]] * 4,
        )
        assert [code for code, _ in outcomes] == [0] * 4, outcomes
        received = server.recorder.by_recipient()
        codes = codes_in_db(conn)
        assert len(codes) == 200 and set(received) == set(codes)
        assert all(len(messages) == 1 for messages in received.values())


def test_concurrent_sweeps_through_the_pooler(
    pooled_db_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, expires_at)
        SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'), 'p' || i || '@example.com',
               'bulk', now() - interval '1 hour'
          FROM generate_series(1, 3000) AS i
        """
    )
    outcomes = processes(pooled_db_url, {}, *[["expire", "--batch-size", "200", "-v"]] * 3)
    assert [code for code, _ in outcomes] == [0] * 3, outcomes
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE anonymized_at IS NULL"
    ).fetchone() == (0,)
    # No lock stays held by a pooled server connection: the next sweeps run, not step aside.
    for _ in range(4):
        assert processes(pooled_db_url, {}, ["expire", "-v"]) == [(0, "")]
    assert advisory_locks(conn) == 0


def advisory_locks(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    return int(row[0]) if row else -1


def test_concurrent_redemptions_through_the_pooler(
    pooled_db_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('PQQPAAAAAAAAAAAA', 'p@example.com', 'c')"
    )
    outcomes = redeem_concurrently(pooled_db_url, "PQQPAAAAAAAAAAAA", 20, prepare_threshold=None)
    assert outcomes == ["already_redeemed"] * 19 + ["redeemed"]
    redeemed = processes(pooled_db_url, {}, ["redeem", "PQQPAAAAAAAAAAAA"])
    assert redeemed[0][0] == 1


def test_the_history_names_who_acted_through_the_pooler(
    pooled_db_url: str, conn: psycopg.Connection[Any]
) -> None:
    """The actor travels in application_name, which PgBouncer sets again on whichever server
    connection runs each transaction."""
    operator = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
    assert operator is not None
    conn.commit()
    env = {"INVITES_SENT_BY": str(operator[0])}
    assert processes(pooled_db_url, env, ["generate", "--cohort", "c", "--email", "a@x.org"]) == [
        (0, "created 1, skipped 0, invalid 0, duplicates 0\n")
    ]
    code = conn.execute("SELECT code FROM beta_invites").fetchone()
    assert code is not None
    with psycopg.connect(pooled_db_url, prepare_threshold=None) as host:
        status = host.execute("SELECT status FROM beta_invites_redeem(%s)", (code[0],)).fetchone()
        assert status == ("redeemed",)
    conn.execute("UPDATE beta_invites SET expires_at = now() - interval '1 day', used_at = NULL")
    conn.commit()
    assert processes(pooled_db_url, {}, ["expire"])[0][0] == 0
    assert conn.execute("SELECT kind, actor FROM beta_invites_events ORDER BY id").fetchall() == [
        ("issued", str(operator[0])),
        ("redeemed", "host"),
        ("extended", "host"),
        ("anonymised", "cron"),
    ]


def test_concurrent_reminders_through_the_pooler(
    pooled_db_url: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    people(100, tmp_path)
    assert (
        processes(
            pooled_db_url,
            {},
            ["generate", "--cohort", "press-x", "--recipients", str(tmp_path / "people.csv")],
        )[0][0]
        == 0
    )
    conn.execute(
        "UPDATE beta_invites SET sent_at = now() - interval '8 days', expires_at = now() + interval '2 days'"
    )
    conn.commit()
    with SmtpServer(Behaviour(delay=0.001)) as server:
        env = {"SMTP_URL": server.url, **FROM}
        command = ["remind", "--cohort", "press-x", "--before-expiry", "3d", "--connections", "2"]
        outcomes = processes(pooled_db_url, env, *[command] * 3)
        assert [code for code, _ in outcomes] == [0] * 3, outcomes
        received = server.recorder.by_recipient()
    assert len(received) == 100
    assert all(len(messages) == 1 for messages in received.values())
    assert conn.execute(
        "SELECT count(*), count(DISTINCT invite_id) FROM beta_invites_events WHERE kind = 'reminded'"
    ).fetchone() == (100, 100)
