"""The `invites` command line: the table of contents, and the boundary where errors become lines.

Every command lives in the module of its family (as in click's "complex" example and pip's
`commands/`), loaded only when it runs:

  schema   migrate, db            the database and its migrations
  issue    generate               codes for a list of people
  deliver  send, resend           codes by email
  remind   remind                 reminders before invites expire
  manage   redeem, revoke, extend, expire
  report   report                 (--funnel, --retention, --activity)
  read     list, show
  history  history
  suppress suppress add|remove|list|check
  bounces  bounces import
  doctor   doctor                 is the sending domain fit to send?
  waitlist waitlist add|list|remove|position, cohort set|list
  fill     fill, reclaim          seats filled from the waitlist, and given back

Command modules only parse options and render results; the work is done by the modules above
this package, which know nothing of click. Their errors (InvitesError, and psycopg's) become one
`Error: ...` line and exit status 1 here; INVITES_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from beta_invites_cli import __version__
from beta_invites_cli.exits import ExitCode

COMMANDS = {
    "migrate": "schema:migrate",
    "db": "schema:db",
    "generate": "issue:generate",
    "send": "deliver:send",
    "resend": "deliver:resend",
    "remind": "remind:remind",
    "redeem": "manage:redeem",
    "revoke": "manage:revoke",
    "extend": "manage:extend",
    "expire": "manage:expire",
    "report": "report:report",
    "list": "read:list_invites",
    "show": "read:show",
    "history": "history:history_command",
    "suppress": "suppress:suppress",
    "bounces": "bounces:bounces",
    "doctor": "doctor:doctor",
    "waitlist": "waitlist:waitlist",
    "cohort": "waitlist:cohort",
    "fill": "fill:fill",
    "reclaim": "fill:reclaim",
}


class InvitesGroup(click.Group):
    """The command map (loaded lazily) and the error boundary."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from beta_invites_cli.errors import InvitesError, ValidationFailed

        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            if debugging():
                raise
            from beta_invites_cli.cli.common import Problems

            raise Problems(exc.problems) from None
        except InvitesError as exc:
            if debugging():
                raise
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            from beta_invites_cli.cli.common import App

            app = ctx.find_object(App)
            translated = database_error(exc, app.database.described() if app else None)
            if translated is None or debugging():
                raise
            raise click.ClickException(translated) from None


def debugging() -> bool:
    """INVITES_DEBUG=1: let a developer see the traceback the boundary would hide."""
    return os.environ.get("INVITES_DEBUG", "") not in ("", "0")


def database_error(exc: Exception, where: str | None = None) -> str | None:
    """One line for a database failure in the middle of a command, or None if it is not one."""
    if "psycopg" not in sys.modules:
        return None
    import psycopg
    from psycopg import errors

    from beta_invites_cli.database import first_line

    if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn | errors.UndefinedFunction):
        reason = exc.diag.message_primary or str(exc)
        which = f" of {where}" if where else ""
        return f"the database schema{which} is not up to date ({reason}): run `invites migrate`"
    if isinstance(exc, psycopg.OperationalError):
        return f"lost the database connection: {first_line(str(exc))}"
    if isinstance(exc, psycopg.Error):
        return f"database error: {exc.diag.message_primary or str(exc).strip()}"
    return None


@click.group(
    cls=InvitesGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Example: invites send --cohort press-pitchfork --recipients press.csv",
)
@click.version_option(__version__, prog_name="invites")
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL (default: DATABASE_URL, then PG* variables, then the embedded "
    "database). Visible to other users in `ps`: prefer --database-url-file or DATABASE_URL.",
)
@click.option(
    "--database-url-file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    metavar="FILE",
    help="Read the PostgreSQL URL from the first line of FILE (- reads stdin).",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read settings from this file instead of ./.env (real environment variables win).",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="Print no messages, only data, warnings and errors."
)
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    database_url_file: Path | None,
    env_file: Path | None,
    quiet: bool,
) -> None:
    """Issue, email, redeem, expire and report single-use beta invite codes."""
    from beta_invites_cli.cli.common import App, set_quiet
    from beta_invites_cli.errors import InvitesError
    from beta_invites_cli.settings import load_settings, read_secret_file

    set_quiet(quiet)
    try:
        if database_url_file is not None:
            database_url = read_secret_file(database_url_file, "--database-url-file")
        settings = load_settings(env_file, database_url=database_url)
    except InvitesError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.obj = App(settings)


def main() -> None:
    bad = undecodable_argument(sys.argv[1:])
    if bad is not None:
        click.echo(f"Error: {bad}", err=True)
        sys.exit(ExitCode.USAGE)
    # Not click's standalone mode: it turns Ctrl-C into "Aborted!" and exit 1; ours is 130.
    try:
        status = cli.main(prog_name="invites", standalone_mode=False)
        sys.stdout.flush()
    except OSError as exc:
        from beta_invites_cli.cli import stdout

        if not stdout.unwritable(exc) or debugging():
            raise
        stdout.discard()
        click.echo(f"Error: could not write the output ({exc.strerror})", err=True)
        sys.exit(ExitCode.ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        click.echo("Aborted!", err=True)
        sys.exit(ExitCode.ERROR)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(status if isinstance(status, int) else ExitCode.OK)


def undecodable_argument(arguments: list[str]) -> str | None:
    """Bytes that are not UTF-8 reach Python as lone surrogates; say so instead of crashing
    on them later. Settings in the environment are checked the same way."""
    for index, argument in enumerate(arguments, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            shown = argument.encode("utf-8", "surrogateescape")[:40]
            return f"argument {index} is not valid UTF-8: {shown!r}"
    for name, value in os.environ.items():
        if name.startswith(("INVITES_", "SMTP_", "DATABASE_URL")):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"the environment variable {name} is not valid UTF-8"
    return None
