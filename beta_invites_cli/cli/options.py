"""Options several commands share, and the types that turn a bad value into a usage error
(exit 2) naming the option."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import click

from beta_invites_cli.cli.render import FORMATS
from beta_invites_cli.delivery.recording import DEFAULT_MAX_SENDER_REFUSALS
from beta_invites_cli.errors import InvitesError, excerpt

F = TypeVar("F", bound=Callable[..., Any])


class DurationType(click.ParamType[timedelta]):
    """`14d`, `36h`, at most ten years."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from beta_invites_cli.durations import parse_duration

        if isinstance(value, timedelta):
            return value
        try:
            duration = parse_duration(value)
        except InvitesError as exc:
            self.fail(str(exc), param, ctx)
        if not self.allow_zero and duration.total_seconds() <= 0:
            self.fail("must be longer than zero", param, ctx)
        return duration


class DateType(click.ParamType[date]):
    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{excerpt(value, 30)} is not a date like 2026-11-26", param, ctx)


class UuidType(click.ParamType[UUID]):
    name = "uuid"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
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
        raise click.BadParameter(str(exc), ctx, param) from None


def stack(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Several options as one decorator, in the order they are listed."""

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def format_option(default: str | None = "table", extra: tuple[str, ...] = ()) -> Callable[[F], F]:
    """The shared `--format table|csv|json|jsonl` option (None: decided by the command), with
    a command's `extra` formats."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice((*FORMATS, *extra)),
        default=default,
        show_default=default is not None,
        help="Output format: a table for people; CSV, JSON or JSON lines for programs"
        + ("" if default else " (default: from --output's extension, else table)")
        + ".",
    )


issue_options = stack(
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
    click.option(
        "--include-suppressed",
        is_flag=True,
        help="Issue codes to suppressed addresses too (they are still never emailed).",
    ),
    click.option(
        "--over-cap",
        is_flag=True,
        help="Issue even when the cohort's seats are all taken (invites cohort set --seats).",
    ),
)

delivery_options = stack(
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
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1, max=3600),
        metavar="SECONDS",
        help="Longest wait for each SMTP step (default: INVITES_SMTP_TIMEOUT, else 60).",
    ),
    click.option(
        "--max-errors",
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        help="Stop after this many failed deliveries in a row (protects the sender's reputation).",
    ),
    click.option(
        "--max-sender-refusals",
        type=click.IntRange(min=1),
        default=DEFAULT_MAX_SENDER_REFUSALS,
        show_default=True,
        help="Pause a receiving domain for the rest of the run after this many refusals that are "
        "the sender's fault (5.7.x: unauthenticated, blocked, relay denied).",
    ),
)

filter_options = stack(
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
)


def _dash_is_stdout(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return None if value is not None and str(value) == "-" else value


def output_option(help: str) -> Callable[[F], F]:
    """`--output FILE`, where `-` means standard output, as everywhere else (not a file
    named "-")."""
    return click.option(
        "--output",
        type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
        callback=_dash_is_stdout,
        metavar="FILE",
        help=help,
    )


def check_dates(since: date | None, until: date | None) -> None:
    """A range that ends before it starts matches nothing: a mistake, said as one."""
    if since is not None and until is not None and until < since:
        raise click.UsageError(f"--until {until} is before --since {since}: nothing can match")


# How much and how fast send and remind deliver.
pace_options = stack(
    click.option("--limit", type=click.IntRange(min=1), help="Send at most this many (waves)."),
    click.option(
        "--rate",
        type=click.FloatRange(min=0.001, max=100_000),
        metavar="PER_SECOND",
        help="Send at most this many per second (0.001 to 100000).",
    ),
)
