"""beta_invites_redeem() and beta_invites_check() (sql/997), called as any host language would:
through psql and through psycopg, concurrently, and in transactions that roll back."""

from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Any

import psycopg
import pytest

CODES = {
    "pending": "PENDNGAAAAAAAAAA",
    "redeemed": "REDEEMEDAAAAAAAA",
    "expired": "EXPREDAAAAAAAAAA",
    "revoked": "REVOKEDAAAAAAAAA",
    "swept": "SWEPTAAAAAAAAAAA",
    "zero": "OOOOAAAAAAAAAAAA",
}


@pytest.fixture
def states(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, used_at, expires_at, revoked_at, anonymized_at)
        VALUES
          ('PENDNGAAAAAAAAAA', 'p@example.com', 'press-a', NULL, now() + interval '5 days', NULL, NULL),
          ('REDEEMEDAAAAAAAA', 'r@example.com', 'press-a', now(), now() + interval '5 days', NULL, NULL),
          ('EXPREDAAAAAAAAAA', 'e@example.com', 'press-b', NULL, now() - interval '1 hour', NULL, NULL),
          ('REVOKEDAAAAAAAAA', 'v@example.com', 'press-b', NULL, now(), now(), NULL),
          ('SWEPTAAAAAAAAAAA', 'anon@invalid', 'press-b', NULL, now() + interval '5 days', NULL, now()),
          ('OOOOAAAAAAAAAAAA', 'o@example.com', 'creator', NULL, now() + interval '5 days', NULL, NULL)
        """
    )
    conn.commit()


def psql(db_url: str, statement: str) -> list[list[str]]:
    psql_bin = shutil.which("psql") or "psql"
    done = subprocess.run(
        [psql_bin, "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", db_url, "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split("|") for line in done.stdout.splitlines()]


def test_every_status_through_psql(db_url: str, states: None) -> None:
    def check(typed: str) -> list[str]:
        (row,) = psql(db_url, f"SELECT status, cohort FROM beta_invites_check('{typed}')")
        return row

    assert check("pendng-aaaa aaaa-aa") == ["redeemable", "press-a"]
    assert check(CODES["redeemed"]) == ["already_redeemed", "press-a"]
    assert check(CODES["expired"]) == ["expired", "press-b"]
    assert check(CODES["revoked"]) == ["revoked", "press-b"]
    assert check(CODES["swept"]) == ["expired", "press-b"]
    assert check("ZZZZZZZZZZZZZZZZ") == ["unknown", ""]
    assert check("0000-aaaa-aaaa-aaaa") == ["redeemable", "creator"]  # a zero is an O
    for typed in ("1111AAAAAAAAAAAA", "IIIIAAAAAAAAAAAA", "PENDNGAAAAAAAAA", "", "é" * 16):
        assert check(typed) == ["invalid", ""], typed

    (won,) = psql(
        db_url, f"SELECT status, cohort FROM beta_invites_redeem(' {CODES['pending'].lower()} ')"
    )
    assert won == ["redeemed", "press-a"]
    (again,) = psql(db_url, f"SELECT status FROM beta_invites_redeem('{CODES['pending']}')")
    assert again == ["already_redeemed"]
    for name in ("expired", "revoked", "swept"):
        (refused,) = psql(db_url, f"SELECT status FROM beta_invites_redeem('{CODES[name]}')")
        assert refused == [{"swept": "expired"}.get(name, name)]
    (unknown,) = psql(
        db_url, "SELECT status, invite_id FROM beta_invites_redeem('ZZZZZZZZZZZZZZZZ')"
    )
    assert unknown == ["unknown", ""]


def test_redeem_records_the_user_and_one_event(conn: psycopg.Connection[Any], states: None) -> None:
    user = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
    assert user is not None
    row = conn.execute(
        "SELECT status, invite_id FROM beta_invites_redeem(%s, %s)", (CODES["zero"], user[0])
    ).fetchone()
    assert row is not None and row[0] == "redeemed"
    conn.commit()
    invite = conn.execute(
        "SELECT id, redeemed_by, used_at IS NOT NULL FROM beta_invites WHERE code = %s",
        (CODES["zero"],),
    ).fetchone()
    assert invite == (row[1], user[0], True)
    events = conn.execute(
        "SELECT kind, actor, detail FROM beta_invites_events WHERE invite_id = %s AND kind = 'redeemed'",
        (row[1],),
    ).fetchall()
    assert events == [("redeemed", "host", {"user_id": str(user[0])})]


def test_fifty_concurrent_callers_one_winner(db_url: str, states: None) -> None:
    barrier = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        with psycopg.connect(db_url) as conn:
            barrier.wait()
            row = conn.execute(
                "SELECT status FROM beta_invites_redeem(%s)", (CODES["pending"],)
            ).fetchone()
            assert row is not None
            with lock:
                outcomes.append(row[0])

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already_redeemed"] * 49 + ["redeemed"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM beta_invites_events WHERE kind = 'redeemed'"
        ).fetchone() == (2,)  # the winner's, and the fixture's invite inserted as redeemed


def test_a_caller_that_rolls_back_leaves_the_code_to_the_next(db_url: str, states: None) -> None:
    code = CODES["pending"]
    first = psycopg.connect(db_url)
    try:
        row = first.execute("SELECT status FROM beta_invites_redeem(%s)", (code,)).fetchone()
        assert row == ("redeemed",)
        # A second caller arrives while the first transaction is open: it waits for it.
        waiting: list[Any] = []

        def second() -> None:
            with psycopg.connect(db_url) as conn:
                waiting.append(
                    conn.execute("SELECT status FROM beta_invites_redeem(%s)", (code,)).fetchone()
                )

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and waiting == []
        first.rollback()  # the account could not be created
        thread.join(timeout=10)
        assert waiting == [("redeemed",)]
    finally:
        first.close()
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT e.kind FROM beta_invites_events e JOIN beta_invites i ON i.id = e.invite_id"
            " WHERE i.code = %s ORDER BY e.id",
            (code,),
        ).fetchall() == [("issued",), ("redeemed",)]
