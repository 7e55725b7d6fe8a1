"""`invites bounces import`: bounce reports that arrived later by mail."""

from __future__ import annotations

from pathlib import Path

import click

from beta_invites_cli import bounces as reading
from beta_invites_cli.cli.common import App, pass_app, report_lines, say


@click.group(epilog="Example: invites bounces import ~/Maildir/.Bounces")
def bounces() -> None:
    """Bounce reports (delivery status notifications) that arrived after sending."""


@bounces.command("import", epilog="Example: invites bounces import bounces.mbox reports/*.eml")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@pass_app
def import_reports(app: App, paths: tuple[Path, ...]) -> None:
    """Record hard bounces and spam complaints from .eml files, mboxes or Maildirs."""
    with app.database.connect(autocommit=True) as conn:
        summary = reading.import_reports(conn, paths)
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
