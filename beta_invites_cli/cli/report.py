"""`invites report`: which audiences came, and with an activity query what they did after:
the attribution table, the funnel and the cohort retention matrix."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import click

from beta_invites_cli import activity as reports_activity
from beta_invites_cli import funnel as funnels
from beta_invites_cli import report as reports
from beta_invites_cli.cli.common import App, pass_app, say
from beta_invites_cli.cli.options import (
    check_dates,
    filter_options,
    format_option,
    output_option,
)
from beta_invites_cli.cli.render import Column, OutputFile, rate_style, render
from beta_invites_cli.filters import Filters

# Right-aligned in the table; the rate is drawn as a bar.
NUMERIC = {
    *reports.KEYS,
    *reports.REMINDER_KEYS,
    *reports.DELIVERY_KEYS,
    *reports.SEAT_KEYS,
    *reports.ACTIVITY_KEYS,
    "redemptions",
} - {"redemption_rate"}
# Short headers: the table has to read at 80 columns.
HEADERS = {
    "median_hours_to_redeem": "Median h to redeem",
    "redemption_rate": "Redeemed",
    "redeemed_after_reminder": "After reminder",
    "sender_refused": "Sender refused",
    "complaint_rate": "Complaints",
    "waitlist_invited": "From waitlist",
    "median_days_to_invite": "Median d waited",
    "activity_per_active": "Per active",
    "median_hours_to_first_activity": "Median h to act.",
    **{f"week_{n}_retention": f"W{n} active" for n in reports.WEEKS},
}
RETENTION = {f"week_{n}_retention" for n in reports.WEEKS}
# Left out first on a narrow terminal (highest first); the group, issued, redeemed, the
# redemption rate and, with activity, active and week-1 retention always stay.
DROP = {
    name: rank
    for rank, name in enumerate(
        reversed(
            (
                "issued_trend",
                "reclaimed",
                "median_days_to_invite",
                "waitlist_invited",
                "waiting",
                "seats",
                "complaint_rate",
                "complained",
                "sender_refused",
                "failed",
                "redeemed_after_reminder",
                "reminded",
                "revoked",
                "bounced",
                "expired",
                "pending",
                "median_hours_to_first_activity",
                "activity_per_active",
                "activity",
                "week_4_retention",
                "week_3_retention",
                "week_2_retention",
                "redemptions",
                "median_hours_to_redeem",
                "sent",
            )
        ),
        start=1,
    )
}


def rate_bar(rate: float) -> str:
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


@click.command(epilog="Example: invites report --by segment --since 2026-11-01")
@click.option(
    "--by",
    type=click.Choice(reports.GROUPINGS),
    default="cohort",
    show_default=True,
    help="What a row is: a cohort, a segment (INVITES_SEGMENTS), a sender, an issue day or week.",
)
@filter_options
@click.option(
    "--activity",
    "activity_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.sql",
    help="A SELECT over the host's tables returning user_id or email, at, and optionally kind: "
    "adds active, activity and week 1-4 retention (default: INVITES_ACTIVITY_SQL).",
)
@click.option(
    "--kind", "activity_kind", metavar="KIND", help="Only activity of this kind (e.g. feedback)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=86_400),
    default=reports_activity.DEFAULT_TIMEOUT.total_seconds(),
    show_default=True,
    metavar="SECONDS",
    help="Stop the report (and the activity query in it) after this long.",
)
@click.option(
    "--funnel",
    is_flag=True,
    help="Issued -> sent -> redeemed (-> active) per group, with the share at each step.",
)
@click.option(
    "--retention",
    is_flag=True,
    help="The cohort matrix: a row per group, the share of redeemers active in each week "
    "since redemption (needs --activity).",
)
@click.option(
    "--weeks",
    type=click.IntRange(1, 52),
    default=8,
    show_default=True,
    help="Weeks in the --retention matrix.",
)
@output_option("Write the report to FILE (with --format html: report.html) instead of stdout.")
@format_option(extra=("html",))
@pass_app
def report(
    app: App,
    by: str,
    cohort_pattern: str | None,
    since: date | None,
    until: date | None,
    activity_path: Path | None,
    activity_kind: str | None,
    timeout: float,
    funnel: bool,
    retention: bool,
    weeks: int,
    output: Path | None,
    fmt: str,
) -> None:
    """Post-launch attribution: issued, sent, redeemed, pending, expired and rates per group;
    with an activity query, what the redeemers did after signing up."""
    if funnel and retention:
        raise click.UsageError("--funnel and --retention are two views: choose one")
    if fmt == "html" and (funnel or retention or by != "cohort"):
        raise click.UsageError(
            "--format html is the whole page (funnel, retention, by segment and cohort): "
            "without --by, --funnel or --retention"
        )
    if output is not None and fmt != "html":
        raise click.UsageError("--output is for --format html; redirect other formats")
    check_dates(since, until)
    filters = Filters(cohort=cohort_pattern, since=since, until=until)
    segments = reports.segments_setting(app.settings.get("INVITES_SEGMENTS"))
    setting = app.settings.get("INVITES_ACTIVITY_SQL")
    activity_path = activity_path or (Path(setting) if setting else None)
    if activity_kind is not None and activity_path is None:
        raise click.UsageError("--kind needs an activity query (--activity FILE.sql)")
    activity = (
        reports_activity.ActivityQuery.load(activity_path, activity_kind)
        if activity_path is not None
        else None
    )
    if fmt == "html":
        write_page(app, filters, segments, activity, timedelta(seconds=timeout), output)
        return
    if retention:
        if activity is None:
            raise click.UsageError("--retention needs an activity query (--activity FILE.sql)")
        with app.database.connect() as conn:
            matrix = reports.retention(
                conn,
                by=by,
                filters=filters,
                segments=segments,
                activity=activity,
                weeks=weeks,
                timeout=timedelta(seconds=timeout),
            )
        if not matrix.rows:
            say("no redeemed invites match those filters")
        elif fmt != "table":
            render(matrix.rows, [Column(k, k) for k in matrix.keys], fmt)
        else:
            draw_retention(matrix, filters)
        return
    with app.database.connect() as conn:
        result = reports.build(
            conn,
            by=by,
            filters=filters,
            segments=segments,
            with_totals=fmt == "table",
            activity=activity,
            timeout=timedelta(seconds=timeout),
        )
    if not result.rows:
        say("no invites match those filters" if filters.describe() else "no invites yet")
    if funnel:
        rows = funnels.rows(result)
        if fmt != "table":
            render(rows, [Column(k, k) for k in funnels.keys(result)], fmt)
        elif rows:
            draw_funnel(result, rows, filters)
    elif fmt != "table":
        render(result.rows, [Column(k, k) for k in result.keys], fmt)
    elif result.rows:
        draw_report(result, filters)


def write_page(
    app: App,
    filters: Filters,
    segments: list[str],
    activity: reports_activity.ActivityQuery | None,
    timeout: timedelta,
    output: Path | None,
) -> None:
    """The HTML page: gathered first, then written whole (a failed query leaves no file)."""
    from beta_invites_cli import html_report, page_data

    html_report.require_plotly()
    with app.database.connect() as conn:
        data = page_data.gather(
            conn, filters=filters, segments=segments, activity=activity, timeout=timeout
        )
    page = html_report.render_page(
        data,
        scope=filters.describe(),
        database=app.database.target().describe(),
        generated=datetime.now(timezone.utc),
    )
    if output is None:
        click.echo(page, nl=False)
        return
    with OutputFile(output) as target:
        assert target is not None
        try:
            target.handle.write(page)
            target.commit()
        except OSError as exc:
            raise click.ClickException(f"--output {output}: {exc.strerror}") from None
    say(f"wrote the report to {output}")


def title_for(what: str, by: str, filters: Filters) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scope = filters.describe()
    return f"{what} by {by}{' (' + scope + ')' if scope else ''}, as of {when}"


def draw_funnel(result: reports.Report, rows: list[dict[str, Any]], filters: Filters) -> None:
    """One block per group: each step's count, a bar as long as its share of the issued
    invites, and the share of the step before that reached it. Fits 80 columns."""
    steps = [k for k in funnels.keys(result)[1:] if k in funnels.STEPS]
    click.echo(title_for("Funnel", result.by, filters))
    for row in rows:
        name = "Total" if result.totals is not None and row is rows[-1] else row[result.by]
        click.echo(f"\n{name}")
        issued = int(row["issued"]) or 1
        for index, step in enumerate(steps):
            count = int(row[step] or 0)
            bar = "█" * round(count / issued * 30)
            share = "" if index == 0 else row[f"{step}_of_{steps[index - 1]}"]
            of = "" if share in ("", None) else f"{float(share) * 100:5.1f}% of {steps[index - 1]}"
            click.echo(f"  {step:<9}{count:>9,}  {bar:<30}  {of}".rstrip())
        click.echo(f"  reminded {int(row['reminded']):,}, bounced {int(row['bounced']):,}")


def draw_retention(matrix: reports.Retention, filters: Filters, out: IO[str] | None = None) -> None:
    columns = [
        Column(matrix.by, matrix.by.capitalize()),
        Column("redeemers", "Redeemers", numeric=True),
    ]
    columns += [
        Column(f"week_{n}", f"W{n}", numeric=True, render=percent, drop=n - 1, style=rate_style)
        for n in range(1, matrix.weeks + 1)
    ]
    render(matrix.rows, columns, "table", out, title=title_for("Retention", matrix.by, filters))


def percent(value: Any) -> str:
    """A week not over yet for anyone in the group is blank, not 0%."""
    return "" if value is None else f"{float(value) * 100:.0f}%"


def draw_report(result: reports.Report, filters: Filters, out: IO[str] | None = None) -> None:
    by = result.by
    columns = [Column(by, by.capitalize())]
    if by in ("day", "week"):
        peak = max(int(r["issued"]) for r in result.rows)
        columns.append(
            Column(
                "issued_trend", "Issued trend", render=trend_bar(peak), drop=DROP["issued_trend"]
            )
        )
        for row in result.rows:
            row["issued_trend"] = row["issued"]
    columns += [
        Column(
            k,
            HEADERS.get(k, k.replace("_", " ").capitalize()),
            numeric=k in NUMERIC,
            render=rate_bar if k == "redemption_rate" else percent if k in RETENTION else None,
            drop=DROP.get(k, 0),
            style=rate_style if k == "redemption_rate" or k in RETENTION else None,
        )
        for k in result.keys[1:]
    ]
    totals = {**(result.totals or {}), by: "Total"}
    title = title_for("Invites", by, filters)
    render(result.rows, columns, "table", out, title=title, footer=totals)
