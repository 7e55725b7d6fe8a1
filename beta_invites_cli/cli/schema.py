"""Commands for the database itself: `migrate`, and `db status|stop` for the embedded one."""

from __future__ import annotations

import sys

import click

from beta_invites_cli import migrations
from beta_invites_cli.cli.common import App, Problems, fail, pass_app, say
from beta_invites_cli.cli.options import format_option
from beta_invites_cli.cli.render import Column, render
from beta_invites_cli.embedded import EmbeddedCluster, default_home
from beta_invites_cli.exits import ExitCode

MIGRATION_COLUMNS = [
    Column("name", "File"),
    Column("status", "Status"),
    Column("checksum", "SHA-256", drop=2),
    Column("applied_at", "Applied at", drop=1),
    Column("duration_ms", "ms", numeric=True, drop=3),
]


@click.command(epilog="Example: invites migrate --status --exit-code")
@click.option("--status", "show_status", is_flag=True, help="Show applied and pending files.")
@click.option(
    "--exit-code",
    is_flag=True,
    help="With --status: exit 3 when files are pending, 1 when an applied file changed or is missing.",
)
@click.option("--dry-run", is_flag=True, help="List what would be applied; change nothing.")
@click.option(
    "--create-users-table",
    is_flag=True,
    help="Create a minimal public.users table if the host application has none.",
)
@format_option()
@pass_app
def migrate(
    app: App, show_status: bool, exit_code: bool, dry_run: bool, create_users_table: bool, fmt: str
) -> None:
    """Apply the migrations in sql/ that this database has not seen yet."""
    if exit_code and not show_status:
        raise click.UsageError("--exit-code goes with --status")
    with app.database.connect(autocommit=True) as conn:
        if show_status:
            states = migrations.states(conn)
            title = f"Migrations on {app.database.target().describe()}"
            show_states(states, fmt, title, exit_code=exit_code)
            return
        if dry_run:
            todo = migrations.pending(conn)
            for migration in todo:
                click.echo(f"would apply {migration.name}")
            say("Up to date: nothing to apply." if not todo else f"{len(todo)} to apply (dry run).")
            return
        try:
            result = migrations.migrate(
                conn,
                create_users_table=create_users_table or app.embedded,
                on_applied=lambda name, ms: say(f"applied {name} ({ms} ms)"),
            )
        except migrations.MissingUsersTable as exc:
            fail(f"{exc}, or pass --create-users-table to create a minimal one")
    if result.created_users_table:
        say("created a minimal public.users table")
    if not result.applied:
        say("Up to date: nothing to apply.")
    else:
        say(f"Applied {len(result.applied)} migration(s).")


def show_states(
    states: list[migrations.MigrationState], fmt: str, title: str, *, exit_code: bool
) -> None:
    """The status table; with --exit-code, 3 for pending files and 1 for broken ones."""
    render(
        ({**vars(s), "checksum": s.checksum[:12]} for s in states),
        MIGRATION_COLUMNS,
        fmt,
        title=title,
    )
    if not exit_code:
        return
    broken = [s for s in states if s.status in ("changed", "missing")]
    if broken:
        raise Problems(
            [
                f"{s.name} was applied but is {s.status} on disk: "
                "a deploy must not go on with this database"
                for s in broken
            ]
        )
    if any(s.status == "pending" for s in states):
        sys.exit(ExitCode.PENDING)


@click.group(epilog="Example: invites db status")
def db() -> None:
    """Manage the embedded database (used when no DATABASE_URL is set)."""


@db.command("status", epilog="Example: invites db status")
@pass_app
def db_status(app: App) -> None:
    """Say where the embedded database lives and whether it is running."""
    cluster = EmbeddedCluster(default_home(app.settings.values))
    status = cluster.status()
    if not app.embedded:
        say(f"Note: commands use {app.database.target().describe()}, not the embedded database.")
    click.echo(f"location: {status.home}")
    if not status.initialised:
        click.echo("state: not created yet (the first command that needs it creates it)")
        return
    click.echo(f"state: {f'running (pid {status.pid})' if status.running else 'stopped'}")
    click.echo(f"postgresql: {status.version} ({status.binaries})")
    click.echo(f"socket: {cluster.socket_dir}")


@db.command("stop", epilog="Example: invites db stop")
@pass_app
def db_stop(app: App) -> None:
    """Stop the embedded database server (the next command starts it again)."""
    cluster = EmbeddedCluster(default_home(app.settings.values))
    if cluster.stop():
        say(f"stopped the embedded database in {cluster.home}")
    else:
        say(f"the embedded database in {cluster.home} was not running")
