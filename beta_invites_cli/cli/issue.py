"""`generate`: invite codes for a list of people, without emailing them."""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

import click
import psycopg

from beta_invites_cli import intake, issuing
from beta_invites_cli.cli import stdout
from beta_invites_cli.cli.common import (
    App,
    Problems,
    check_user,
    fail,
    pass_app,
    report_lines,
    say,
)
from beta_invites_cli.cli.options import (
    UuidType,
    format_option,
    issue_options,
    output_option,
)
from beta_invites_cli.cli.render import Column, OutputFile, format_for, render
from beta_invites_cli.template import check_signup_url

Connection = psycopg.Connection[Any]

INVITE_COLUMNS = [
    Column("email", "Email"),
    Column("code", "Code"),
    Column("cohort", "Cohort", drop=2),
    Column("expires_at", "Expires", drop=1),
    Column("link", "Link", drop=3),
]
TABLE_LIMIT = 1000  # beyond this, a summary instead of a table


def prepare(
    app: App,
    cohort: str,
    recipient_files: tuple[BinaryIO, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    skip_invalid: bool,
    outcome: str = "nothing was issued (--skip-invalid issues the rest)",
) -> intake.IssueRequest:
    """The domain checks the request; this adds the flags to what it says (`outcome`: what an
    invalid row means for the command)."""
    if sent_by is None and app.settings.get("INVITES_SENT_BY"):
        try:
            sent_by = UuidType().convert(app.settings.get("INVITES_SENT_BY"), None, None)
        except click.BadParameter as exc:
            raise Problems([f"INVITES_SENT_BY: {exc.message}"]) from None
    if sent_by is not None:
        app.database.actor = str(sent_by)  # the history names the operator
    sources = [
        ("-" if getattr(f, "name", "-") in ("-", "<stdin>") else str(f.name), f)
        for f in recipient_files
    ]
    try:
        return intake.prepare(
            cohort,
            sources,
            [("--email", email) for email in emails],
            expires_in=expires_in,
            sent_by=sent_by,
            skip_invalid=skip_invalid,
        )
    except intake.InvalidRecipients as exc:
        raise Problems(
            [
                *exc.problems,
                *more_lines(exc.count - len(exc.problems), "invalid address(es)"),
                f"{exc.count} invalid address(es): {outcome}",
            ]
        ) from None


def more_lines(count: int, kind: str) -> list[str]:
    return [f"... and {count:,} more {kind}"] if count > 0 else []


def issued_but(issued: issuing.Issued, cohort: str) -> tuple[str, str]:
    """What to say when the new codes cannot be printed: they exist, and how to list them."""
    lister = f"invites list --cohort {cohort} --format csv"
    return f"{issued.created} invite(s) were issued", f": `{lister}` lists them"


def report_issue(request: intake.IssueRequest, issued: issuing.Issued) -> None:
    report_lines("duplicate:", issued.duplicates, issued.duplicate_count)
    report_lines("invalid:", request.problems, request.invalid)
    report_lines(
        "skipped:", [f"{email}: {why}" for email, why in issued.skipped], issued.skipped_count
    )
    say(
        f"created {issued.created}, skipped {issued.skipped_count}, "
        f"invalid {request.invalid}, duplicates {issued.duplicate_count}"
    )


@click.command(
    epilog="Example: invites generate --cohort press-pitchfork --recipients press.csv --output codes.csv"
)
@issue_options
@click.option(
    "--mark-sent",
    is_flag=True,
    help="Record the invites as delivered now (you send the codes yourself).",
)
@output_option(
    "Write the invites to this file (its extension .csv, .json or .jsonl sets the format; "
    "- is stdout)."
)
@format_option(default=None)
@pass_app
def generate(
    app: App,
    cohort: str,
    recipient_files: tuple[BinaryIO, ...],
    emails: tuple[str, ...],
    expires_in: timedelta | None,
    sent_by: UUID | None,
    force: bool,
    skip_invalid: bool,
    include_suppressed: bool,
    over_cap: bool,
    mark_sent: bool,
    output: Path | None,
    fmt: str | None,
) -> None:
    """Create invite codes for a list of people, without emailing them."""
    fmt = format_for(output, fmt)
    signup_url = app.settings.get("INVITES_SIGNUP_URL")
    check_signup_url(signup_url)
    with prepare(
        app, cohort, recipient_files, emails, expires_in, sent_by, skip_invalid
    ) as request:
        if not request.given:
            raise click.UsageError("no recipients: give --recipients FILE or --email ADDRESS")
        # The output file is opened before anything is issued and written before the invites
        # are committed: a path that cannot be written leaves nobody with a code nobody has.
        # Without --output, csv and json are held in an anonymous file until the commit.
        with (
            OutputFile(output) as target,
            tempfile.TemporaryFile() as spool,
            app.database.connect(autocommit=True) as conn,
        ):
            sink = target.binary if target is not None else spool
            written = issuing.Output(fmt, sink, signup_url) if fmt != "table" else None
            check_user(conn, request.sent_by, "--sent-by")
            try:
                with issuing.issue(
                    conn,
                    request,
                    force=force,
                    mark_sent=mark_sent,
                    output=written,
                    include_suppressed=include_suppressed,
                    over_cap=over_cap,
                ) as issued:
                    drawn = fmt == "table" and issued.created <= TABLE_LIMIT
                    shown = list(issued.records(signup_url)) if drawn else []
                    sink.flush()
            except OSError as exc:
                where = output if target is not None else "the output"
                fail(f"{where} could not be written ({exc.strerror}): nothing was issued")
            if target is not None:
                try:
                    target.commit()
                except OSError as exc:
                    done, hint = issued_but(issued, cohort)
                    fail(f"{done}, but {output} could not be written ({exc.strerror}){hint}")
            elif written is not None:
                with stdout.written_after_commit(*issued_but(issued, cohort)):
                    spool.seek(0)
                    sys.stdout.flush()
                    shutil.copyfileobj(spool, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
        if shown:
            with stdout.written_after_commit(*issued_but(issued, cohort)):
                render(shown, INVITE_COLUMNS, fmt, title=f"Invites for {cohort}")
        report_issue(request, issued)
        if target is not None:
            say(f"wrote {issued.created} invite(s) to {output}")
        elif fmt == "table" and issued.created > TABLE_LIMIT:
            say(
                f"{issued.created} invites are too many to draw as a table: add --output "
                f"codes.csv, or run `invites list --cohort {cohort} --format csv`"
            )
