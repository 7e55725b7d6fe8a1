"""The workloads: each pairs one of our commands with the best baseline on the same data."""

from __future__ import annotations

import sys

from bench.harness import Context, Workload, invites_command, psql_command, run_quiet
from beta_invites_cli import migrations


def startup(ctx: Context) -> Workload:
    invites = invites_command()
    return Workload(
        name="startup",
        ours_label="invites --version",
        baseline_label='python -c "import psycopg, click"',
        ours=lambda: run_quiet([*invites, "--version"]),
        baseline=lambda: run_quiet([sys.executable, "-c", "import psycopg, click"]),
    )


def migrate(ctx: Context) -> Workload:
    invites = invites_command()
    files = [str(migrations.sql_directory() / m.name) for m in migrations.available()]
    ours_url = ctx.url("bench_migrate_ours")
    base_url = ctx.url("bench_migrate_psql")

    def fresh(name: str) -> None:
        url = ctx.fresh_database(name, migrated=False)
        run_quiet(
            [
                *psql_command(),
                url,
                "-c",
                "CREATE TABLE public.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid())",
            ]
        )

    return Workload(
        name="migrate",
        ours_label="invites migrate (empty database)",
        baseline_label="psql -f each file",
        prepare_ours=lambda: fresh("bench_migrate_ours"),
        prepare_baseline=lambda: fresh("bench_migrate_psql"),
        ours=lambda: run_quiet([*invites, "migrate"], env=ctx.env(ours_url)),
        baseline=lambda: run_quiet(
            [*psql_command(), base_url, *[a for f in files for a in ("-f", f)]]
        ),
        notes=["ours also takes the advisory lock, verifies checksums and records each file"],
    )


ALL = {"startup": startup, "migrate": migrate}
