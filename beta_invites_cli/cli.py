"""The `invites` command line: parses options, calls the library, renders the result.

Library errors become one `Error: ...` line each and exit status 1; nothing here does the work.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn
from uuid import UUID

import click

from beta_invites_cli import __version__
from beta_invites_cli.app import App, say, set_quiet, warn
from beta_invites_cli.errors import InvitesError, ValidationFailed
from beta_invites_cli.exits import ExitCode
from beta_invites_cli.output import Column, console, format_option, render
from beta_invites_cli.status import STATUSES

CONTEXT = {"help_option_names": ["-h", "--help"]}


class DurationType(click.ParamType[timedelta]):
    """`14d`, `36h`: a bad value is a usage error (exit 2) naming the option."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from beta_invites_cli.durations import parse_duration

        if isinstance(value, timedelta):
            return value
        try:
            duration = parse_duration(value, option="value")
        except InvitesError as exc:
            self.fail(str(exc).removeprefix("value: "), param, ctx)
        if not self.allow_zero and duration.total_seconds() <= 0:
            self.fail("must be longer than zero", param, ctx)
        return duration


class DateType(click.ParamType[date]):
    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from beta_invites_cli.errors import excerpt

        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{excerpt(value, 30)} is not a date like 2026-11-26", param, ctx)


class UuidType(click.ParamType[UUID]):
    name = "uuid"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from beta_invites_cli.errors import excerpt

        if isinstance(value, UUID):
            return value
        try:
            return UUID(value.strip())
        except ValueError:
            self.fail(f"{excerpt(value, 40)} is not a UUID", param, ctx)


def check_cohort_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from beta_invites_cli.recipients import check_cohort

    if value is None:
        return value
    try:
        return check_cohort(value)
    except InvitesError as exc:
        raise click.BadParameter(str(exc).removeprefix("--cohort "), ctx, param) from None


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
    context_settings=CONTEXT,
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
    from beta_invites_cli.settings import load_settings, read_secret_file

    set_quiet(quiet)
    try:
        if database_url_file is not None:
            database_url = read_secret_file(database_url_file, "--database-url-file")
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
    from beta_invites_cli import migrations

    if exit_code and not show_status:
        raise click.UsageError("--exit-code goes with --status")
    with app.connect(autocommit=True) as conn:
        if show_status:
            states = migrations.states(conn)
            render(
                ({**vars(s), "checksum": s.checksum[:12]} for s in states),
                MIGRATION_COLUMNS,
                fmt,
                title=f"Migrations on {app.target().describe()}",
            )
            if exit_code:
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


# -- issuing and sending --------------------------------------------------------------------------

INVITE_COLUMNS = [
    Column("email", "Email"),
    Column("code", "Code"),
    Column("cohort", "Cohort"),
    Column("expires_at", "Expires"),
    Column("link", "Link"),
]
TABLE_LIMIT = 1000  # beyond this, a terminal gets a summary instead of a table
SHOWN_LINES = 20  # skipped/duplicate/failed lines shown before "... and N more"


def issue_options(function: Any) -> Any:
    """Options shared by `generate` and `send`: who to invite and how."""
    options = [
        click.option(
            "--cohort",
            required=True,
            callback=check_cohort_option,
            help="Cohort label, e.g. press-pitchfork (1-64 characters).",
        ),
        click.option(
            "--recipients",
            "recipient_files",
            type=click.File("rb"),
            multiple=True,
            help="CSV with an email column, or one address per line; - reads stdin.",
        ),
        click.option(
            "--email",
            "emails",
            multiple=True,
            metavar="ADDRESS",
            help="An address to invite (repeatable).",
        ),
        click.option(
            "--expires-in",
            type=DurationType(),
            metavar="DURATION",
            help="Validity, like 14d or 36h, at most 3650d (default: 30 days).",
        ),
        click.option(
            "--sent-by",
            type=UuidType(),
            metavar="UUID",
            help="Operator's public.users id (default: INVITES_SENT_BY).",
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Issue even to people who already hold a live or redeemed invite.",
        ),
        click.option(
            "--skip-invalid",
            is_flag=True,
            help="Issue the valid addresses and report the invalid ones.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def prepare_issue(
    app: App,
    cohort: str,
    recipient_files: tuple[Any, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    skip_invalid: bool,
) -> Any:
    """Check every input before anything is written: one line per problem."""
    from beta_invites_cli.issuing import IssueRequest
    from beta_invites_cli.recipients import collect

    problems: list[str] = []
    if sent_by is None and app.settings.get("INVITES_SENT_BY"):
        try:
            sent_by = UuidType().convert(app.settings.get("INVITES_SENT_BY"), None, None)
        except click.BadParameter as exc:
            problems.append(f"INVITES_SENT_BY: {exc.message}")
    sources = [
        (getattr(f, "name", "-") if getattr(f, "name", "-") != "<stdin>" else "-", f)
        for f in recipient_files
    ]
    try:
        found = collect(sources, emails)
    except InvitesError as exc:
        raise ValidationFailed([*problems, str(exc)]) from None
    if found.problems and not skip_invalid:
        problems += found.problems
        problems.append(
            f"{len(found.problems)} invalid address(es): nothing was issued (--skip-invalid issues the rest)"
        )
    if problems:
        raise ValidationFailed(problems)
    return IssueRequest(found, cohort, expires_in, sent_by)


def report_lines(kind: str, lines: list[str]) -> None:
    for line in lines[:SHOWN_LINES]:
        say(f"{kind} {line}")
    if len(lines) > SHOWN_LINES:
        say(f"... and {len(lines) - SHOWN_LINES} more {kind}")


def report_issue(request: Any, result: Any) -> None:
    report_lines("duplicate:", request.found.duplicates)
    report_lines("invalid:", request.found.problems)
    report_lines("skipped:", [f"{email}: {why}" for email, why in result.skipped])
    say(
        f"created {len(result.created)}, skipped {len(result.skipped)}, "
        f"invalid {len(request.found.problems)}, duplicates {len(request.found.duplicates)}"
    )


@cli.command(
    epilog="Example: invites generate --cohort press-pitchfork --recipients press.csv --format csv"
)
@issue_options
@click.option(
    "--mark-sent",
    is_flag=True,
    help="Record the invites as delivered now (you send the codes yourself).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the invites to this file (its extension .csv, .json or .jsonl sets the format).",
)
@format_option(default=None)
@pass_app
def generate(
    app: App,
    cohort: str,
    recipient_files: tuple[Any, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    force: bool,
    skip_invalid: bool,
    mark_sent: bool,
    output: Path | None,
    fmt: str | None,
) -> None:
    """Create invite codes for a list of people, without emailing them."""
    from beta_invites_cli.issuing import check_sender, issue
    from beta_invites_cli.output import OutputFile, format_for
    from beta_invites_cli.template import check_signup_url, signup_link

    fmt = format_for(output, fmt)
    request = prepare_issue(app, cohort, recipient_files, emails, expires_in, sent_by, skip_invalid)
    if not request.found.recipients and not request.found.problems:
        raise click.UsageError("no recipients: give --recipients FILE or --email ADDRESS")
    signup_url = app.settings.get("INVITES_SIGNUP_URL")
    check_signup_url(signup_url)
    # The output file is opened before anything is issued: a path that cannot be written must
    # not leave people with codes nobody has (a re-run would skip them).
    with OutputFile(output) as target, app.connect(autocommit=True) as conn:
        check_sender(conn, request.sent_by)
        result = issue(
            conn,
            request.found.recipients,
            cohort=cohort,
            expires_in=request.expires_in,
            sent_by=request.sent_by,
            force=force,
            mark_sent=mark_sent,
        )
        report_issue(request, result)
        records = [
            {**vars(invite), "link": signup_link(signup_url, invite.code)}
            for invite in result.created
        ]
        if target is not None:
            try:
                render(records, INVITE_COLUMNS, fmt, target.handle, title=f"Invites for {cohort}")
                target.commit()
            except OSError as exc:
                fail(
                    f"the {len(records)} invite(s) were issued, but {output} could not be written "
                    f"({exc.strerror}): `invites list --cohort {cohort} --format csv` lists them"
                )
            say(f"wrote {len(records)} invite(s) to {output}")
        elif fmt == "table" and len(records) > TABLE_LIMIT:
            say(
                f"{len(records)} invites are too many to draw as a table: add --output codes.csv, "
                f"or run `invites list --cohort {cohort} --format csv`"
            )
        elif records or fmt != "table":
            render(records, INVITE_COLUMNS, fmt, title=f"Invites for {cohort}")


def delivery_options(function: Any) -> Any:
    options = [
        click.option(
            "--template",
            "template_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Invitation template file (see README).",
        ),
        click.option(
            "--outbox",
            type=click.Path(file_okay=False, path_type=Path),
            help="Write .eml files here instead of emailing.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command(epilog="Example: invites send --cohort press-pitchfork --recipients press.csv")
@issue_options
@delivery_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the first message and count what would be sent; change nothing.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many (waves).")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.001, max=100_000),
    metavar="PER_SECOND",
    help="Send at most this many per second (0.001 to 100000).",
)
@click.option(
    "--retry-uncertain",
    is_flag=True,
    help="Also send again the messages whose delivery is uncertain (they may arrive twice).",
)
@pass_app
def send(
    app: App,
    cohort: str,
    recipient_files: tuple[Any, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    force: bool,
    skip_invalid: bool,
    template_path: Path | None,
    outbox: Path | None,
    dry_run: bool,
    limit: int | None,
    rate: float | None,
    retry_uncertain: bool,
) -> None:
    """Issue invites to any new recipients, then email every unsent invite of the cohort."""
    from beta_invites_cli import delivery
    from beta_invites_cli.issuing import check_sender, issue
    from beta_invites_cli.sending import choose_channel, letterhead

    request = prepare_issue(app, cohort, recipient_files, emails, expires_in, sent_by, skip_invalid)
    channel = choose_channel(app.settings, outbox, embedded=app.embedded)
    head = letterhead(app.settings, template_path, channel)
    with app.connect(autocommit=True) as conn, app.connect(autocommit=True) as reader:
        check_sender(conn, request.sent_by)
        if dry_run:
            preview_send(conn, request, head, cohort, force, limit, retry_uncertain)
            return
        transport = channel.open()
        try:
            # The mail server is reached before anything is issued or locked: one that cannot
            # be reached (or never answers) changes nothing.
            transport.connect()
            result = issue(
                conn,
                request.found.recipients,
                cohort=cohort,
                expires_in=request.expires_in,
                sent_by=request.sent_by,
                force=force,
            )
            if request.found.recipients or request.found.problems:
                report_issue(request, result)
            total = delivery.count_unsent(reader, cohort, retry_uncertain=retry_uncertain)
            total = min(total, limit) if limit else total
            with (
                progress_bar(total, f"sending {cohort}") as advance,
                stop_on_interrupt() as stopped,
            ):
                outcome = delivery.deliver_cohort(
                    conn,
                    reader,
                    cohort,
                    head,
                    transport,
                    limit=limit,
                    rate=rate,
                    retry_uncertain=retry_uncertain,
                    on_progress=lambda invite, error: advance(),
                    should_stop=stopped,
                )
            waiting_uncertain = 0 if retry_uncertain else delivery.count_uncertain(reader, cohort)
        finally:
            transport.close()
    earlier = waiting_uncertain - len(outcome.uncertain)
    if earlier > 0:
        warn(
            f"warning: {earlier} invite(s) of {cohort} have an uncertain delivery from an earlier "
            "run and were not sent again: `invites list --status uncertain` shows them, "
            "--retry-uncertain sends them again (they may arrive twice)"
        )
    report_delivery(outcome, len(result.skipped), channel.outbox)
    finish_delivery(outcome)


def finish_delivery(outcome: Any) -> None:
    """Exit 1 when this run failed or left messages uncertain, 130 when interrupted."""
    if outcome.aborted:
        fail(outcome.aborted)
    if outcome.interrupted:
        warn("interrupted: run the same command again to send the rest")
        sys.exit(ExitCode.INTERRUPTED)
    if outcome.failed or outcome.uncertain:
        sys.exit(ExitCode.ERROR)


def preview_send(
    conn: Any,
    request: Any,
    head: Any,
    cohort: str,
    force: bool,
    limit: int | None,
    retry_uncertain: bool,
) -> None:
    from uuid import UUID

    from beta_invites_cli import delivery
    from beta_invites_cli.codes import new_code
    from beta_invites_cli.issuing import issue
    from beta_invites_cli.mail import DeliveryFailed

    would_issue = issue(
        conn,
        request.found.recipients,
        cohort=cohort,
        expires_in=request.expires_in,
        sent_by=request.sent_by,
        force=force,
        dry_run=True,
    )
    waiting = delivery.count_unsent(conn, cohort, retry_uncertain=retry_uncertain)
    count = waiting + len(would_issue.created)
    count = min(count, limit) if limit else count
    first = delivery.first_unsent(conn, cohort, retry_uncertain=retry_uncertain)
    if first is None and would_issue.created:
        invite = would_issue.created[0]
        # Not issued yet (dry run): preview with a code drawn just for the preview.
        first = delivery.Pending(UUID(int=0), new_code(), invite.email, cohort, invite.expires_at)
    if first is not None:
        try:
            letter = delivery.compose(head, first)
            click.echo(letter.data.decode("utf-8", "replace").replace("\r\n", "\n"))
        except DeliveryFailed as exc:
            warn(f"the first message cannot be written: {exc}")
    say(
        f"dry run: would issue {len(would_issue.created)} new invite(s) "
        f"(skip {len(would_issue.skipped)}) and send {count} message(s); nothing was written or sent"
    )


def report_delivery(outcome: Any, skipped: int, outbox: Path | None) -> None:
    report_lines("failed:", [f"{email}: {why}" for email, why in outcome.failed])
    for email, why in outcome.uncertain:
        warn(f"uncertain: {email}: {why}; not sent again (--retry-uncertain decides)")
    uncertain = f", uncertain {len(outcome.uncertain)}" if outcome.uncertain else ""
    say(f"sent {outcome.sent}, failed {len(outcome.failed)}{uncertain}, skipped {skipped}")
    if outbox is not None:
        say(
            f"Nothing was emailed: {outcome.sent} message(s) were written to {outbox}/ as .eml files "
            "(and marked as sent); set SMTP_URL to email invitations."
        )


@cli.command(epilog="Example: invites resend --cohort press-pitchfork")
@click.argument("codes", nargs=-1)
@click.option("--cohort", help="Resend every sent, live invite of this cohort.")
@delivery_options
@pass_app
def resend(
    app: App,
    codes: tuple[str, ...],
    cohort: str | None,
    template_path: Path | None,
    outbox: Path | None,
) -> None:
    """Email sent, still-live invites again, with the same code (reminders, bounces)."""
    from beta_invites_cli import delivery, lifecycle
    from beta_invites_cli.sending import choose_channel, letterhead

    if bool(codes) == bool(cohort):
        raise click.UsageError("give invite codes or --cohort, not both and not neither")
    channel = choose_channel(app.settings, outbox, embedded=app.embedded)
    head = letterhead(app.settings, template_path, channel)
    with app.connect(autocommit=True) as conn:
        invites = lifecycle.resendable(conn, codes=codes, cohort=cohort)
        if not invites:
            say(f"nothing to resend in {cohort}: no sent, live invites")
            return
        transport = channel.open()
        try:
            transport.connect()
            outcome = delivery.resend(conn, invites, head, transport)
        finally:
            transport.close()
    report_delivery(outcome, 0, channel.outbox)
    finish_delivery(outcome)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when it is a terminal; nothing animated in pipes or cron."""
    if not sys.stderr.isatty() or total == 0:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


@contextmanager
def stop_on_interrupt() -> Iterator[Callable[[], bool]]:
    """Ctrl-C asks the loop to stop after the current message instead of killing it mid-way."""
    import signal

    stopped = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stopped
        stopped = True
        say("stopping after the current message (Ctrl-C again to abort now)")
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: stopped
    finally:
        signal.signal(signal.SIGINT, previous)


# -- lifecycle ----------------------------------------------------------------------------------

REDEEM_KEYS = ["code", "status", "cohort", "used_at", "expires_at"]
CHANGE_COLUMNS = [
    Column("code", "Code"),
    Column("cohort", "Cohort"),
    Column("status", "Status"),
    Column("expires_at", "Expires"),
]


@cli.command(epilog="Example: invites redeem abcd-efgh-jkmn-pqrs --user-id 9b2f7c1e-...")
@click.argument("code")
@click.option(
    "--user-id",
    type=UuidType(),
    metavar="UUID",
    help="The account created with the code (public.users id).",
)
@format_option()
@pass_app
def redeem(app: App, code: str, user_id: UUID | None, fmt: str) -> None:
    """Redeem a code for someone (support cases): the same path /auth/register takes."""
    import json

    from beta_invites_cli import lifecycle
    from beta_invites_cli.codes import normalise
    from beta_invites_cli.errors import InvalidCode, InviteError
    from beta_invites_cli.output import plain

    user = user_id
    record: dict[str, Any] = {
        "code": code.strip(),
        "status": "invalid",
        "cohort": None,
        "used_at": None,
        "expires_at": None,
    }
    error: InviteError | None = None
    try:
        record["code"] = normalise(code)
        with app.connect() as conn:
            if user is not None:
                from beta_invites_cli.issuing import check_sender

                try:
                    check_sender(conn, user)
                except InvitesError:
                    fail(f"--user-id {user}: no such user in public.users")
            try:
                invite = lifecycle.redeem(conn, record["code"], user_id=user)
                conn.commit()
                record.update(
                    status="redeemed",
                    cohort=invite.cohort,
                    used_at=invite.used_at,
                    expires_at=invite.expires_at,
                )
            except InviteError as exc:
                error = exc
                if not isinstance(exc, lifecycle.UnknownCode):
                    current = lifecycle.check(conn, record["code"])
                    record.update(
                        cohort=current.cohort,
                        used_at=current.used_at,
                        expires_at=current.expires_at,
                    )
                record["status"] = exc.status
    except InvalidCode as exc:
        error = exc
    if fmt == "json":
        click.echo(json.dumps({k: plain(record[k]) for k in REDEEM_KEYS}))
    elif error is None:
        click.echo(f"redeemed {record['code']} (cohort {record['cohort']})")
    if error is not None:
        if fmt == "json":
            sys.exit(1)
        fail(str(error))


@cli.command(epilog="Example: invites revoke --cohort 'press-*' --reason 'embargo moved' --dry-run")
@click.argument("codes", nargs=-1)
@click.option(
    "--cohort",
    "cohort_pattern",
    metavar="PATTERN",
    help="Revoke every pending invite of the cohorts matching a shell pattern, like press-*.",
)
@click.option("--reason", help="Why (kept with the invite; no personal data).")
@click.option("--dry-run", is_flag=True, help="List what would be revoked; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (--cohort).")
@format_option()
@pass_app
def revoke(
    app: App,
    codes: tuple[str, ...],
    cohort_pattern: str | None,
    reason: str | None,
    dry_run: bool,
    yes: bool,
    fmt: str,
) -> None:
    """End pending invites now, for good: they cannot be redeemed, sent or extended again.

    Named codes are all or nothing. With --cohort, a terminal asks for confirmation first."""
    from beta_invites_cli import lifecycle

    if bool(codes) == bool(cohort_pattern):
        raise click.UsageError("give invite codes or --cohort, not both and not neither")
    with app.connect(autocommit=True) as conn:
        if cohort_pattern is None:
            if dry_run:
                raise click.UsageError("--dry-run goes with --cohort")
            changes = lifecycle.revoke(conn, codes, reason=reason)
        else:
            preview = lifecycle.revoke_cohorts(conn, cohort_pattern, dry_run=True)
            if dry_run or not preview:
                render([vars(c) for c in preview], CHANGE_COLUMNS, fmt, title="Would revoke")
                say(f"would revoke {len(preview)} pending invite(s); nothing was changed")
                return
            confirm_destructive(
                f"Revoke {len(preview)} pending invite(s) of the cohorts matching "
                f"{cohort_pattern!r}? They can never be redeemed again.",
                yes,
            )
            changes = lifecycle.revoke_cohorts(conn, cohort_pattern, reason=reason)
    render([vars(c) for c in changes], CHANGE_COLUMNS, fmt, title="Revoked")
    say(f"revoked {len(changes)}")


def confirm_destructive(question: str, yes: bool) -> None:
    """Ask on a terminal; elsewhere --yes is required (as gh does)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError("--yes is required when not running on a terminal")
    if not click.confirm(question, default=False, err=True):
        fail("nothing was changed")


@cli.command(epilog="Example: invites extend --cohort press-pitchfork --by 14d")
@click.argument("codes", nargs=-1)
@click.option("--cohort", help="Extend every pending invite of this cohort.")
@click.option(
    "--by",
    "by",
    required=True,
    type=DurationType(),
    metavar="DURATION",
    help="How much longer, like 14d or 36h.",
)
@click.option(
    "--include-expired",
    is_flag=True,
    help="Also revive expired, never-redeemed invites (not revoked or anonymised ones).",
)
@format_option()
@pass_app
def extend(
    app: App,
    codes: tuple[str, ...],
    cohort: str | None,
    by: timedelta,
    include_expired: bool,
    fmt: str,
) -> None:
    """Push back the expiry of pending invites."""
    from beta_invites_cli import lifecycle

    if bool(codes) == bool(cohort):
        raise click.UsageError("give invite codes or --cohort, not both and not neither")
    with app.connect(autocommit=True) as conn:
        changes = lifecycle.extend(
            conn, by=by, codes=codes, cohort=cohort, include_expired=include_expired
        )
    render([vars(c) for c in changes], CHANGE_COLUMNS, fmt, title="Extended")
    say(f"extended {len(changes)}")


@cli.command(epilog="Example (crontab): * * * * * invites expire --grace 7d")
@click.option(
    "--grace",
    default="0d",
    show_default=True,
    type=DurationType(allow_zero=True),
    metavar="DURATION",
    help="Anonymise only after expired this long.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=1_000_000),
    default=5000,
    show_default=True,
    help="Rows per transaction.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be anonymised; change nothing.")
@click.option("--verbose", "-v", is_flag=True, help="Report even when there was nothing to do.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@pass_app
def expire(
    app: App, grace: timedelta, batch_size: int, dry_run: bool, verbose: bool, fmt: str
) -> None:
    """Anonymise the email of invites that expired or were revoked (run it from cron).

    Also deletes their messages from the outboxes `send` wrote on this machine."""
    import json

    from beta_invites_cli import outbox
    from beta_invites_cli.sweep import sweep

    with app.connect(autocommit=True) as conn:
        result = sweep(conn, grace=grace, batch_size=batch_size, dry_run=dry_run)
        removed = 0 if dry_run else outbox.remove_anonymised(conn, app.settings.values)
    if not result.ran:
        say("another sweep is running; nothing to do")
        return
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "anonymized": result.anonymized,
                    "awaiting_grace": result.awaiting_grace,
                    "outbox_messages_removed": removed,
                }
            )
        )
    elif result.anonymized or removed or verbose or dry_run:
        verb = "would anonymise" if dry_run else "anonymised"
        click.echo(
            f"{verb} {result.anonymized} expired invite(s); {result.awaiting_grace} within the grace period"
            + (f"; removed {removed} outbox message(s)" if removed else "")
        )


# -- reading ------------------------------------------------------------------------------------


def filter_options(function: Any) -> Any:
    options = [
        click.option(
            "--cohort",
            "cohort_pattern",
            metavar="PATTERN",
            help="Cohorts matching a shell pattern, like press-*.",
        ),
        click.option(
            "--since",
            type=DateType(),
            metavar="DATE",
            help="Issued on or after this date (YYYY-MM-DD).",
        ),
        click.option(
            "--until",
            type=DateType(),
            metavar="DATE",
            help="Issued on or before this date (YYYY-MM-DD).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def make_filters(cohort_pattern: str | None, since: date | None, until: date | None) -> Any:
    from beta_invites_cli.filters import Filters

    return Filters(cohort=cohort_pattern, since=since, until=until)


def rate_bar(rate: Any) -> str:
    if rate is None:
        return ""
    width = 10
    filled = float(rate) * width
    full = int(filled)
    half = "▌" if filled - full >= 0.5 else ""
    return f"{'█' * full}{half}{' ' * (width - full - len(half))} {float(rate) * 100:5.1f}%"


def trend_bar(maximum: int) -> Callable[[Any], str]:
    def draw(value: Any) -> str:
        if not value or not maximum:
            return ""
        return "▇" * max(1, round(int(value) / maximum * 20))

    return draw


@cli.command(epilog="Example: invites report --by segment --since 2026-11-01")
@click.option(
    "--by",
    type=click.Choice(["cohort", "segment", "sender", "day", "week"]),
    default="cohort",
    show_default=True,
)
@filter_options
@format_option()
@pass_app
def report(
    app: App, by: str, cohort_pattern: str | None, since: date | None, until: date | None, fmt: str
) -> None:
    """Post-launch attribution: issued, sent, redeemed, pending, expired and rates per group."""
    from datetime import datetime, timezone

    from beta_invites_cli import report as reports

    filters = make_filters(cohort_pattern, since, until)
    segments = reports.segments_setting(app.settings.get("INVITES_SEGMENTS"))
    with app.connect(autocommit=True) as conn:
        result = reports.build(conn, by=by, filters=filters, segments=segments)
    if not result.rows:
        say("no invites match those filters" if filters.describe() else "no invites yet")
        if fmt != "table":
            render([], [Column(k, k) for k in result.keys], fmt)
        return
    if fmt != "table":
        render(result.rows, [Column(k, k) for k in result.keys], fmt)
        return
    numeric = {
        "issued",
        "sent",
        "redeemed",
        "pending",
        "expired",
        "revoked",
        "median_hours_to_redeem",
        "redemptions",
    }
    columns = [Column(by, by.capitalize())]
    if by in ("day", "week"):
        peak = max(int(r["issued"]) for r in result.rows)
        columns.append(Column("issued_trend", "Issued trend", render=trend_bar(peak)))
        for row in result.rows:
            row["issued_trend"] = row["issued"]
    columns += [
        Column(
            k,
            k.replace("_", " ").capitalize(),
            numeric=k in numeric,
            render=rate_bar if k == "redemption_rate" else None,
        )
        for k in result.keys[1:]
    ]
    columns = [
        c
        if c.key != "median_hours_to_redeem"
        else Column(c.key, "Median h to redeem", numeric=True)
        for c in columns
    ]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scope = filters.describe()
    title = f"Invites by {by}{' (' + scope + ')' if scope else ''}, as of {when}"
    totals = {**(result.totals or {}), by: "Total"}
    render(result.rows, columns, fmt, title=title, footer=totals)


LIST_COLUMNS = [
    Column("code", "Code"),
    Column("email", "Email"),
    Column("cohort", "Cohort"),
    Column("status", "Status"),
    Column("created_at", "Created"),
    Column("sent_at", "Sent"),
    Column("used_at", "Used"),
    Column("expires_at", "Expires"),
]


@cli.command(
    "list",
    epilog="Example: invites list --cohort 'press-*' --status pending --format csv > pending.csv",
)
@filter_options
@click.option("--status", type=click.Choice(STATUSES), help="Only invites in this status.")
@click.option("--email", metavar="ADDRESS", help="Invites of this address (any case).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="At most this many (default: 50 in a table, all for csv/json).",
)
@format_option()
@pass_app
def list_invites(
    app: App,
    cohort_pattern: str | None,
    since: date | None,
    until: date | None,
    status: str | None,
    email: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """List invites, newest first."""
    from beta_invites_cli import listing

    filters = make_filters(cohort_pattern, since, until)
    if status is not None:
        filters.extra.append(listing.status_filter(status))
    if limit is None and fmt == "table":
        limit = 50
    with app.connect() as conn:
        if fmt == "csv":
            sys.stdout.flush()
            count = listing.export_csv(conn, filters, sys.stdout.buffer, email=email, limit=limit)
            sys.stdout.buffer.flush()
        else:
            count = render(
                listing.invites(conn, filters, email=email, limit=limit),
                LIST_COLUMNS,
                fmt,
                title="Invites",
            )
        conn.rollback()
    if count == 0:
        say("no invites match")
    elif fmt == "table" and limit is not None and count == limit:
        say(f"showing the newest {count}; --limit N for more, --format csv for all")


@cli.command(epilog="Example: invites show ABCD-EFGH-JKMN-PQRS")
@click.argument("code")
@format_option()
@pass_app
def show(app: App, code: str, fmt: str) -> None:
    """Everything about one invite, including who sent and who redeemed it."""
    from beta_invites_cli import listing

    with app.connect(autocommit=True) as conn:
        record = listing.show(conn, code)
    if fmt == "table":
        pairs = [{"field": key, "value": record[key]} for key in listing.SHOW_KEYS]
        render(
            pairs,
            [Column("field", "Field"), Column("value", "Value")],
            fmt,
            title=f"Invite {record['code']}",
        )
    else:
        render([record], [Column(k, k) for k in listing.SHOW_KEYS], fmt)


# -- the embedded database ------------------------------------------------------------------------


@cli.group(epilog="Example: invites db status")
def db() -> None:
    """Manage the embedded database (used when no DATABASE_URL is set)."""


@db.command("status", epilog="Example: invites db status")
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


@db.command("stop", epilog="Example: invites db stop")
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
    bad = undecodable_argument(sys.argv[1:])
    if bad is not None:
        click.echo(f"Error: {bad}", err=True)
        sys.exit(ExitCode.USAGE)
    # Not click's standalone mode: it turns Ctrl-C into "Aborted!" and exit 1; ours is 130.
    try:
        status = cli.main(prog_name="invites", standalone_mode=False)
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
