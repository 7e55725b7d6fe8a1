"""`invites report --format html`: one self-contained page, rendered by a real browser (Debian's
headless Chromium, `.ci/run` installs it) with the network cut: every chart draws, the
screenshots are not blank at a laptop's and a phone's width, and no request leaves the file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Invoke
from tests.test_report_activity import host, write

__all__ = ["host"]  # the fixture, shared with the activity tests

CHARTS = ("funnel", "redemptions", "time-to-redeem", "retention")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return found


def browse(page: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on `page` with every network request refused, its profile, cache and
    temporary files in `workdir`; the network log in workdir/net.json."""
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "TMPDIR": str(workdir)}
    return subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",  # as root, in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            f"--user-data-dir={workdir / 'profile'}",
            "--proxy-server=http://127.0.0.1:9",  # nothing listens there: no way out
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--log-net-log={workdir / 'net.json'}",
            "--virtual-time-budget=15000",
            *args,
            page.as_uri(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def browser_dir(tmp_path: Path) -> Path:
    """A short directory for the browser, inside the suite's scratch directory (removed with
    it): Chromium's socket path must fit in 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="c", dir=tmp_path.parents[1]))


def page_requests(net_log: Path) -> set[str]:
    """What the page asked the network for: the requests started for a file:// page (the
    browser's own background requests, refused by the proxy anyway, are not the page's)."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = set()
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start and str(params.get("network_isolation_key", "")).startswith(
            "file://"
        ):
            urls.add(params["url"])
    return {url for url in urls if not url.startswith(("file://", "data:"))}


def colours(png: Path) -> tuple[int, float]:
    """How many colours a screenshot has, and the share of its most common one."""
    from PIL import Image

    with Image.open(png) as image:
        pixels = image.convert("RGB")
        counts = pixels.getcolors(maxcolors=1 << 24) or []
        total = pixels.width * pixels.height
    return len(counts), max(n for n, _ in counts) / total


@pytest.fixture
def page(invites: Invoke, host: dict[str, Any], tmp_path: Path) -> Path:
    query = write(tmp_path, "feedback.sql", "SELECT user_id, submitted_at AS at FROM feedback")
    out = tmp_path / "report.html"
    result = invites(
        "report", "--format", "html", "--output", str(out), "--activity", query, "--cohort", "*"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote the report to {out}\n"
    return out


def test_the_page_is_self_contained_and_tells_what_it_counted(
    page: Path, conn: psycopg.Connection[Any]
) -> None:
    text = page.read_text()
    assert "<script src=" not in text and "<link" not in text  # nothing to fetch
    assert "Beta invitations: who came, and what they did" in text
    assert "All invites (cohort *)" in text and "as of " in text
    assert "postgresql://postgres@127.0.0.1:" in text  # which database (never a password)
    for chart in CHARTS:
        assert f'id="chart-{chart}"' in text
    # Every number is also a plain table: the funnel's issued counts are the database's.
    issued = dict(conn.execute("SELECT cohort, count(*) FROM beta_invites GROUP BY 1").fetchall())
    assert f'<td>press</td><td class="n">{issued["press-a"]:,}</td>' in text
    assert "@example.com" not in text.lower()  # no address on the page


def test_chromium_draws_every_chart_offline(page: Path, tmp_path: Path) -> None:
    browser = browser_dir(tmp_path)
    dom = browse(page, browser, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in CHARTS:
        start = dom.stdout.index(f'id="chart-{chart}"')
        drawn = dom.stdout[start : start + 200_000]
        assert 'class="main-svg"' in drawn, f"{chart} was not drawn"
        assert 'class="trace' in drawn or "funnel" in drawn, f"{chart} has no data"
    assert page_requests(browser / "net.json") == set()
    # The same check sees a page that does load something from the network.
    elsewhere = browser_dir(tmp_path)
    control = elsewhere / "control.html"
    control.write_text('<html><body><img src="https://example.org/logo.png"></body></html>')
    browse(control, elsewhere, "--dump-dom")
    assert page_requests(elsewhere / "net.json") == {"https://example.org/logo.png"}


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_are_not_blank(page: Path, tmp_path: Path, width: int) -> None:
    browser = browser_dir(tmp_path)
    shot = browser / f"page-{width}.png"
    done = browse(page, browser, f"--window-size={width},2400", f"--screenshot={shot}")
    assert shot.exists(), done.stderr[-2000:]
    count, dominant = colours(shot)
    assert count > 200, f"{count} colours: blank or broken"
    assert dominant < 0.9, f"one colour covers {dominant:.0%} of the page"


def test_without_plotly_it_is_one_clear_error(
    invites: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)  # as if the extra were not installed
    out = tmp_path / "r.html"
    result = invites("report", "--format", "html", "--output", str(out))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: the HTML report draws its charts with Plotly, which is not installed: "
        "pip install 'beta-invites[html]'\n"
    )
    assert not out.exists()
    usage = invites("report", "--format", "html", "--funnel")
    assert usage.exit_code == 2
    assert invites("report", "--output", str(out)).exit_code == 2


def figure_data(text: str, chart: str) -> list[dict[str, Any]]:
    """The traces the page hands Plotly for one chart (the list after its div id)."""
    found = re.search(rf'Plotly\.newPlot\(\s*"chart-{chart}",\s*', text)
    assert found is not None, f"no chart {chart}"
    begin = found.end()
    traces, _ = json.JSONDecoder().raw_decode(text, begin)
    return list(traces)


def test_the_page_is_small_enough_to_mail(page: Path) -> None:
    text = page.read_text()
    assert len(text.encode()) < 1_500_000, f"{len(text.encode()):,} bytes"
    assert "plotly.js (finance - minified) v4." in text


def test_a_launch_day_draws_every_segment(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # Launch day: every redemption of each segment on one day, press a day later.
    conn.execute(
        """
        INSERT INTO beta_invites (code, email, cohort, used_at)
        SELECT translate(upper(substr(md5(i::text), 1, 16)), '01IL', 'XYZW'),
               'p' || i || '@example.org',
               (ARRAY['creator-a', 'listener-b', 'press-c'])[i % 3 + 1],
               timestamptz '2026-11-02 12:00+00' + CASE WHEN i % 3 = 2 THEN interval '1 day' ELSE interval '0' END
          FROM generate_series(1, 30) AS i
        """
    )
    out = tmp_path / "launch.html"
    assert invites("report", "--format", "html", "--output", str(out)).exit_code == 0
    traces = figure_data(out.read_text(), "redemptions")
    assert sorted(t["name"] for t in traces) == ["creator", "listener", "press"]
    for trace in traces:
        assert trace["x"] == ["2026-11-02", "2026-11-03"]  # every day of the range
        assert "markers" in trace["mode"]
    assert {t["name"]: t["y"] for t in traces}["press"] == [0, 10]
    # And a real browser draws a mark for each segment on each day.
    browser = browser_dir(tmp_path)
    dom = browse(out, browser, "--dump-dom")
    start = dom.stdout.index('id="chart-redemptions"')
    drawn = dom.stdout[start : dom.stdout.index('id="time-to-redeem"', start)]
    assert drawn.count('class="point"') == 6


def test_retention_lines_are_told_apart_and_empty_cohorts_stay_in_the_table(
    invites: Invoke, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    conn.execute("CREATE TABLE visits (user_id uuid, at timestamptz)")
    for n in range(12):
        user = conn.execute("INSERT INTO users DEFAULT VALUES RETURNING id").fetchone()
        assert user is not None
        conn.execute(
            "INSERT INTO beta_invites (code, email, cohort, used_at, redeemed_by) VALUES "
            "(translate(upper(substr(md5(%s), 1, 16)), '01IL', 'XYZW'), %s, %s, "
            "now() - interval '30 days', %s)",
            (str(n), f"r{n}@example.org", f"press-{n:02}", user[0]),
        )
        conn.execute("INSERT INTO visits VALUES (%s, now() - interval '20 days')", (user[0],))
    # A cohort nobody redeemed yet: a row of the table, no line in the chart.
    conn.execute(
        "INSERT INTO beta_invites (code, email, cohort) VALUES ('ZZZZZZZZZZZZZZZZ', 'z@example.org', 'press-new')"
    )
    query = write(tmp_path, "visits.sql", "SELECT user_id, at FROM visits")
    out = tmp_path / "retention.html"
    result = invites("report", "--format", "html", "--output", str(out), "--activity", query)
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    traces = figure_data(text, "retention")
    assert sorted(t["name"] for t in traces) == [f"press-{n:02}" for n in range(12)]
    looks = {(t["line"]["color"], t["line"]["dash"], t["marker"]["symbol"]) for t in traces}
    assert len(looks) == 12  # no two lines look the same
    assert "<td>press-new</td>" in text[text.index('id="retention"') :]
