from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import beta_invites_cli as api
from beta_invites_cli.sweep import sweep
from tests.conftest import Invoke, invites_process, redeem_concurrently

CODES = {
    "pending": "PENDNGAAAAAAAAAA",
    "sent": "SENTAAAAAAAAAAAA",
    "redeemed": "REDEEMEDAAAAAAAA",
    "expired": "EXPREDAAAAAAAAAA",
    "old": "XPREDZZZZZZZZZZZ",
}


@pytest.fixture
def mixed(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """One invite in each state; 'old' expired ten days ago."""
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, sent_at, used_at, expires_at) VALUES
          ('PENDNGAAAAAAAAAA', 'pending@example.com', 'press-a', NULL, NULL, now() + interval '5 days'),
          ('SENTAAAAAAAAAAAA', 'sent@example.com', 'press-a', now(), NULL, now() + interval '5 days'),
          ('REDEEMEDAAAAAAAA', 'redeemed@example.com', 'press-a', now(), now() - interval '1 day', now() - interval '1 hour'),
          ('EXPREDAAAAAAAAAA', 'expired@example.com', 'press-a', now(), NULL, now() - interval '1 hour'),
          ('XPREDZZZZZZZZZZZ', 'old@example.com', 'press-b', now(), NULL, now() - interval '10 days')
        """
    )
    return CODES


def state(conn: psycopg.Connection[Any], code: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT email, used_at IS NOT NULL, anonymized_at IS NOT NULL, expires_at > now() FROM beta_invites WHERE code = %s",
        (code,),
    ).fetchone()
    assert row is not None
    return tuple(row)


# -- the API --------------------------------------------------------------------------------------


def test_redeem_in_the_callers_transaction(db_url: str, mixed: dict[str, str]) -> None:
    with psycopg.connect(db_url) as conn:
        user = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
        assert user is not None
        invite = api.redeem(conn, " pendng-aaaa aaaaaa ", user_id=user[0])
        assert (invite.code, invite.status, invite.redeemed_by) == (
            mixed["pending"],
            "redeemed",
            user[0],
        )
        conn.rollback()  # the account creation failed: the invite must still be pending
    with psycopg.connect(db_url) as conn:
        assert api.check(conn, mixed["pending"]).status == "unsent"
        api.redeem(conn, mixed["pending"])
        conn.commit()
        assert api.check(conn, mixed["pending"]).status == "redeemed"


def test_every_refusal_has_its_own_exception(
    conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    with pytest.raises(api.InvalidCode):
        api.redeem(conn, "nope")
    with pytest.raises(api.UnknownCode):
        api.redeem(conn, "ZZZZZZZZZZZZZZZZ")
    with pytest.raises(api.AlreadyRedeemed) as redeemed:
        api.redeem(conn, mixed["redeemed"])
    assert redeemed.value.used_at is not None
    with pytest.raises(api.InviteExpired) as expired:
        api.redeem(conn, mixed["expired"])
    assert expired.value.expires_at is not None
    assert all(
        issubclass(e, api.InviteError)
        for e in (api.InvalidCode, api.UnknownCode, api.AlreadyRedeemed, api.InviteExpired)
    )
    assert api.check(conn, mixed["sent"]).status == "sent"
    assert api.check(conn, mixed["expired"]).status == "expired"

    def live_check(conn: psycopg.Connection[Any], typed: str) -> str:  # as the README has it
        try:
            return api.check(conn, typed).status
        except api.InviteError as exc:
            return exc.status

    typed = [mixed["sent"].lower(), mixed["expired"], "abc!", "x" * 5000, "AAAA-AAAA-AAAA-AAAA"]
    assert [live_check(conn, t) for t in typed] == [
        "sent",
        "expired",
        "invalid",
        "invalid",
        "unknown",
    ]


def test_fifty_concurrent_redemptions_one_winner(db_url: str, mixed: dict[str, str]) -> None:
    outcomes = redeem_concurrently(db_url, mixed["sent"], 50)
    assert outcomes == ["already_redeemed"] * 49 + ["redeemed"]


# -- the redeem command ---------------------------------------------------------------------------


def test_redeem_command(invites: Invoke, mixed: dict[str, str]) -> None:
    ok = invites("redeem", "sent-aaaa-aaaa-aaaa")
    assert ok.exit_code == 0
    assert ok.stdout == "redeemed SENTAAAAAAAAAAAA (cohort press-a)\n"
    again = invites("redeem", mixed["sent"], "--format", "json")
    assert again.exit_code == 1
    data = json.loads(again.stdout)
    assert data["status"] == "already_redeemed" and data["cohort"] == "press-a" and data["used_at"]
    assert list(data) == ["code", "status", "cohort", "used_at", "expires_at"]
    expired = invites("redeem", mixed["expired"])
    assert expired.exit_code == 1 and expired.stderr.startswith(
        "Error: EXPREDAAAAAAAAAA expired at "
    )
    unknown = invites("redeem", "ZZZZ-ZZZZ-ZZZZ-ZZZZ", "--format", "json")
    assert json.loads(unknown.stdout) == {
        "code": "ZZZZZZZZZZZZZZZZ",
        "status": "unknown",
        "cohort": None,
        "used_at": None,
        "expires_at": None,
    }
    invalid = invites("redeem", "ABC1")
    assert invalid.exit_code == 1
    assert (
        invalid.stderr
        == "Error: invalid character '1' in invite code 'ABC1' (codes never contain 1, I or L)\n"
    )
    nouser = invites(
        "redeem", mixed["pending"], "--user-id", "9b2f7c1e-0000-4000-8000-000000000000"
    )
    assert (
        nouser.stderr
        == "Error: --user-id 9b2f7c1e-0000-4000-8000-000000000000: no such user in public.users\n"
    )


# -- revoke and extend ----------------------------------------------------------------------------


def test_revoke_is_all_or_nothing(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    refused = invites("revoke", mixed["pending"], mixed["redeemed"], mixed["expired"])
    assert refused.exit_code == 1
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("Error: REDEEMEDAAAAAAAA was redeemed at ") and lines[0].endswith(
        ": cannot revoke it"
    )
    assert lines[1].startswith("Error: EXPREDAAAAAAAAAA already expired at ")
    assert lines[2] == "Error: nothing was revoked"
    assert state(conn, mixed["pending"])[3] is True
    ok = invites(
        "revoke",
        mixed["pending"],
        mixed["sent"].lower(),
        "--reason",
        "wrong person",
        "--format",
        "csv",
    )
    assert ok.exit_code == 0
    assert [line.split(",")[:3] for line in ok.stdout.splitlines()[1:]] == [
        ["PENDNGAAAAAAAAAA", "press-a", "revoked"],
        ["SENTAAAAAAAAAAAA", "press-a", "revoked"],
    ]
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE revoked_reason = 'wrong person'"
    ).fetchone() == (2,)


def test_extend_pending_and_expired(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    before = conn.execute(
        "SELECT expires_at FROM beta_invites WHERE code = %s", (mixed["pending"],)
    ).fetchone()
    assert before is not None
    cohort = invites("extend", "--cohort", "press-a", "--by", "14d", "--format", "csv")
    assert cohort.exit_code == 0
    assert sorted(line.split(",")[0] for line in cohort.stdout.splitlines()[1:]) == [
        mixed["pending"],
        mixed["sent"],
    ]
    after = conn.execute(
        "SELECT expires_at FROM beta_invites WHERE code = %s", (mixed["pending"],)
    ).fetchone()
    assert after is not None and after[0] - before[0] == timedelta(days=14)
    refused = invites("extend", mixed["expired"], "--by", "7d")
    assert refused.exit_code == 1
    lines = refused.stderr.splitlines()
    assert lines[0].startswith(f"Error: {mixed['expired']} already expired at ")
    assert lines[1:] == [
        "Error: (--include-expired extends expired, never-redeemed invites too)",
        "Error: nothing was extended",
    ]
    revived = invites(
        "extend", mixed["expired"], "--by", "7d", "--include-expired", "--format", "json"
    )
    assert revived.exit_code == 0
    assert json.loads(revived.stdout)[0]["status"] == "sent"
    redeemed = invites("extend", mixed["redeemed"], "--by", "7d", "--include-expired")
    assert redeemed.exit_code == 1 and "cannot extend it" in redeemed.stderr
    sweep(conn)
    anonymised = invites("extend", mixed["old"], "--by", "7d", "--include-expired")
    assert anonymised.exit_code == 1 and "and its email was anonymised" in anonymised.stderr


# -- the expire sweep -----------------------------------------------------------------------------


def test_sweep_anonymises_only_expired_unredeemed_past_grace(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    graced = invites("expire", "--grace", "7d", "--format", "json")
    assert json.loads(graced.stdout) == {
        "anonymized": 1,
        "awaiting_grace": 1,
        "outbox_messages_removed": 0,
        "waitlist_removed": 0,
    }
    old_email = state(conn, mixed["old"])[0]
    assert old_email != "old@example.com" and "old" not in old_email.split("+")[1]
    assert (
        old_email.startswith("anonymized+")
        and old_email.endswith("@invalid")
        and len(old_email) <= 320
    )
    assert state(conn, mixed["expired"])[0] == "expired@example.com"
    text = invites("expire")
    assert text.stdout == "anonymised 1 expired invite(s); 0 within the grace period\n"
    assert state(conn, mixed["redeemed"])[0] == "redeemed@example.com"
    assert state(conn, mixed["pending"])[0] == "pending@example.com"
    assert state(conn, mixed["sent"])[0] == "sent@example.com"
    quiet = invites("expire")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    # The rows keep their cohort, dates and code, so the report keeps its numbers.
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE code = ANY(%s) AND cohort IS NOT NULL",
        (list(mixed.values()),),
    ).fetchone() == (5,)
    # No trace of any address in the anonymised values.
    emails = [
        r[0] for r in conn.execute("SELECT email FROM beta_invites WHERE anonymized_at IS NOT NULL")
    ]
    assert len(emails) == 2 and not any(
        "old" in e.split("+")[1] or "expired" in e.split("+")[1] for e in emails
    )


def test_sweep_dry_run(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    result = invites("expire", "--dry-run")
    assert result.stdout == "would anonymise 2 expired invite(s); 0 within the grace period\n"
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE anonymized_at IS NOT NULL"
    ).fetchone() == (0,)


def test_overlapping_sweep_steps_aside(invites: Invoke, db_url: str, mixed: dict[str, str]) -> None:
    from beta_invites_cli.sweep import SWEEP_LOCK_KEY

    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SWEEP_LOCK_KEY,))
        result = invites("expire")
        assert result.exit_code == 0
        assert result.stderr == "another sweep is running; nothing to do\n"


def seed_expired(conn: psycopg.Connection[Any], count: int) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, expires_at)
        SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'), 'p' || i || '@example.com', 'bulk', now() - interval '1 hour'
          FROM generate_series(1, %s) AS i
        """,
        (count,),
    )


def test_three_sweeps_at_once(db_url: str, conn: psycopg.Connection[Any]) -> None:
    seed_expired(conn, 3000)
    procs = [
        invites_process(
            "expire", "--batch-size", "100", "--format", "json", env={"DATABASE_URL": db_url}
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    done = sum(json.loads(out)["anonymized"] for out, _ in results if out)
    assert done == 3000
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE anonymized_at IS NULL"
    ).fetchone() == (0,)


def test_sweep_while_redemptions_happen(db_url: str, conn: psycopg.Connection[Any]) -> None:
    seed_expired(conn, 2000)
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort)
        SELECT translate(upper(substr(md5('live' || i), 1, 16)), '01', 'XY'), 'live' || i || '@example.com', 'live' FROM generate_series(1, 300) AS i
        """
    )
    live = [r[0] for r in conn.execute("SELECT code FROM beta_invites WHERE cohort = 'live'")]
    redeemed: list[str] = []

    def redeem_all() -> None:
        with psycopg.connect(db_url) as own:
            for code in live:
                api.redeem(own, code)
                own.commit()
                redeemed.append(code)

    worker = threading.Thread(target=redeem_all)
    worker.start()
    with psycopg.connect(db_url, autocommit=True) as own:
        total = 0
        while True:
            result = sweep(own, batch_size=50)
            total += result.anonymized
            if not worker.is_alive() and result.anonymized == 0:
                break
    worker.join()
    assert sorted(redeemed) == sorted(live)
    assert total == 2000
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE anonymized_at IS NOT NULL), count(*) FILTER (WHERE used_at IS NOT NULL AND anonymized_at IS NULL) FROM beta_invites"
    ).fetchone()
    assert counts == (2000, 300)


def test_a_sweep_after_a_sweep_reads_nothing(conn: psycopg.Connection[Any]) -> None:
    from beta_invites_cli.sweep import ANONYMISE_BATCH

    seed_expired(conn, 5000)
    conn.execute("ANALYZE beta_invites")
    assert sweep(conn).anonymized == 5000
    # The run right after only steps over the index entries the last run left behind (and
    # marks them dead); from then on, until vacuum removes them, nothing is read at all.
    assert sweep(conn).anonymized == 0
    # The sweep's own statement, explained: its row-finding subquery reads the partial index,
    # which no longer holds the finished rows, so it touches a handful of pages at most.
    with conn.transaction(force_rollback=True):
        plan = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(ANONYMISE_BATCH),
            {"grace": timedelta(0), "batch": 5000},
        ).fetchone()
    assert plan is not None
    top = plan[0][0]["Plan"]
    assert top["Actual Rows"] == 0
    assert top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0) < 10
    assert "idx_beta_invites_sweep" in json.dumps(plan[0])


# -- writes re-check everything that makes them legal ---------------------------------------------


def test_extend_never_revives_an_invite_the_sweep_anonymised(db_url: str) -> None:
    """extend's transaction began before the invite expired; the sweep anonymised it since."""
    from beta_invites_cli import lifecycle

    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute(
            "INSERT INTO beta_invites (code, email, cohort, expires_at)"
            " VALUES ('RACEAAAAAAAAAAAA', 'race@example.com', 'press-r', now() + interval '1 second')"
        )
    with psycopg.connect(db_url) as operator:
        operator.execute("SELECT now()")  # the transaction, and its now(), begin here
        time.sleep(1.5)
        with psycopg.connect(db_url, autocommit=True) as cron:
            assert sweep(cron).anonymized == 1
        changes = lifecycle.extend(operator, by=timedelta(days=7), cohort="press-r")
        operator.commit()
    assert changes == []
    with psycopg.connect(db_url) as check:
        row = check.execute(
            "SELECT anonymized_at IS NOT NULL, expires_at > now() FROM beta_invites"
        ).fetchone()
    assert row == (True, False)


def test_redeem_in_a_transaction_older_than_the_sweep_is_refused(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute(
            "INSERT INTO beta_invites (code, email, cohort, expires_at)"
            " VALUES ('RACEBBBBBBBBBBBB', 'race@example.com', 'press-r', now() + interval '1 second')"
        )
    with psycopg.connect(db_url) as host:
        host.execute("SELECT now()")
        time.sleep(1.5)
        with psycopg.connect(db_url, autocommit=True) as cron:
            assert sweep(cron).anonymized == 1
        with pytest.raises(api.InviteExpired):
            api.redeem(host, "RACEBBBBBBBBBBBB")


def test_extend_racing_expire_many_times(db_url: str, conn: psycopg.Connection[Any]) -> None:
    """The trial that found the bug: extend and the sweep at once on invites expiring now."""
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, expires_at)
        SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'), 'p' || i || '@example.com',
               'press-race', clock_timestamp() + (i % 20) * interval '50 milliseconds'
          FROM generate_series(1, 2000) AS i
        """
    )
    from beta_invites_cli import lifecycle

    stop = time.monotonic() + 1.5
    errors: list[BaseException] = []

    def extender() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                while time.monotonic() < stop:
                    lifecycle.extend(c, by=timedelta(milliseconds=200), cohort="press-race")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def sweeper() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                while time.monotonic() < stop:
                    sweep(c, batch_size=100)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=extender), threading.Thread(target=sweeper)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    undead = conn.execute(
        "SELECT count(*) FROM beta_invites WHERE anonymized_at IS NOT NULL AND expires_at > now()"
    ).fetchone()
    assert undead == (0,)


def test_revoked_stays_revoked(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    assert invites("revoke", mixed["pending"], "--reason", "wrong person").exit_code == 0
    revived = invites("extend", mixed["pending"], "--by", "7d", "--include-expired")
    assert revived.exit_code == 1
    assert revived.stderr.splitlines()[0].startswith(f"Error: {mixed['pending']} was revoked at ")
    assert revived.stderr.splitlines()[0].endswith(": cannot extend it")
    cohort = invites("extend", "--cohort", "press-a", "--by", "7d", "--include-expired")
    assert cohort.exit_code == 0
    assert mixed["pending"] not in cohort.stdout
    redeemed = invites("redeem", mixed["pending"], "--format", "json")
    assert json.loads(redeemed.stdout)["status"] == "revoked"
    with pytest.raises(api.InviteRevoked):
        api.redeem(conn, mixed["pending"])
    listed = invites("list", "--status", "revoked", "--format", "csv")
    assert [line.split(",")[0] for line in listed.stdout.splitlines()[1:]] == [mixed["pending"]]
    shown = json.loads(invites("show", mixed["pending"], "--format", "json").stdout)[0]
    assert (shown["status"], shown["revoked_reason"]) == ("revoked", "wrong person")
    assert invites("list", "--status", "unsent", "--format", "csv").stdout.count("\n") == 1
    report = json.loads(invites("report", "--format", "json").stdout)
    (press_a,) = [r for r in report if r["cohort"] == "press-a"]
    assert press_a["revoked"] == 1
    assert press_a["issued"] == sum(
        press_a[k] for k in ("redeemed", "pending", "expired", "revoked")
    )


def test_revoked_precedes_a_later_expiry(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    """Whoever moves a revoked invite's expiry forward (the host application, an import), it
    stays revoked: never redeemed, sent or listed as pending."""
    assert invites("revoke", mixed["pending"]).exit_code == 0
    conn.execute(
        "UPDATE beta_invites SET expires_at = now() + interval '9 days' WHERE code = %s",
        (mixed["pending"],),
    )
    assert api.check(conn, mixed["pending"]).status == "revoked"
    with pytest.raises(api.InviteRevoked):
        api.redeem(conn, mixed["pending"])
    sent = invites("send", "--cohort", "press-a", "--outbox", "mail")
    assert sent.stderr.splitlines()[0] == "sent 0, failed 0, bounced 0, skipped 0"
    assert (
        invites("list", "--status", "pending", "--format", "csv").stdout.count(mixed["pending"])
        == 0
    )


def test_revoke_a_cohort_pattern(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    preview = invites("revoke", "--cohort", "press-*", "--dry-run", "--format", "csv")
    assert preview.exit_code == 0
    assert sorted(line.split(",")[0] for line in preview.stdout.splitlines()[1:]) == sorted(
        [mixed["pending"], mixed["sent"]]
    )
    assert preview.stderr == "would revoke 2 pending invite(s); nothing was changed\n"
    # Not on a terminal (CliRunner's stdin is not one): --yes is required.
    refused = invites("revoke", "--cohort", "press-*")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[-1] == (
        "Error: --yes is required when not running on a terminal"
    )
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE revoked_at IS NOT NULL"
    ).fetchone() == (0,)
    done = invites(
        "revoke", "--cohort", "press-*", "--yes", "--reason", "embargo", "--format", "csv"
    )
    assert done.exit_code == 0, done.stderr
    assert done.stderr == "revoked 2\n"
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE revoked_reason = 'embargo'"
    ).fetchone() == (2,)
    both = invites("revoke", mixed["sent"], "--cohort", "press-*")
    assert both.exit_code == 2


def test_infinite_expiry_set_by_the_host(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    conn.execute(
        "UPDATE beta_invites SET expires_at = 'infinity' WHERE code = %s", (mixed["pending"],)
    )
    listed = invites("list", "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    (record,) = [r for r in json.loads(listed.stdout) if r["code"] == mixed["pending"]]
    assert (record["status"], record["expires_at"]) == ("unsent", "infinity")
    table = invites("show", mixed["pending"])
    assert table.exit_code == 0 and "never" in table.stdout
    extended = invites("extend", mixed["pending"], "--by", "7d", "--format", "json")
    assert extended.exit_code == 0, extended.stderr
    assert json.loads(extended.stdout)[0]["expires_at"] == "infinity"
    sent = invites("send", "--cohort", "press-a", "--outbox", "mail")
    assert sent.exit_code == 0, sent.stderr
    assert api.check(conn, mixed["pending"]).status == "sent"


def test_a_typed_zero_redeems_the_code_with_the_letter_o(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('OOOOAAAAAAAAAAAA', 'o@example.com', 'c')"
    )
    result = invites("redeem", "0000-aaaa-aaaa-aaaa")
    assert (result.exit_code, result.stdout) == (0, "redeemed OOOOAAAAAAAAAAAA (cohort c)\n")


# -- promises ---------------------------------------------------------------------------------------


def test_the_anonymised_value_carries_no_trace_of_the_address(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, expires_at) VALUES
          ('TRACEAAAAAAAAAAA', 'same@example.com', 'c', now() - interval '1 day'),
          ('TRACEBBBBBBBBBBB', 'same@example.com', 'c', now() - interval '1 day')
        """
    )
    assert invites("expire").exit_code == 0
    values = [r[0] for r in conn.execute("SELECT email FROM beta_invites ORDER BY code")]
    # Any function of the address (a digest, reversible by hashing candidates) would give the
    # same value twice.
    assert values[0] != values[1]
    import hashlib

    digests = {
        hashlib.new(name, b"same@example.com").hexdigest()[:8] for name in ("md5", "sha1", "sha256")
    }
    assert not any(d in v for d in digests for v in values)


def test_extend_of_several_codes_is_all_or_nothing(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    before = conn.execute(
        "SELECT code, expires_at FROM beta_invites WHERE code = %s", (mixed["pending"],)
    ).fetchone()
    refused = invites("extend", mixed["pending"], mixed["redeemed"], "--by", "7d")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[-1] == "Error: nothing was extended"
    after = conn.execute(
        "SELECT code, expires_at FROM beta_invites WHERE code = %s", (mixed["pending"],)
    ).fetchone()
    assert after == before


def test_a_revived_invite_counts_from_now(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    # 'old' expired ten days ago: one more hour from its old expiry would still be the past.
    revived = invites("extend", mixed["old"], "--by", "1h", "--include-expired")
    assert revived.exit_code == 0, revived.stderr
    row = conn.execute(
        "SELECT expires_at - now() FROM beta_invites WHERE code = %s", (mixed["old"],)
    ).fetchone()
    assert row is not None and timedelta(minutes=59) < row[0] <= timedelta(hours=1)
    assert api.check(conn, mixed["old"]).status in ("sent", "unsent")


def test_resend_refuses_expired_codes(
    invites: Invoke, conn: psycopg.Connection[Any], mixed: dict[str, str]
) -> None:
    named = invites("resend", mixed["expired"], "--outbox", "mail")
    assert named.exit_code == 1
    assert named.stderr.splitlines() == [
        named.stderr.splitlines()[0],
        "Error: nothing was resent",
    ]
    assert named.stderr.startswith(f"Error: {mixed['expired']} expired at ")
    by_cohort = invites("resend", "--cohort", "press-b", "--outbox", "mail")
    assert by_cohort.exit_code == 0
    assert by_cohort.stderr == "nothing to resend in press-b: no sent, live invites\n"
    assert not (Path("mail").exists() and any(Path("mail").iterdir()))


def test_codes_from_generate_and_send_use_only_the_alphabet(
    invites: Invoke, conn: psycopg.Connection[Any]
) -> None:
    from beta_invites_cli.codes import ALPHABET

    addresses = " ".join(f"--email g{i}@example.com" for i in range(300))
    assert invites(f"generate --cohort g --format csv {addresses}").exit_code == 0
    sent = " ".join(f"--email s{i}@example.com" for i in range(300))
    assert invites(f"send --cohort s --outbox mail {sent}").exit_code == 0
    codes = [r[0] for r in conn.execute("SELECT code FROM beta_invites WHERE cohort IN ('g', 's')")]
    assert len(codes) == 600
    assert all(len(code) == 16 and set(code) <= set(ALPHABET) for code in codes)
    with pytest.raises(api.InvalidCode):
        api.redeem(conn, codes[0] + "A")
