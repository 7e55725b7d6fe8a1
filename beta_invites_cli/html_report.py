"""`invites report --format html`: one self-contained page to open offline and mail to a
colleague. Charts by Plotly (the optional extra `beta-invites[html]`), its JavaScript inlined
once: nothing is loaded from the network. Every chart has its numbers as a plain table under it.

The JavaScript is Plotly's "finance" partial bundle (scatter, bar and funnel: all this page
draws), shipped in assets/: 1.3 MB instead of the full bundle's 4.8 MB, for a page one mails.
When the installed Plotly expects another major version of plotly.js, its own full bundle is
used instead, so that the figures always match the library that draws them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from beta_invites_cli.errors import InvitesError
from beta_invites_cli.page_data import PageData

# Colours that stay apart for colour-blind readers (Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# Past eight lines the colours come round again with another dash and marker, so no two lines
# of a chart look the same (up to 8 x 4 of them).
DASHES = ["solid", "dash", "dot", "dashdot"]
SYMBOLS = ["circle", "square", "diamond", "triangle-up"]
PARTIAL_BUNDLE = Path(__file__).parent / "assets" / "plotly-finance.min.js"
CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """
body { margin: 0; background: #f6f7f9; color: #1f2330;
       font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 16px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 4px; }
.scope { color: #4b5060; margin: 0 0 24px; }
section { background: #fff; border-radius: 10px; padding: 20px; margin: 0 0 20px;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.note { color: #4b5060; margin: 0 0 12px; font-size: 14px; }
.chart { width: 100%; min-height: 360px; overflow: hidden; }
.table { overflow-x: auto; margin-top: 12px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e6eb; white-space: nowrap; }
th { text-align: left; background: #f1f2f5; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
footer { color: #7a7f8c; font-size: 12px; text-align: center; }
"""


def require_plotly() -> None:
    """One clear error before any work when the optional extra is missing."""
    _plotly()


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
        import plotly.offline
    except ImportError:
        raise InvitesError(
            "the HTML report draws its charts with Plotly, which is not installed: "
            "pip install 'beta-invites[html]'"
        ) from None
    return go, pio, plotly.offline


def render_page(data: PageData, *, scope: str, database: str, generated: datetime) -> str:
    go, pio, offline = _plotly()
    sections = [
        _funnel(go, pio, data),
        _redemptions(go, pio, data),
        _time_to_redeem(go, pio, data),
    ]
    if data.retention is not None:
        sections.append(_retention(go, pio, data))
    sections.append(_cohorts(data))
    title = "Beta invitations: who came, and what they did"
    when = generated.strftime("%Y-%m-%d %H:%M UTC")
    counted = f"All invites{' (' + scope + ')' if scope else ''}"
    activity = " Activity from the host application's own query." if data.retention else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script>{plotly_js(offline)}</script>
</head>
<body>
<main>
<h1>{html.escape(title)}</h1>
<p class="scope">{html.escape(counted)} in {html.escape(database)}, as of {when}.{activity}</p>
{"".join(sections)}
<footer>Written by invites report --format html. Open offline; nothing loads from the network.
</footer>
</main>
</body>
</html>
"""


def plotly_js(offline: Any) -> str:
    """The partial bundle when it is of the major version the installed Plotly writes for."""
    expected = str(offline.get_plotlyjs_version()).split(".")[0]
    try:
        bundle = PARTIAL_BUNDLE.read_text(encoding="utf-8")
    except OSError:
        return str(offline.get_plotlyjs())
    found = re.search(r"plotly\.js \(finance - minified\) v(\d+)\.", bundle[:300])
    if found is None or found.group(1) != expected:
        return str(offline.get_plotlyjs())
    return bundle


def line_style(index: int) -> dict[str, Any]:
    """The line and marker of a chart's `index`th line: colour, then dash and symbol."""
    colour = PALETTE[index % len(PALETTE)]
    turn = index // len(PALETTE)
    return {
        "line": {"color": colour, "dash": DASHES[turn % len(DASHES)], "width": 2.5},
        "marker": {"color": colour, "symbol": SYMBOLS[turn % len(SYMBOLS)], "size": 7},
    }


def every_day(series: dict[str, list[tuple[date, int]]]) -> tuple[list[date], dict[str, list[int]]]:
    """Each segment's running total on every day from the first redemption to the last: a
    segment whose redemptions all fell on one day (launch day) is still a line, not one point
    that a line chart draws as nothing."""
    days_seen = {day for points in series.values() for day, _ in points}
    if not days_seen:
        return [], {}
    first, last = min(days_seen), max(days_seen)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    totals: dict[str, list[int]] = {}
    for segment, points in series.items():
        by_day = dict(points)
        running = 0
        totals[segment] = []
        for day in days:
            running = by_day.get(day, running)
            totals[segment].append(running)
    return days, totals


def _figure(go: Any, pio: Any, figure: Any, name: str) -> str:
    figure.update_layout(
        margin={"l": 48, "r": 16, "t": 16, "b": 48},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        legend={"orientation": "h", "y": -0.2},
        colorway=PALETTE,
        height=380,
        font={"family": "-apple-system, Segoe UI, Helvetica, Arial, sans-serif", "size": 13},
    )
    figure.update_xaxes(gridcolor="#eceef2")
    figure.update_yaxes(gridcolor="#eceef2", rangemode="tozero")
    return str(
        pio.to_html(
            figure,
            include_plotlyjs=False,
            full_html=False,
            config=CONFIG,
            div_id=f"chart-{name}",
            default_width="100%",
        )
    )


def _section(name: str, heading: str, note: str, chart: str, table: str) -> str:
    return (
        f'<section id="{name}"><h2>{html.escape(heading)}</h2>'
        f'<p class="note">{html.escape(note)}</p><div class="chart">{chart}</div>'
        f'<div class="table">{table}</div></section>\n'
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_cell(v)}</td>' if _numeric(v) else f"<td>{_cell(v)}</td>" for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal | float):
        return f"{float(value):,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _percent(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else ""


def _funnel(go: Any, pio: Any, data: PageData) -> str:
    rows = data.funnel_by_segment()
    steps = [("issued", "Issued"), ("delivered", "Sent"), ("redeemed", "Redeemed")]
    if data.by_cohort.with_activity:
        steps.append(("active", "Active"))
    figure = go.Figure()
    for row in rows:
        figure.add_trace(
            go.Funnel(
                name=row["segment"],
                y=[label for _, label in steps],
                x=[row[key] for key, _ in steps],
                textinfo="value+percent previous",
            )
        )
    headers = ["Segment", *(label for _, label in steps), "Redeemed of sent", "Reminded"]
    headers.append("Bounced")
    table = _table(
        headers,
        [
            [
                r["segment"],
                *(r[key] for key, _ in steps),
                _percent(r["redeemed"], r["delivered"]),
                r["reminded"],
                r["bounced"],
            ]
            for r in rows
        ],
    )
    note = (
        "Each step and the share of the step before that reached it, per segment. Sent counts "
        "every invite that reached its person (emailed, marked sent, or redeemed)."
    )
    return _section(
        "funnel", "The funnel by segment", note, _figure(go, pio, figure, "funnel"), table
    )


def _redemptions(go: Any, pio: Any, data: PageData) -> str:
    figure = go.Figure()
    ordered = sorted(data.redemptions.items(), key=lambda kv: -kv[1][-1][1])
    days, totals = every_day(dict(ordered))
    x = [day.isoformat() for day in days]
    for index, (segment, running) in enumerate(totals.items()):
        style = line_style(index)
        style["line"]["shape"] = "hv"
        figure.add_trace(go.Scatter(name=segment, x=x, y=running, mode="lines+markers", **style))
    figure.update_yaxes(title_text="redeemed so far")
    note = "Cumulative redemptions per segment, by day of redemption."
    # One row per day, a column per segment: the running totals side by side.
    rows = [
        [day.isoformat(), *(running[n] for running in totals.values())]
        for n, day in enumerate(days)
    ]
    table = _table(["Day", *totals], rows)
    chart = _figure(go, pio, figure, "redemptions")
    return _section("redemptions", "Redemptions over time", note, chart, table)


def _time_to_redeem(go: Any, pio: Any, data: PageData) -> str:
    labels = [label for label, _ in data.time_to_redeem]
    counts = [n for _, n in data.time_to_redeem]
    figure = go.Figure(go.Bar(x=labels, y=counts, marker_color=PALETTE[0]))
    figure.update_yaxes(title_text="redemptions")
    total = sum(counts)
    table = _table(
        ["From issue to redemption", "Redemptions", "Share"],
        [[label, n, _percent(n, total)] for label, n in data.time_to_redeem],
    )
    note = "How long people took from the invite's issue to its redemption."
    chart = _figure(go, pio, figure, "time-to-redeem")
    return _section("time-to-redeem", "Time to redeem", note, chart, table)


def _retention(go: Any, pio: Any, data: PageData) -> str:
    matrix = data.retention
    assert matrix is not None
    weeks = list(range(1, matrix.weeks + 1))
    figure = go.Figure()
    # A cohort with no week over yet (or no redeemers) has no curve: it stays in the table
    # below, not in the legend as a name without a line.
    drawn = [row for row in matrix.rows if any(row[f"week_{n}"] is not None for n in weeks)]
    for index, row in enumerate(drawn):
        figure.add_trace(
            go.Scatter(
                name=row["cohort"],
                x=[f"week {n}" for n in weeks],
                y=[
                    None if row[f"week_{n}"] is None else float(row[f"week_{n}"]) * 100
                    for n in weeks
                ],
                mode="lines+markers",
                **line_style(index),
            )
        )
    figure.update_yaxes(title_text="% of redeemers active", range=[0, 100])
    table = _table(
        ["Cohort", "Redeemers", *(f"Week {n}" for n in weeks)],
        [
            [
                r["cohort"],
                r["redeemers"],
                *(
                    "" if r[f"week_{n}"] is None else f"{float(r[f'week_{n}']) * 100:.0f}%"
                    for n in weeks
                ),
            ]
            for r in matrix.rows
        ],
    )
    note = (
        "Share of each cohort's redeemers active in week N after redemption, counting only "
        "those for whom week N is over (blank: over for nobody yet)."
    )
    chart = _figure(go, pio, figure, "retention")
    return _section("retention", "Retention by cohort", note, chart, table)


def _cohorts(data: PageData) -> str:
    report = data.by_cohort
    keys = [k for k in report.keys if k != "cohort"]
    rows = [[r["cohort"], *(r[k] for k in keys)] for r in report.rows]
    if report.totals is not None:
        rows.append(["Total", *(report.totals[k] for k in keys)])
    headers = ["Cohort", *(k.replace("_", " ") for k in keys)]
    return (
        '<section id="cohorts"><h2>Every cohort</h2><p class="note">The report by cohort, as '
        f'`invites report --format csv` prints it.</p><div class="table">'
        f"{_table(headers, rows)}</div></section>\n"
    )
