"""`invites suppress add|remove|list|check`: addresses never to email again."""

from __future__ import annotations

from datetime import date

import click

from beta_invites_cli import suppression
from beta_invites_cli.cli.common import App, pass_app, say
from beta_invites_cli.cli.options import DateType, format_option
from beta_invites_cli.cli.render import Column, render
from beta_invites_cli.database import act

ENTRY_COLUMNS = [
    Column("digest", "SHA-256"),
    Column("reason", "Reason"),
    Column("source", "Source"),
    Column("detail", "Detail"),
    Column("created_at", "Since"),
]
CHECK_COLUMNS = [
    Column("email", "Email"),
    Column("suppressed", "Suppressed"),
    Column("reason", "Reason"),
    Column("source", "Source"),
    Column("created_at", "Since"),
]


@click.group(epilog="Example: invites suppress add ada@example.com --reason unsubscribed")
def suppress() -> None:
    """The suppression list: addresses that are never emailed, whatever their cohort."""


@suppress.command("add", epilog="Example: invites suppress add ada@example.com --reason manual")
@click.argument("addresses", nargs=-1, required=True)
@click.option(
    "--reason",
    type=click.Choice(suppression.REASONS),
    default="manual",
    show_default=True,
    help="Why the address must not be emailed.",
)
@click.option("--note", help="A note kept with the entry (never put the address in it).")
@pass_app
def add(app: App, addresses: tuple[str, ...], reason: str, note: str | None) -> None:
    """Never email these addresses again."""
    found = suppression.checked_addresses(addresses)
    with app.database.connect(autocommit=True) as conn, conn.transaction():
        added = suppression.add(conn, found, reason=reason, source="suppress-add", detail=note)
    say(f"suppressed {added}, already suppressed {len(set(found)) - added}")


@suppress.command(
    "remove",
    epilog="Examples: invites suppress remove ada@example.com\n\n"
    "invites suppress remove --reason bounced --since 2026-11-30 --dry-run",
)
@click.argument("addresses", nargs=-1)
@click.option(
    "--reason",
    type=click.Choice(suppression.REASONS),
    help="Remove every entry of this reason (with --since; instead of addresses).",
)
@click.option("--since", type=DateType(), help="With --reason: entries made on or after this day.")
@click.option("--dry-run", is_flag=True, help="With --reason: count, change nothing.")
@click.option("--yes", is_flag=True, help="With --reason: remove without asking.")
@pass_app
def remove(
    app: App,
    addresses: tuple[str, ...],
    reason: str | None,
    since: date | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Take addresses off the list (they may be emailed again), or every entry of a reason
    made since a day: a wave of bounces that was the sender's fault."""
    if addresses and (reason or since):
        raise click.UsageError("give addresses, or --reason and --since, not both")
    if not addresses:
        if reason is None or since is None:
            raise click.UsageError("give addresses, or --reason REASON --since DATE")
        if dry_run == yes:
            raise click.UsageError("a bulk removal needs --dry-run (count) or --yes (remove)")
        with (
            app.database.connect(autocommit=True) as conn,
            conn.transaction(force_rollback=dry_run),
        ):
            act(conn)
            removed = suppression.remove_since(conn, reason, since)
        if dry_run:
            say(
                f"dry run: would remove {removed.entries} {reason} entries made since {since}"
                f" and send {removed.invites} bounced invite(s) again; nothing was changed"
            )
        else:
            say(
                f"removed {removed.entries} {reason} entries made since {since};"
                f" {removed.invites} bounced invite(s) of those addresses will be sent again"
            )
        return
    found = suppression.checked_addresses(addresses)
    with app.database.connect(autocommit=True) as conn, conn.transaction():
        removed_count = suppression.remove(conn, found)
    say(f"removed {removed_count}, not on the list {len(set(found)) - removed_count}")


@suppress.command("list", epilog="Example: invites suppress list --reason bounced --format csv")
@click.option("--reason", type=click.Choice(suppression.REASONS), help="Only this reason.")
@format_option()
@pass_app
def list_entries(app: App, reason: str | None, fmt: str) -> None:
    """The list, newest first: digests, never addresses."""
    with app.database.connect(autocommit=True) as conn:
        count = render(
            suppression.entries(conn, reason=reason), ENTRY_COLUMNS, fmt, title="Suppressed"
        )
    if count == 0:
        say(
            "the suppression list is empty" if reason is None else f"nothing suppressed as {reason}"
        )


@suppress.command("check", epilog="Example: invites suppress check ada@example.com")
@click.argument("addresses", nargs=-1, required=True)
@format_option()
@pass_app
def check(app: App, addresses: tuple[str, ...], fmt: str) -> None:
    """Whether these addresses may be emailed."""
    found = suppression.checked_addresses(addresses)
    with app.database.connect(autocommit=True) as conn:
        results = suppression.check(conn, found)
    records = [
        {
            "email": email,
            "suppressed": entry is not None,
            "reason": entry.reason if entry else None,
            "source": entry.source if entry else None,
            "created_at": entry.created_at if entry else None,
        }
        for email, entry in results
    ]
    render(records, CHECK_COLUMNS, fmt, title="Suppression check")
