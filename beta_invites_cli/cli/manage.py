"""Commands that change invites after issuing: `redeem`, `revoke`, `extend`, `expire`."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from uuid import UUID

import click

from beta_invites_cli import host, lifecycle, waitlist
from beta_invites_cli.cli import stdout
from beta_invites_cli.cli.common import App, Problems, check_user, fail, pass_app, say
from beta_invites_cli.cli.options import DurationType, UuidType, format_option
from beta_invites_cli.cli.render import Column, plain, render, status_style
from beta_invites_cli.database import act
from beta_invites_cli.delivery import outbox
from beta_invites_cli.errors import ValidationFailed
from beta_invites_cli.exits import ExitCode
from beta_invites_cli.sweep import sweep

REDEEM_KEYS = ["code", "status", "cohort", "used_at", "expires_at"]
CHANGE_COLUMNS = [
    Column("code", "Code"),
    Column("cohort", "Cohort", drop=1),
    Column("status", "Status", style=status_style),
    Column("expires_at", "Expires"),
]


@click.command(epilog="Example: invites redeem abcd-efgh-jkmn-pqrs --user-id 9b2f7c1e-...")
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
    with app.database.connect() as conn:
        if user_id is not None:
            check_user(conn, user_id, "--user-id")
        act(conn)  # the history names the operator, not the host
        outcome = host.try_redeem(conn, code, user_id=user_id)
    done = f"{outcome.code} was redeemed" if outcome.error is None else "nothing was redeemed"
    with stdout.written_after_commit(done):
        if fmt == "json":
            click.echo(json.dumps({key: plain(getattr(outcome, key)) for key in REDEEM_KEYS}))
        elif outcome.error is None:
            click.echo(f"redeemed {outcome.code} (cohort {outcome.cohort})")
    if outcome.error is not None:
        if fmt == "json":
            sys.exit(ExitCode.ERROR)
        fail(str(outcome.error))


@click.command(
    epilog="Example: invites revoke --cohort 'press-*' --reason 'embargo moved' --dry-run"
)
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
    if bool(codes) == bool(cohort_pattern):
        raise click.UsageError("give invite codes or --cohort, not both and not neither")
    if dry_run and cohort_pattern is None:
        raise click.UsageError("--dry-run goes with --cohort")
    with app.database.connect(autocommit=True) as conn:
        if cohort_pattern is None:
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
    with stdout.written_after_commit(f"{len(changes)} invite(s) were revoked"):
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


@click.command(epilog="Example: invites extend --cohort press-pitchfork --by 14d")
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
    if bool(codes) == bool(cohort):
        raise click.UsageError("give invite codes or --cohort, not both and not neither")
    with app.database.connect(autocommit=True) as conn:
        try:
            changes = lifecycle.extend(
                conn, by=by, codes=codes, cohort=cohort, include_expired=include_expired
            )
        except ValidationFailed as exc:
            problems = exc.problems
            if not include_expired and any(" already expired at " in p for p in problems):
                hint = "(--include-expired extends expired, never-redeemed invites too)"
                problems = [*problems[:-1], hint, problems[-1]]
            raise Problems(problems) from None
    with stdout.written_after_commit(f"{len(changes)} invite(s) were extended"):
        render([vars(c) for c in changes], CHANGE_COLUMNS, fmt, title="Extended")
    say(f"extended {len(changes)}")


@click.command(
    epilog="Example (crontab): * * * * * cd /srv/beta && /srv/beta/.venv/bin/invites expire --grace 7d"
)
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
@click.option(
    "--waitlist-ttl",
    type=DurationType(),
    help="Also remove (delete the address of) people waiting longer than this (default: never).",
)
@click.option("--verbose", "-v", is_flag=True, help="Report even when there was nothing to do.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@pass_app
def expire(
    app: App,
    grace: timedelta,
    batch_size: int,
    dry_run: bool,
    waitlist_ttl: timedelta | None,
    verbose: bool,
    fmt: str,
) -> None:
    """Anonymise the email of invites that expired or were revoked (run it from cron).

    Also deletes their messages from the outboxes `send` wrote on this machine."""
    app.database.actor = "cron"  # as the history names the sweep
    app.database.may_create = False
    with app.database.connect(autocommit=True) as conn:
        result = sweep(conn, grace=grace, batch_size=batch_size, dry_run=dry_run)
        cleanup = (
            outbox.Cleanup() if dry_run else outbox.remove_anonymised(conn, app.settings.values)
        )
        waited = 0
        if waitlist_ttl is not None:
            with conn.transaction(force_rollback=dry_run):
                waited = waitlist.expire_waiting(conn, waitlist_ttl)
    removed = cleanup.removed
    if not result.ran:
        say("another sweep is running; nothing to do")
        return
    if fmt == "json":
        counts = {
            "anonymized": result.anonymized,
            "awaiting_grace": result.awaiting_grace,
            "outbox_messages_removed": removed,
            "waitlist_removed": waited,
        }
        click.echo(json.dumps(counts))
    elif result.anonymized or removed or verbose or dry_run:
        verb = "would anonymise" if dry_run else "anonymised"
        click.echo(
            f"{verb} {result.anonymized} expired invite(s); "
            f"{result.awaiting_grace} within the grace period"
            + (f"; removed {removed} outbox message(s)" if removed else "")
            + (
                f"; {'would remove' if dry_run else 'removed'} {waited} waiting too long"
                if waited
                else ""
            )
        )
    if cleanup.left:
        raise Problems(cleanup.problems())
