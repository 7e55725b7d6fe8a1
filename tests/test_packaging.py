"""The migrations ship inside the package: an installed, non-editable copy must find them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_wheel_finds_its_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("beta_invites-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    expected = sorted(p.name for p in (ROOT / "sql").glob("*.sql"))
    shipped = sorted(p.name for p in (site / "beta_invites_cli" / "sql").glob("*.sql"))
    assert shipped == expected
    # Run from elsewhere, with only the unpacked wheel on the path: no repository sql/ to fall back on.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from beta_invites_cli import migrations; d = migrations.sql_directory(); "
            "print(d); print(','.join(m.name for m in migrations.available()))",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    directory, names = probe.stdout.splitlines()
    assert directory == str(site / "beta_invites_cli" / "sql")
    assert names.split(",") == expected
    assert (site / "beta_invites_cli" / "sql" / "990_beta_invites.sql").read_bytes() == (
        ROOT / "sql" / "990_beta_invites.sql"
    ).read_bytes()
    # The HTML report's partial Plotly bundle, and its licence, ship too.
    for asset in ("plotly-finance.min.js", "plotly-LICENSE"):
        assert (site / "beta_invites_cli" / "assets" / asset).read_bytes() == (
            ROOT / "beta_invites_cli" / "assets" / asset
        ).read_bytes()


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "beta_invites_cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "invites, version 0.1.0\n"
