"""No message ever contains a password, or part of one, whatever URL a person types."""

from __future__ import annotations

import pytest

from beta_invites_cli.urls import mask, parse
from tests.conftest import Invoke
from tests.test_issue_send import FROM

PASSWORD = "Zq7-Sekr@t/Pa55?w0rd#x%zz y"


def pieces(secret: str, size: int = 4) -> set[str]:
    """Every run of `size` characters of the secret: none may appear in any output."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaked(output: str, secret: str) -> set[str]:
    return {piece for piece in pieces(secret) if piece in output}


BAD_DATABASE_URLS = [
    f"postgresql://u:{PASSWORD}@127.0.0.1:1/db",
    f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/db",
    f"  postgresql://u:{PASSWORD}@127.0.0.1:1/db",
    f"postgres://u:{PASSWORD}@127.0.0.1:1/db?sslmode=disable",
    f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db",
    f"postgresql://u:{PASSWORD}@/db?host=/nonexistent",
    f"postgresql://u:{PASSWORD}@127.0.0.1:1/db?bogus=1",
    f"mysql://u:{PASSWORD}@127.0.0.1:1/db",
    f"host=127.0.0.1 port=1 password={PASSWORD.replace(' ', '')} dbname=db",
    f"host=127.0.0.1 port=1 password='{PASSWORD}' dbname=db bogus=1",
]


@pytest.mark.parametrize("url", BAD_DATABASE_URLS)
@pytest.mark.parametrize("command", [["migrate"], ["list"], ["migrate", "--status"]])
def test_database_passwords_never_appear(url: str, command: list[str]) -> None:
    result = Invoke(url)(*command)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    secret = PASSWORD if "password=" not in url or "'" in url else PASSWORD.replace(" ", "")
    assert leaked(result.output, secret) == set(), result.output


def test_the_option_is_masked_too() -> None:
    result = Invoke("postgresql://ignored@127.0.0.1:1/x")(
        "--database-url", f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", "list"
    )
    assert result.exit_code == 1
    assert leaked(result.output, PASSWORD) == set()


@pytest.mark.parametrize(
    "password", ["pw#with-hash", "pw/with/slash", "pw?with=query", "pw@at", "p%zzw d"]
)
def test_smtp_passwords_never_appear(invites: Invoke, password: str) -> None:
    result = invites(
        "send",
        "--cohort",
        "press-x",
        "--email",
        "a@example.com",
        env={"SMTP_URL": f"smtp://user:{password}@127.0.0.1:1", **FROM},
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot connect to the mail server smtp://user:***@127.0.0.1:1: "
        "[Errno 111] Connection refused\n"
    )
    assert leaked(result.output, password) == set()


def test_urls_are_split_at_the_last_at_sign() -> None:
    parsed = parse(f" postgresql+psycopg://me:{PASSWORD}@db.example:6432/app?sslmode=require ")
    assert parsed is not None
    assert (parsed.user, parsed.password) == ("me", PASSWORD.replace("%zz", "%zz"))
    assert parsed.location == "db.example:6432/app?sslmode=require"
    assert (
        mask(f"postgresql://me:{PASSWORD}@db.example/app") == "postgresql://me:***@db.example/app"
    )
    assert mask("host=h password='a b' dbname=x") == "host=h password=*** dbname=x"
    assert parse("postgresql://u:p%40ss@h/db") is not None
    assert parse("postgresql://u:p%40ss@h/db").password == "p@ss"  # type: ignore[union-attr]


def test_a_messy_password_still_connects(db_url: str, admin_url: str) -> None:
    """Unencoded special characters in a real password: the URL works as typed."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    server = conninfo_to_dict(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS messy")
        admin.execute("CREATE ROLE messy LOGIN SUPERUSER PASSWORD 'p@ss/w#rd?'")
    try:
        dbname = conninfo_to_dict(db_url)["dbname"]
        url = f"postgresql+psycopg://messy:p@ss/w#rd?@{server.get('host', '127.0.0.1')}:{server.get('port', 5432)}/{dbname}"
        result = Invoke(url)("report")
        assert result.exit_code == 0, result.output
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("DROP ROLE IF EXISTS messy")
