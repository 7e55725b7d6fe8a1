from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from beta_invites_cli.cli import cli
from beta_invites_cli.settings import load_settings


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env or {}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_dotenv_in_the_current_directory_is_read(db_url: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"# comment\nDATABASE_URL={db_url}\n", encoding="utf-8-sig")
    code, out, _ = run("migrate", "--status", "--format", "csv")
    assert code == 0
    assert out.splitlines()[1].startswith("990_beta_invites.sql,applied,")


def test_real_environment_wins_over_dotenv(db_url: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://nobody@127.0.0.1:1/none\n")
    code, _, err = run("migrate", "--status", env={"DATABASE_URL": db_url})
    assert code == 0, err


def test_env_file_option(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text(f"DATABASE_URL={db_url}\n")
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://nobody@127.0.0.1:1/none\n")
    code, _, err = run("--env-file", str(tmp_path / "prod.env"), "migrate", "--status")
    assert code == 0, err
    missing = run("--env-file", str(tmp_path / "nope.env"), "migrate")
    assert missing[0] == 1
    assert missing[2] == f"Error: env file not found: {tmp_path / 'nope.env'}\n"


def test_database_url_option_wins(db_url: str) -> None:
    code, _, err = run(
        "--database-url",
        db_url,
        "migrate",
        "--status",
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert code == 0, err


def test_pg_variables_from_dotenv_reach_libpq(db_url: str, tmp_path: Path) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(db_url)
    (tmp_path / ".env").write_text(
        f"PGHOST={params['host']}\nPGPORT={params['port']}\nPGUSER={params['user']}\n"
        f"PGDATABASE={params['dbname']}\n"
    )
    settings = load_settings()
    assert not settings.uses_embedded_database
    code, out, err = run("migrate", "--status", "--format", "csv")
    assert code == 0, err
    assert "991_beta_invites_delivery.sql,applied" in out


def test_embedded_is_the_default_only_without_any_database_setting() -> None:
    assert load_settings(environ={}).uses_embedded_database
    assert not load_settings(environ={"PGHOST": "db"}).uses_embedded_database
    assert not load_settings(environ={}, database_url="postgresql:///x").uses_embedded_database


def test_env_example_documents_every_setting_the_code_reads() -> None:
    """Every INVITES_*/SMTP_*/DATABASE_URL* name the package reads is in .env.example and the
    README's settings table."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = "\n".join(p.read_text() for p in (root / "beta_invites_cli").rglob("*.py"))
    names = set(re.findall(r'"((?:INVITES|SMTP)_[A-Z_]+|DATABASE_URL(?:_FILE)?)"', code))
    names |= {"SMTP_URL_FILE", "DATABASE_URL_FILE"}  # read as NAME + "_FILE"
    example = (root / ".env.example").read_text()
    readme = (root / "README.md").read_text()
    assert sorted(n for n in names if n not in example) == []
    assert sorted(n for n in names if f"`{n}`" not in readme) == []
