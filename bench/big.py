"""Workloads on a million invites: expire, redeem, report and list against their baselines."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

import beta_invites_cli as api
from bench.harness import Context, Workload, invites_command, psql_command, run_quiet
from beta_invites_cli.sweep import sweep

MILLION_TEMPLATE = "bench_million_template"

# A million invites over 20 cohorts and 30 days: 10% newly expired (to anonymise), 10% already
# anonymised, 20% redeemed, the rest pending (half of them sent).
POPULATE = """
INSERT INTO public.beta_invites (code, email, cohort, created_at, expires_at, sent_at, used_at, anonymized_at)
SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'),
       'person' || i || '@example.com',
       (ARRAY['creator-vinyl-pressing','creator-tape','listener-jazz-mailing-list','listener-indie',
              'community-member-discord','community-member-forum','press-pitchfork','press-wire',
              'creator-live','listener-classical','press-blogs','community-member-irl','creator-beats',
              'listener-metal','press-radio','creator-folk','listener-pop','community-member-meetup',
              'press-tv','other'])[1 + i %% 20],
       now() - (i %% 30) * interval '1 day',
       CASE WHEN i %% 10 IN (0, 1) THEN now() - interval '2 days' ELSE now() + interval '20 days' END,
       CASE WHEN i %% 2 = 0 THEN now() - (i %% 30) * interval '1 day' END,
       CASE WHEN i %% 10 IN (2, 3) THEN now() - (i %% 30) * interval '1 day' + (i %% 48) * interval '1 hour' END,
       CASE WHEN i %% 10 = 1 THEN now() - interval '1 day' END
  FROM generate_series(1, %s) AS i
"""


def million(ctx: Context) -> str:
    """A database with `ctx.big` invites, built once and cloned for each workload that writes."""
    url = ctx.url(MILLION_TEMPLATE)
    with psycopg.connect(ctx.admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (MILLION_TEMPLATE,)
        ).fetchone()
    if exists is None:
        url = ctx.fresh_database(MILLION_TEMPLATE)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(POPULATE, (ctx.big,))
            conn.execute("VACUUM ANALYZE public.beta_invites")
    return url


def clone(ctx: Context, name: str) -> str:
    million(ctx)
    with psycopg.connect(ctx.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{MILLION_TEMPLATE}"')
    url = ctx.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE public.beta_invites")
    return url


ANONYMISE_IN_ONE_UPDATE = (
    "UPDATE public.beta_invites"
    " SET email = 'anonymized+' || replace(gen_random_uuid()::text, '-', '') || '@invalid',"
    " anonymized_at = now(), delivery_reply = NULL"
    " WHERE used_at IS NULL AND anonymized_at IS NULL AND expires_at <= now()"
)


def expire(ctx: Context) -> Workload:
    invites = invites_command()
    ours_url, base_url = ctx.url("bench_expire_ours"), ctx.url("bench_expire_psql")
    workload = Workload(
        name="expire",
        ours_label=f"invites expire ({ctx.big:,} invites, {ctx.big // 10:,} newly expired)",
        baseline_label="psql: one UPDATE doing the same anonymisation",
        prepare_ours=lambda: clone(ctx, "bench_expire_ours"),
        prepare_baseline=lambda: clone(ctx, "bench_expire_psql"),
        ours=lambda: run_quiet([*invites, "expire"], env=ctx.env(ours_url)),
        baseline=lambda: run_quiet([*psql_command(), base_url, "-c", ANONYMISE_IN_ONE_UPDATE]),
        target="<= 1.5",
    )

    # The run right after: its database time, and the longest batch of a full run.
    def measure_again() -> None:
        url = clone(ctx, "bench_expire_again")
        with psycopg.connect(url, autocommit=True) as conn:
            batches: list[float] = []
            started = time.perf_counter()
            result = sweep(conn)
            first = time.perf_counter() - started
            again = []
            for _ in range(5):
                t = time.perf_counter()
                sweep(conn)
                again.append(time.perf_counter() - t)
            conn.execute("SELECT 1")
            del batches
        workload.notes.append(
            f"first sweep anonymised {result.anonymized:,} in {first:.2f}s "
            f"({-(-result.anonymized // 5000)} batches of 5,000, about {first / max(1, -(-result.anonymized // 5000)):.3f}s each); "
            f"a sweep right after: median {statistics.median(again) * 1000:.1f} ms of database time (target < 300 ms)"
        )

    measure_again()
    return workload


# Each transaction redeems the next code of the list, so all 10,000 redeem something (drawing
# codes at random would redeem nothing in a third of them).
REDEEM_SCRIPT = """UPDATE public.beta_invites SET used_at = now(), redeemed_by = NULL
 WHERE code = (SELECT code FROM bench_codes WHERE n = (SELECT nextval('bench_next')))
   AND used_at IS NULL AND revoked_at IS NULL AND anonymized_at IS NULL AND expires_at > now()
RETURNING id, code, email, cohort, used_at, expires_at;
"""


def redeem_throughput(ctx: Context) -> Workload:
    url = ctx.fresh_database("bench_redeem")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POPULATE, (100_000,))
        conn.execute(
            "UPDATE public.beta_invites SET used_at = NULL, anonymized_at = NULL,"
            " expires_at = now() + interval '20 days'"
        )
        conn.execute(
            "CREATE TABLE bench_codes AS SELECT row_number() OVER () AS n, code FROM public.beta_invites LIMIT 10000"
        )
        conn.execute("ALTER TABLE bench_codes ADD PRIMARY KEY (n)")
        conn.execute("CREATE SEQUENCE bench_next")
        codes = [r[0] for r in conn.execute("SELECT code FROM bench_codes ORDER BY n")]
        conn.execute("VACUUM ANALYZE")
    script = ctx.workdir / "redeem.sql"
    script.write_text(REDEEM_SCRIPT)

    def reset() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE public.beta_invites SET used_at = NULL WHERE used_at IS NOT NULL")
            conn.execute("ALTER SEQUENCE bench_next RESTART")

    def redeemed() -> int:
        with psycopg.connect(url) as conn:
            query = "SELECT count(*) FROM public.beta_invites WHERE used_at IS NOT NULL"
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0

    def ours() -> None:
        chunks = [codes[i::8] for i in range(8)]
        done: list[int] = []

        def worker(chunk: list[str]) -> None:
            # Autocommit, like pgbench: each redeem() is then its own one-statement transaction.
            with psycopg.connect(url, autocommit=True) as conn:
                for code in chunk:
                    api.redeem(conn, code)
            done.append(len(chunk))

        threads = [threading.Thread(target=worker, args=(chunk,)) for chunk in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if sum(done) != len(codes):  # a thread that died would flatter us
            raise RuntimeError(f"redeem-throughput: only {sum(done)} of {len(codes)} redeemed")

    def baseline() -> None:
        run_quiet([str(pgbench), "-n", "-c", "8", "-j", "2", "-t", "1250", "-f", str(script), url])
        if redeemed() != len(codes):
            raise RuntimeError("redeem-throughput: pgbench did not redeem every code")

    pgbench = Path("/usr/bin/pgbench")
    return Workload(
        name="redeem-throughput",
        ours_label="redeem() API, 10,000 distinct codes, 8 threads",
        baseline_label="pgbench, the same UPDATE, 8 clients, 10,000 transactions",
        prepare_ours=reset,
        prepare_baseline=reset,
        ours=ours,
        baseline=baseline,
        target="<= 1.43 (rate >= 0.7 of pgbench)",
    )


# The SQL function a host in any language calls, one code per transaction.
REDEEM_FUNCTION_SCRIPT = """SELECT * FROM public.beta_invites_redeem(
  (SELECT code FROM bench_codes WHERE n = (SELECT nextval('bench_next'))));
"""


def redeem_sql(ctx: Context) -> Workload:
    """beta_invites_redeem() against the bare conditional UPDATE, both through pgbench with 8
    clients (both fire the history trigger)."""
    workload = redeem_throughput(ctx)
    function_script = ctx.workdir / "redeem-function.sql"
    function_script.write_text(REDEEM_FUNCTION_SCRIPT)
    pgbench = Path("/usr/bin/pgbench")
    url = ctx.url("bench_redeem")

    def ours() -> None:
        run_quiet(
            [
                str(pgbench),
                "-n",
                "-c",
                "8",
                "-j",
                "2",
                "-t",
                "1250",
                "-f",
                str(function_script),
                url,
            ]
        )
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM public.beta_invites WHERE used_at IS NOT NULL"
            ).fetchone()
        if row is None or row[0] != 10_000:
            raise RuntimeError("redeem-sql: beta_invites_redeem() did not redeem every code")

    return Workload(
        name="redeem-sql",
        ours_label="pgbench: SELECT * FROM beta_invites_redeem(code), 8 clients, 10,000 codes",
        baseline_label="pgbench: the bare conditional UPDATE, 8 clients, 10,000 codes",
        prepare_ours=workload.prepare_ours,
        prepare_baseline=workload.prepare_baseline,
        ours=ours,
        baseline=workload.baseline,
        target="<= 1.3",
        notes=[
            "ours normalises the code, redeems, and on a refusal says why; both write the "
            "`redeemed` event (the history trigger)"
        ],
    )


# The floor for a whole `invites` process that runs one statement: a Python process that
# imports psycopg, connects, and runs the same statement.
FLOOR = (
    "import os, sys, psycopg\n"
    "with psycopg.connect(os.environ['DATABASE_URL'], autocommit=True) as conn:\n"
    "    conn.execute(sys.argv[1], (sys.argv[2],)).fetchall()\n"
)
REDEEM_ONE = (
    "UPDATE public.beta_invites SET used_at = now(), redeemed_by = NULL WHERE code = %s"
    " AND used_at IS NULL AND revoked_at IS NULL AND anonymized_at IS NULL AND expires_at > now()"
    " RETURNING id, code, email, cohort, used_at, expires_at"
)
SHOW_ONE = "SELECT * FROM public.beta_invites WHERE code = %s"


def one_statement(ctx: Context, name: str, command: list[str], statement: str) -> Workload:
    invites = invites_command()
    url = ctx.fresh_database(f"bench_{name.replace('-', '_')}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.beta_invites (code, email, cohort) VALUES ('RDMRDMRDMRDMRDMR', 'r@example.com', 'x')"
        )

    def reset() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE public.beta_invites SET used_at = NULL")

    def psql() -> float:
        started = time.perf_counter()
        run_quiet([*psql_command(), url, "-c", statement.replace("%s", "'RDMRDMRDMRDMRDMR'")])
        return time.perf_counter() - started

    workload = Workload(
        name=name,
        ours_label=f"invites {' '.join(command)} (whole process)",
        baseline_label="python: import psycopg, connect, run the same statement",
        prepare_ours=reset,
        prepare_baseline=reset,
        ours=lambda: run_quiet([*invites, *command], env=ctx.env(url)),
        baseline=lambda: run_quiet(
            [sys.executable, "-c", FLOOR, statement, "RDMRDMRDMRDMRDMR"], env=ctx.env(url)
        ),
        target="<= 1.3",
    )
    reset()
    workload.notes.append(
        f"for the reader: psql running the same statement takes {min(psql() for _ in range(3)):.3f}s"
    )
    return workload


def redeem_process(ctx: Context) -> Workload:
    return one_statement(ctx, "redeem-process", ["redeem", "rdmr-dmrd-mrdm-rdmr"], REDEEM_ONE)


def show_process(ctx: Context) -> Workload:
    return one_statement(ctx, "show-process", ["show", "rdmr-dmrd-mrdm-rdmr"], SHOW_ONE)


EQUIVALENT_REPORT = """
SELECT cohort, count(*) AS issued, count(sent_at) AS sent, count(used_at) AS redeemed,
       count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NULL AND anonymized_at IS NULL
                          AND expires_at > now()) AS pending,
       count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NULL
                          AND (expires_at <= now() OR anonymized_at IS NOT NULL)) AS expired,
       count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NOT NULL) AS revoked,
       count(*) FILTER (WHERE used_at IS NULL AND revoked_at IS NULL AND anonymized_at IS NULL
                          AND expires_at > now() AND delivery_outcome = 'bounced') AS bounced,
       count(reminded_at) AS reminded,
       count(*) FILTER (WHERE used_at > reminded_at) AS redeemed_after_reminder,
       round(count(used_at)::numeric / count(*), 4) AS redemption_rate,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM used_at - created_at))
         FILTER (WHERE used_at IS NOT NULL) / 3600)::numeric, 1) AS median_hours_to_redeem
  FROM public.beta_invites GROUP BY cohort ORDER BY issued DESC
"""


def report(ctx: Context) -> Workload:
    invites = invites_command()
    url = million(ctx)
    return Workload(
        name="report",
        ours_label=f"invites report --format csv ({ctx.big:,} invites)",
        baseline_label="psql -c with the equivalent aggregate",
        ours=lambda: run_quiet([*invites, "report", "--format", "csv"], env=ctx.env(url)),
        baseline=lambda: run_quiet([*psql_command(), url, "-c", EQUIVALENT_REPORT]),
        target="<= 1.2",
        notes=[
            "csv prints no totals row, so ours does not compute one (the table does, with "
            "GROUPING SETS in the same query)"
        ],
    )


# The host's activity: 25 rows per redeemer over the 40 days after the redemption, by user id.
ACTIVITY_TABLE = """
CREATE TABLE public.activity AS
SELECT i.redeemed_by AS user_id, i.used_at + g * interval '38 hours' AS at,
       CASE WHEN mod(g, 3) = 0 THEN 'feedback' ELSE 'session' END AS kind
  FROM public.beta_invites i, generate_series(1, 25) AS g
 WHERE i.used_at IS NOT NULL
"""
ACTIVITY_QUERY = "SELECT user_id, at, kind FROM public.activity\n"


def with_activity(ctx: Context) -> tuple[str, Path]:
    """The million invites, an account for each redeemer, and 25 activity rows each (5,000,000
    at the default size); and the activity query file."""
    url = ctx.url("bench_activity")
    query = ctx.workdir / "activity.sql"
    query.write_text(ACTIVITY_QUERY)
    with psycopg.connect(ctx.admin_url, autocommit=True) as conn:
        done = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_activity'").fetchone()
    if done is not None:
        return url, query
    url = clone(ctx, "bench_activity")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            WITH redeemers AS (
              SELECT id, row_number() OVER () AS n FROM public.beta_invites
               WHERE used_at IS NOT NULL),
            accounts AS (
              INSERT INTO public.users SELECT FROM redeemers RETURNING id),
            numbered AS (SELECT id, row_number() OVER () AS n FROM accounts)
            UPDATE public.beta_invites i SET redeemed_by = a.id
              FROM redeemers r JOIN numbered a USING (n)
             WHERE i.id = r.id
            """
        )
        conn.execute(ACTIVITY_TABLE)
        conn.execute("CREATE INDEX ON public.activity (user_id)")
        conn.execute("VACUUM ANALYZE")
    return url, query


def report_activity(ctx: Context) -> Workload:
    """`report --activity`, against psql running the very statement it composes."""
    from beta_invites_cli import report as reports
    from beta_invites_cli.activity import ActivityQuery
    from beta_invites_cli.filters import Filters

    invites = invites_command()
    url, query = with_activity(ctx)
    activity = ActivityQuery.load(query)
    where, params = Filters().where()
    measured = reports.Activity(activity.subquery(), "user_id", None)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM public.activity").fetchone()
        statement = psycopg.ClientCursor(conn).mogrify(
            reports.query_for("cohort", where, totals=False, activity=measured),
            {**params, "segments": [], "activity_kind": None},
        )
    return Workload(
        name="report-activity",
        ours_label=f"invites report --activity activity.sql --format csv ({ctx.big:,} invites, "
        f"{rows[0] if rows else 0:,} activity rows)",
        baseline_label="psql -c running the same single query",
        ours=lambda: run_quiet(
            [*invites, "report", "--activity", str(query), "--format", "csv"], env=ctx.env(url)
        ),
        baseline=lambda: run_quiet([*psql_command(), url, "-c", statement]),
        target="<= 1.3",
        notes=["ours also checks the activity query's columns, in a READ ONLY transaction"],
    )


def report_html(ctx: Context) -> Workload:
    """The HTML page against the CSV report, on the same data, with activity."""
    invites = invites_command()
    url, query = with_activity(ctx)
    page = ctx.workdir / "report.html"

    def written() -> None:
        if not page.exists() or page.stat().st_size < 1_000_000:
            raise RuntimeError("report-html: the page was not written")
        page.unlink()

    return Workload(
        name="report-html",
        ours_label="invites report --format html --output report.html --activity activity.sql",
        baseline_label="invites report --format csv --activity activity.sql",
        ours=lambda: run_quiet(
            [
                *invites,
                "report",
                "--format",
                "html",
                "--output",
                str(page),
                "--activity",
                str(query),
            ],
            env=ctx.env(url),
        ),
        baseline=lambda: run_quiet(
            [*invites, "report", "--format", "csv", "--activity", str(query)], env=ctx.env(url)
        ),
        verify_ours=written,
        target="<= 1.5",
        notes=[
            "the page also scans the redeemed invites once more (redemptions over time, time to "
            "redeem); its retention curves are the report's own columns"
        ],
    )


def list_copy(url: str, fmt: str) -> str:
    """Our own export statement, parameters inlined, for psql to run as the baseline."""
    from beta_invites_cli import listing
    from beta_invites_cli.filters import Filters

    build = listing.csv_copy if fmt == "csv" else listing.json_copy
    query, params = build(Filters())
    with psycopg.connect(url) as conn:
        return psycopg.ClientCursor(conn).mogrify(query, params)


def list_export(ctx: Context, fmt: str = "csv") -> Workload:
    invites = invites_command()
    url = million(ctx)
    statement = list_copy(url, fmt)
    return Workload(
        name=f"list-{fmt}",
        ours_label=f"invites list --format {fmt} ({ctx.big:,} invites)",
        baseline_label="psql -c running our very COPY statement (PostgreSQL formats both)",
        ours=lambda: run_quiet([*invites, "list", "--format", fmt], env=ctx.env(url)),
        baseline=lambda: run_quiet([*psql_command(), url, "-c", statement]),
        target="<= 1.4" if fmt == "csv" else "<= 1.5",
        notes=["streamed from COPY: memory stays flat (tests/test_read.py, 1,000,000 rows)"],
    )


def list_json(ctx: Context) -> Workload:
    return list_export(ctx, "json")


def list_jsonl(ctx: Context) -> Workload:
    return list_export(ctx, "jsonl")
