"""`invites expire` and the README's cron lines as cron really runs them: its PATH
(/usr/bin:/bin), no environment but HOME/LOGNAME/SHELL, as another user than the one that
sent, and from a directory without the .env."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import provider_samples
from tests.conftest import Invoke

README = Path(__file__).resolve().parent.parent / "README.md"
CRON_ENV = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "LOGNAME": "root"}


def cron_run(command: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`command` as cron runs a crontab line: /bin/sh -c, cron's PATH, nothing else set."""
    return subprocess.run(
        ["/bin/sh", "-c", command],
        env={**CRON_ENV, "HOME": str(home), **env},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def readme_cron_lines() -> list[str]:
    """The command of every crontab line in the README's ```cron blocks."""
    blocks = re.findall(r"```cron\n(.*?)```", README.read_text(), re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    return [" ".join(line.split()[5:]) for line in lines if not line.startswith("#")]


def expire_everything(conn: psycopg.Connection[Any]) -> None:
    conn.execute("UPDATE beta_invites SET expires_at = now() - interval '1 day'")


def test_expire_as_another_user_says_what_it_could_not_delete(
    invites: Invoke, conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user (CI is root)")
    sent = invites(
        "send --cohort press-x --outbox mail --email ada@example.org --email b@example.org"
    )
    assert sent.exit_code == 0, sent.stderr
    expire_everything(conn)
    mail = tmp_path / "mail"
    assert len(list(mail.glob("*.eml"))) == 2
    # The outbox belongs to the user that sent; cron runs expire as another one (root without
    # the capabilities that let it write anywhere: a plain user, as far as files go).
    os.chown(mail, 65534, 65534)
    as_other = [
        "setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--",
        sys.executable, "-m", "beta_invites_cli", "expire",
    ]  # fmt: skip
    env = {
        "DATABASE_URL": db_url,
        "INVITES_HOME": os.environ["INVITES_HOME"],
        "PATH": "/usr/bin:/bin",
    }
    first = subprocess.run(as_other, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 1
    assert first.stdout == "anonymised 2 expired invite(s); 0 within the grace period\n"
    assert first.stderr == (
        f"Error: could not delete 2 outbox message(s) of anonymised invites in {mail} "
        "(Permission denied): they still hold the addresses; run `invites expire` as the user "
        "that sent them, or delete them (the next run tries again)\n"
    )
    assert conn.execute(
        "SELECT count(*) FROM beta_invites WHERE anonymized_at IS NOT NULL"
    ).fetchone() == (2,)
    # The next run, with the right to delete them, does.
    second = subprocess.run(as_other[3:], env=env, capture_output=True, text=True, check=False)
    assert (second.returncode, second.stderr) == (0, "")
    assert second.stdout == (
        "anonymised 0 expired invite(s); 0 within the grace period; removed 2 outbox message(s)\n"
    )
    assert list(mail.glob("*.eml")) == []


def test_the_readme_cron_lines_run_under_cron(
    invites: Invoke, conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    lines = readme_cron_lines()
    assert len(lines) >= 2 and all(line.startswith("cd /srv/beta && ") for line in lines)
    assert invites("send --cohort press-x --outbox outbox --email ada@example.org").exit_code == 0
    assert invites("cohort set creator-beta --seats 10").exit_code == 0  # what fill's line fills
    # /srv/beta, as the README sets it up: the project's .env and its virtualenv.
    project = tmp_path / "srv-beta"
    project.mkdir()
    (project / ".env").write_text(f"DATABASE_URL={db_url}\nINVITES_OUTBOX=./outbox\n")
    (project / ".venv").symlink_to(sys.prefix)
    # Where a webhook receiver saves provider events (the bounces import line).
    (project / "webhooks").mkdir()
    (project / "webhooks" / "1.json").write_text(
        json.dumps(provider_samples.ses_bounce("stranger@example.org", "not-ours@x"))
    )
    for line in lines:
        done = cron_run(line.replace("/srv/beta", str(project)), tmp_path)
        assert done.returncode == 0, f"{line}: {done.stderr}"
        assert "Traceback" not in done.stderr


def test_expire_without_its_cd_creates_no_database(tmp_path: Path) -> None:
    home = tmp_path / "cron-user"
    home.mkdir()
    venv_invites = Path(sys.prefix) / "bin" / "invites"
    done = cron_run(f"{venv_invites} expire", home, INVITES_HOME=str(home / "state"))
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: no database: DATABASE_URL is not set and there is no embedded database in "
        f"{home / 'state'} (a cron job must `cd` to the directory of its .env, or set "
        "DATABASE_URL); nothing was created\n"
    )
    assert not (home / "state" / "pgdata").exists()
    assert shutil.which("pg_ctl") is None or not list((home / "state").glob("**/postmaster.pid"))


def test_expire_on_a_database_never_migrated_names_it(invites: Invoke, empty_db_url: str) -> None:
    result = invites("expire", env={"DATABASE_URL": empty_db_url})
    assert result.exit_code == 1
    name = empty_db_url.rsplit("dbname=", 1)[-1].split()[0]
    assert result.stderr.startswith("Error: the database schema of postgresql://")
    assert f"/{name} is not up to date (" in result.stderr
    assert result.stderr.endswith("): run `invites migrate`\n")
