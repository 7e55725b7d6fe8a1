"""`invites bounces import`: bounce reports by mail and provider events, after sending."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from beta_invites_cli import bounces as reading
from beta_invites_cli.bounces.webhooks import FORMATS
from beta_invites_cli.cli.common import App, Problems, pass_app, report_lines, say
from beta_invites_cli.cli.deliver import refusal_policy
from beta_invites_cli.delivery.recording import DEFAULT_MAX_SENDER_REFUSALS


@click.group(epilog="Example: invites bounces import ~/Maildir/.Bounces")
def bounces() -> None:
    """Bounce reports and provider events (SES, SendGrid, Postmark, Mailgun, Resend)."""


@bounces.command(
    "import",
    epilog="Examples: invites bounces import bounces.mbox reports/*.eml\n\n"
    "invites bounces import --format ses notifications.jsonl\n\n"
    "webhook-receiver | invites bounces import -",
)
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, allow_dash=True, path_type=Path),
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mail", *FORMATS]),
    help="What the files hold (default: recognised: JSON is a provider's events, else mail).",
)
@pass_app
def import_reports(app: App, paths: tuple[Path, ...], fmt: str | None) -> None:
    """Record bounces and spam complaints from mail reports (.eml files, mboxes, Maildirs) and
    from providers' webhook events (JSON documents, arrays, JSON lines; `-` reads stdin)."""
    policy = refusal_policy(app, DEFAULT_MAX_SENDER_REFUSALS)
    with app.database.connect(autocommit=True) as conn:
        summary = reading.import_reports(
            conn, paths, fmt=fmt, policy=policy, stdin=sys.stdin.buffer
        )
    report_lines("unmatched:", summary.unmatched)
    report_lines("soft:", summary.soft)
    report_lines("sender refused:", summary.sender)
    report_lines("not a bounce:", summary.not_bounces)
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.kinds.items()))
    say(
        f"read {summary.reports} report(s): matched {summary.matched} "
        f"{'[' + kinds + '] ' if kinds else ''}"
        f"({summary.recorded} new), complaints {summary.complaints}, "
        f"unmatched {len(summary.unmatched)}, soft {len(summary.soft)}, "
        f"not a bounce {len(summary.not_bounces)}; {summary.suppressed} address(es) newly suppressed"
    )
    if summary.malformed:
        raise Problems([*summary.malformed, "the rest was imported"])
