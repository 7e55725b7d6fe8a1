"""`invites doctor`: is the sending domain fit to send a cohort? Sends nothing, writes nothing."""

from __future__ import annotations

import dataclasses
import sys
from email.utils import parseaddr

import click
import psycopg

from beta_invites_cli import complaints
from beta_invites_cli import doctor as examining
from beta_invites_cli.cli.common import App, pass_app
from beta_invites_cli.cli.options import format_option
from beta_invites_cli.cli.render import Column, render
from beta_invites_cli.delivery import channel
from beta_invites_cli.delivery.message import ascii_domain
from beta_invites_cli.delivery.smtp import parse_smtp_url
from beta_invites_cli.errors import InvitesError
from beta_invites_cli.exits import ExitCode

MARKS = {examining.OK: "ok", examining.WARN: "warn", examining.FAIL: "FAIL"}


COLUMNS = [Column("name", "Check"), Column("status", "Status"), Column("detail", "Detail")]


@click.command(epilog="Example: invites doctor --format json")
@format_option()
@pass_app
def doctor(app: App, fmt: str) -> None:
    """Check the sending domain before a launch: MX, SPF, DMARC, the DKIM key, the relay (TLS,
    certificate, AUTH), one-click unsubscribe and the complaint rate. Exit 1 when a check fails.
    Sends nothing, writes nothing."""
    setup = _setup(app)
    lookups = examining.Dns(app.settings.get("INVITES_DNS_SERVER"))
    checks = examining.examine(setup, lookups, lambda: _complaints(app))
    if fmt == "table":  # one line per check reads better than a table of long sentences
        width = max(len(c.name) for c in checks)
        for check in checks:
            click.echo(f"{MARKS[check.status]:<4}  {check.name:<{width}}  {check.detail}")
    else:
        render(examining.as_records(checks), COLUMNS, fmt)
    if any(c.status == examining.FAIL for c in checks):
        sys.exit(ExitCode.ERROR)


def _setup(app: App) -> examining.Setup:
    """The settings as `send` reads them: wrong ones are errors here too."""
    settings = app.settings
    sender = settings.get("INVITES_FROM")
    if not sender:
        raise InvitesError("INVITES_FROM is not set: the doctor checks the domain you send from")
    channel.check_address_setting("INVITES_FROM", sender)
    domain = ascii_domain(parseaddr(sender)[1]).rpartition("@")[2].lower()
    smtp = None
    smtp_url = settings.secret("SMTP_URL")
    if smtp_url:
        smtp = dataclasses.replace(
            parse_smtp_url(smtp_url),
            ca_file=channel.ca_file_setting(settings),
            helo=channel.helo_setting(settings, sender),
        )
    unsubscribe = channel.unsubscribe_setting(settings)
    return examining.Setup(
        from_domain=domain,
        dkim=channel.dkim_setting(settings, sender),
        smtp=smtp,
        unsubscribe_url=unsubscribe.url if unsubscribe else None,
        unsubscribe_mailto=unsubscribe.mailto if unsubscribe else None,
    )


def _complaints(app: App) -> tuple[int, int]:
    app.database.may_create = False  # a doctor creates no database
    try:
        with app.database.connect(autocommit=True) as conn:
            found = complaints.rate(conn)
    except psycopg.Error as exc:  # the database is not there to ask
        raise InvitesError(str(exc).splitlines()[0]) from None
    return found.complained, found.sent
