from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from beta_invites_cli import migrations
from beta_invites_cli.sqlsplit import split_statements
from tests.conftest import Invoke, invites_process

SQL_FILES = sorted(p.name for p in migrations.sql_directory().glob("*.sql"))


def tracked(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT filename, checksum FROM public.invites_schema_migrations ORDER BY filename"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_seed_ships_byte_for_byte() -> None:
    shipped = migrations.sql_directory() / "990_beta_invites.sql"
    seed = Path(__file__).resolve().parents[1] / ".." / "shared" / "seed" / "990_beta_invites.sql"
    if not seed.exists():
        pytest.skip("../shared/seed is not beside this checkout")
    assert shipped.read_bytes() == seed.read_bytes()


def test_migrate_applies_everything_and_records_checksums(empty_db_url: str) -> None:
    invites = Invoke(empty_db_url)
    result = invites("migrate", "--create-users-table")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == f"Applied {len(SQL_FILES)} migration(s)."
    assert [name for name, _ in tracked(empty_db_url)] == SQL_FILES
    expected = {m.name: m.checksum for m in migrations.available()}
    assert dict(tracked(empty_db_url)) == expected
    with psycopg.connect(empty_db_url) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'beta_invites'"
            )
        }
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'beta_invites'"
            )
        }
    assert {"sent_at", "redeemed_by", "code", "cohort"} <= columns
    # 992 drops the seed's duplicate unique index; the constraint's index stays.
    assert "beta_invites_code_key" in indexes and "idx_beta_invites_code" not in indexes

    again = invites("migrate")
    assert again.exit_code == 0
    assert again.stderr.strip() == "Up to date: nothing to apply."


def test_missing_users_table_stops_before_doing_anything(empty_db_url: str) -> None:
    result = Invoke(empty_db_url)("migrate")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: public.users does not exist")
    assert "--create-users-table" in result.stderr
    with psycopg.connect(empty_db_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert row == (0,)


def test_database_where_the_app_already_ran_990(empty_db_url: str) -> None:
    seed = (migrations.sql_directory() / "990_beta_invites.sql").read_text()
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid())")
        conn.execute(seed.encode())
        conn.execute(
            "INSERT INTO public.beta_invites (code, email, cohort) VALUES ('AAAAAAAAAAAAAAAA', 'a@example.com', 'press-x')"
        )
    result = Invoke(empty_db_url)("migrate")
    assert result.exit_code == 0, result.output
    assert [n for n, _ in tracked(empty_db_url)] == SQL_FILES
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM public.beta_invites").fetchone() == (1,)


def test_checksum_mismatch_stops_the_run(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.invites_schema_migrations SET checksum = %s WHERE filename = %s",
            ("0" * 64, "991_beta_invites_delivery.sql"),
        )
    current = {m.name: m.checksum for m in migrations.available()}["991_beta_invites_delivery.sql"]
    result = Invoke(db_url)("migrate")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: checksum mismatch for 991_beta_invites_delivery.sql: applied {'0' * 64}, "
        f"file now {current}; a migration must not change after it is applied (add a new file instead)\n"
    )
    status = Invoke(db_url)("migrate", "--status", "--format", "csv")
    assert "991_beta_invites_delivery.sql,changed,000000000000" in status.stdout


def test_failing_file_leaves_nothing_behind(empty_db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.users (id uuid PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE public.invites_schema_migrations (filename text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), duration_ms integer NOT NULL)"
        )
    broken = [
        migrations.Migration(
            "500_broken.sql",
            "CREATE TABLE public.half (id int);\n-- the next one fails\nINSERT INTO public.nowhere VALUES (1);\n",
        )
    ]
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        with pytest.raises(migrations.MigrationFailed) as caught:
            migrations._apply(conn, broken[0])
        assert str(caught.value) == (
            '500_broken.sql failed, nothing of it was applied: relation "public.nowhere" does not exist'
            " (in: INSERT INTO public.nowhere VALUES (1);)"
        )
        assert conn.execute("SELECT to_regclass('public.half')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM public.invites_schema_migrations").fetchone() == (
            0,
        )


def test_five_concurrent_migrates_apply_each_file_once(empty_db_url: str) -> None:
    procs = [
        invites_process("migrate", "--create-users-table", env={"DATABASE_URL": empty_db_url})
        for _ in range(5)
    ]
    outcomes = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in outcomes] == [0] * 5, outcomes
    applied_lines = sum(err.count("applied 9") for _, err in outcomes)
    assert applied_lines == len(SQL_FILES)
    assert [n for n, _ in tracked(empty_db_url)] == SQL_FILES


def test_status_and_exit_code(empty_db_url: str) -> None:
    invites = Invoke(empty_db_url)
    before = invites("migrate", "--status", "--exit-code", "--format", "json")
    assert before.exit_code == 3
    assert before.stdout.count('"status": "pending"') == len(SQL_FILES)
    invites("migrate", "--create-users-table")
    after = invites("migrate", "--status", "--exit-code", "--format", "csv")
    assert after.exit_code == 0
    lines = after.stdout.splitlines()
    assert lines[0] == "name,status,checksum,applied_at,duration_ms"
    assert [line.split(",")[:2] for line in lines[1:]] == [[n, "applied"] for n in SQL_FILES]


def test_dry_run_changes_nothing(empty_db_url: str) -> None:
    result = Invoke(empty_db_url)("migrate", "--dry-run")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"would apply {n}" for n in SQL_FILES]
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute(
            "SELECT to_regclass('public.invites_schema_migrations')"
        ).fetchone() == (None,)


def test_exit_code_needs_status(invites: Invoke) -> None:
    result = invites("migrate", "--exit-code")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: --exit-code goes with --status"


@pytest.mark.parametrize("broken", ["changed", "missing"])
def test_exit_code_fails_a_deploy_for_a_changed_or_missing_file(db_url: str, broken: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        if broken == "changed":
            conn.execute(
                "UPDATE public.invites_schema_migrations SET checksum = %s WHERE filename = %s",
                ("0" * 64, "991_beta_invites_delivery.sql"),
            )
        else:
            conn.execute(
                "INSERT INTO public.invites_schema_migrations (filename, checksum, duration_ms)"
                " VALUES ('980_gone.sql', %s, 1)",
                ("0" * 64,),
            )
    result = Invoke(db_url)("migrate", "--status", "--exit-code", "--format", "csv")
    assert result.exit_code == 1
    name = "991_beta_invites_delivery.sql" if broken == "changed" else "980_gone.sql"
    assert result.stderr == (
        f"Error: {name} was applied but is {broken} on disk: a deploy must not go on with this database\n"
    )


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1;", "SELECT 2;"]),
        ("SELECT ';'; -- a ; comment\nSELECT 2", ["SELECT ';';", "-- a ; comment\nSELECT 2"]),
        ("DO $$ BEGIN PERFORM 1; END $$;\n", ["DO $$ BEGIN PERFORM 1; END $$;"]),
        ("/* ; */ SELECT 'it''s';", ["/* ; */ SELECT 'it''s';"]),
        ("-- only a comment\n", []),
    ],
)
def test_split_statements(sql: str, expected: list[str]) -> None:
    assert list(split_statements(sql)) == expected


def test_unreachable_database_is_one_line() -> None:
    result = Invoke("postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere")("migrate")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot connect to the database at 127.0.0.1:1: ")
    assert "Connection refused" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "s3cret-pw" not in result.output


def test_wrong_password_and_missing_database(admin_url: str) -> None:
    if os.environ.get("INVITES_TEST_DATABASE_URL"):
        # This test rewrites the server's pg_hba.conf: only ever our own throwaway server's.
        pytest.skip("edits pg_hba.conf: runs only on the server the suite starts itself")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS invites_pw_test")
        conn.execute("CREATE ROLE invites_pw_test LOGIN PASSWORD 'right-password'")
        hba_row = conn.execute("SHOW hba_file").fetchone()
        assert hba_row is not None
        hba = Path(str(hba_row[0]))
        if not os.access(hba, os.W_OK):
            pytest.skip("cannot edit the server's pg_hba.conf")
        original = hba.read_text()
        # The test server trusts every login; demand a password from this one role.
        hba.write_text("host all invites_pw_test 127.0.0.1/32 scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        params = psycopg.conninfo.conninfo_to_dict(admin_url)
        host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
        url = f"postgresql://invites_pw_test:wrong-password@{host}:{port}/postgres"
        wrong = Invoke(url)("migrate", "--status")
        assert wrong.exit_code == 1
        assert wrong.stderr == (
            f"Error: cannot connect to the database at {host}:{port}: "
            'password authentication failed for user "invites_pw_test"\n'
        )
        assert "wrong-password" not in wrong.output
        user = params.get("user", "postgres")
        missing = Invoke(f"postgresql://{user}@{host}:{port}/no_such_db")("migrate")
        assert missing.exit_code == 1
        assert missing.stderr == (
            f'Error: cannot connect to the database at {host}:{port}: database "no_such_db" does not exist\n'
        )
    finally:
        hba.write_text(original)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


def test_password_is_masked_when_the_database_is_named(db_url: str) -> None:
    from beta_invites_cli.database import Target

    target = Target("postgresql://ops:hunter2@db.example.com:6543/app", {})
    assert target.describe() == "postgresql://ops:***@db.example.com:6543/app"
    keyword_form = Target("host=db.example.com user=ops password=hunter2 dbname=app", {})
    assert keyword_form.describe() == "postgresql://ops:***@db.example.com:5432/app"
    # The test server trusts logins, so any password gets in: it must not come out.
    params = psycopg.conninfo.conninfo_to_dict(db_url)
    with_password = psycopg.conninfo.make_conninfo(db_url, password="hunter2")
    status = Invoke(with_password)("migrate", "--status")
    assert status.exit_code == 0
    assert f"{params.get('user')}:***@" in status.stdout
    assert "hunter2" not in status.output
