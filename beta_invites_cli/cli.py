"""The `invites` command line: parses options, calls the library, renders the result.

Library errors become one `Error: ...` line each and exit status 1; nothing here does the work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from beta_invites_cli import __version__
from beta_invites_cli.app import App, say
from beta_invites_cli.errors import InvitesError, ValidationFailed
from beta_invites_cli.output import Column, format_option, render

EXIT_PENDING = 3


class Problems(click.ClickException):
    """Several problems, shown one `Error:` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def show(self, file: Any = None) -> None:
        for problem in self.problems:
            click.echo(f"Error: {problem}", err=True)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


class InvitesGroup(click.Group):
    """Turns library and database errors into readable lines at the boundary."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            raise Problems(exc.problems) from None
        except InvitesError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            translated = database_error(exc)
            if translated is None:
                raise
            raise click.ClickException(translated) from None


def database_error(exc: Exception) -> str | None:
    """One line for a database failure in the middle of a command, or None if it is not one."""
    try:
        import psycopg
        from psycopg import errors
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
        reason = exc.diag.message_primary or str(exc)
        return f"the database schema is not up to date ({reason}): run `invites migrate`"
    if isinstance(exc, psycopg.OperationalError):
        from beta_invites_cli.db import first_line

        return f"lost the database connection: {first_line(str(exc))}"
    if isinstance(exc, psycopg.Error):
        return f"database error: {exc.diag.message_primary or str(exc).strip()}"
    return None


pass_app = click.make_pass_decorator(App)


@click.group(
    cls=InvitesGroup,
    epilog="Example: invites send --cohort press-pitchfork --recipients press.csv",
)
@click.version_option(__version__, prog_name="invites")
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL (default: DATABASE_URL, then PG* variables, then the embedded database).",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read settings from this file instead of ./.env (real environment variables win).",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, env_file: Path | None) -> None:
    """Issue, email, redeem, expire and report single-use beta invite codes."""
    from beta_invites_cli.settings import load_settings

    try:
        settings = load_settings(env_file, database_url=database_url)
    except InvitesError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.obj = App(settings)


# -- migrate ----------------------------------------------------------------------------------

MIGRATION_COLUMNS = [
    Column("name", "File"),
    Column("status", "Status"),
    Column("checksum", "SHA-256"),
    Column("applied_at", "Applied at"),
    Column("duration_ms", "ms", numeric=True),
]


@cli.command(epilog="Example: invites migrate --status --exit-code")
@click.option("--status", "show_status", is_flag=True, help="Show applied and pending files.")
@click.option("--exit-code", is_flag=True, help="With --status: exit 3 when anything is pending.")
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
    from beta_invites_cli import migrations

    if exit_code and not show_status:
        fail("--exit-code goes with --status")
    with app.connect(autocommit=True) as conn:
        if show_status:
            states = migrations.states(conn)
            render(
                ({**vars(s), "checksum": s.checksum[:12]} for s in states),
                MIGRATION_COLUMNS,
                fmt,
                title=f"Migrations on {app.target().describe()}",
            )
            if exit_code and any(s.status != "applied" for s in states):
                sys.exit(EXIT_PENDING)
            return
        if dry_run:
            todo = migrations.pending(conn)
            for migration in todo:
                click.echo(f"would apply {migration.name}")
            say("Up to date: nothing to apply." if not todo else f"{len(todo)} to apply (dry run).")
            return
        result = migrations.migrate(
            conn,
            create_users_table=create_users_table or app.embedded,
            on_applied=lambda name, ms: say(f"applied {name} ({ms} ms)"),
        )
    if result.created_users_table:
        say("created a minimal public.users table")
    if not result.applied:
        say("Up to date: nothing to apply.")
    else:
        say(f"Applied {len(result.applied)} migration(s).")


# -- the embedded database ------------------------------------------------------------------------


@cli.group(epilog="Example: invites db status")
def db() -> None:
    """Manage the embedded database (used when no DATABASE_URL is set)."""


@db.command("status")
@pass_app
def db_status(app: App) -> None:
    """Say where the embedded database lives and whether it is running."""
    from beta_invites_cli.embedded import EmbeddedCluster, default_home

    cluster = EmbeddedCluster(default_home(app.settings.values))
    status = cluster.status()
    if not app.embedded:
        say(f"Note: commands use {app.target().describe()}, not the embedded database.")
    click.echo(f"location: {status.home}")
    if not status.initialised:
        click.echo("state: not created yet (the first command that needs it creates it)")
        return
    click.echo(f"state: {f'running (pid {status.pid})' if status.running else 'stopped'}")
    click.echo(f"postgresql: {status.version} ({status.binaries})")
    click.echo(f"socket: {cluster.socket_dir}")


@db.command("stop")
@pass_app
def db_stop(app: App) -> None:
    """Stop the embedded database server (the next command starts it again)."""
    from beta_invites_cli.embedded import EmbeddedCluster, default_home

    cluster = EmbeddedCluster(default_home(app.settings.values))
    if cluster.stop():
        say(f"stopped the embedded database in {cluster.home}")
    else:
        say(f"the embedded database in {cluster.home} was not running")


def main() -> None:
    cli(prog_name="invites")
