"""The waitlist's workloads: bulk joining, the landing page's SQL join, fill against send, and
cohort list over many cohorts."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import psycopg

from bench.harness import Context, Workload, invites_command, psql_command, run_quiet

RESET = (
    "TRUNCATE public.beta_invites, public.beta_invites_waitlist, public.beta_invites_reminders,"
    " public.beta_invites_events"
)


def waitlist_add(ctx: Context) -> Workload:
    """`invites waitlist add` of --size people against psql \\copy of the same rows."""
    url = ctx.fresh_database("bench_waitlist_add")
    size = ctx.size
    people = ctx.workdir / "waitlist.csv"
    people.write_text("email\n" + "".join(f"w{i}@example.com\n" for i in range(size)))
    rows = ctx.workdir / "waitlist-rows.csv"
    rows.write_text("".join(f"bench,w{i}@example.com\n" for i in range(size)))

    def reset() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(RESET)
            conn.execute("VACUUM ANALYZE public.beta_invites_waitlist")

    def all_waiting() -> None:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM public.beta_invites_waitlist").fetchone()
        if row is None or row[0] != size:
            raise RuntimeError(f"waitlist-add: {row[0] if row else 0} of {size:,} waiting")

    return Workload(
        name="waitlist-add",
        ours_label=f"invites waitlist add ({size:,} from CSV)",
        baseline_label="psql \\copy of the same rows into the waitlist",
        prepare_ours=reset,
        prepare_baseline=reset,
        ours=lambda: run_quiet(
            [
                *invites_command(),
                "waitlist",
                "add",
                "--cohort",
                "bench",
                "--recipients",
                str(people),
            ],
            env=ctx.env(url),
        ),
        baseline=lambda: run_quiet(
            [
                *psql_command(),
                url,
                "-c",
                f"\\copy public.beta_invites_waitlist (cohort, email) FROM '{rows}' CSV",
            ]
        ),
        verify_ours=all_waiting,
        verify_baseline=all_waiting,
        target="<= 1.3",
        notes=["ours also validates every address and skips people waiting, invited or suppressed"],
    )


JOINS = 20_000
PGBENCH_JOIN = "\\set n random(1, 1000000000)\nSELECT * FROM public.beta_invites_waitlist_join('j' || :n || '@example.com', 'bench');\n"
PGBENCH_INSERT = "\\set n random(1, 1000000000)\nINSERT INTO public.bench_plain (cohort, email) VALUES ('bench', 'j' || :n || '@example.com');\n"


def waitlist_join(ctx: Context) -> Workload:
    """The landing page's SQL function from 8 clients, against the same clients running a
    plain INSERT into a table of the same shape (pgbench both)."""
    url = ctx.fresh_database("bench_waitlist_join")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.bench_plain (id uuid PRIMARY KEY DEFAULT"
            " gen_random_uuid(), cohort text NOT NULL, email text NOT NULL,"
            " joined_at timestamptz NOT NULL DEFAULT now())"
        )
    scripts = {}
    for name, text in (("join", PGBENCH_JOIN), ("insert", PGBENCH_INSERT)):
        path = ctx.workdir / f"pgbench-{name}.sql"
        path.write_text(text)
        scripts[name] = path

    def reset() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(RESET + ", public.bench_plain")

    def pgbench(script: str) -> Callable[[], None]:
        per_client = JOINS // 8
        command = [
            *pgbench_command(), "-n", "-c", "8", "-j", "8", "-t", str(per_client),
            "-f", str(scripts[script]), url,
        ]  # fmt: skip
        return lambda: run_quiet(command)

    return Workload(
        name="waitlist-join",
        ours_label=f"beta_invites_waitlist_join from 8 clients ({JOINS:,} joins, pgbench)",
        baseline_label="the same clients running a plain INSERT (pgbench)",
        prepare_ours=reset,
        prepare_baseline=reset,
        ours=pgbench("join"),
        baseline=pgbench("insert"),
        target="<= 1.43",
        notes=["a time ratio of 1.43 is a rate of 0.7; ours also checks suppression and invites"],
    )


def pgbench_command() -> list[str]:
    return [shutil.which("pgbench") or "/usr/bin/pgbench"]


def fill_outbox(ctx: Context) -> Workload:
    """`invites fill` of --size waiting people into as many seats (outbox), against `send` of
    as many invites already issued (outbox)."""
    size = ctx.size
    url = ctx.fresh_database("bench_fill")
    people = ctx.workdir / "fill.csv"
    people.write_text("email\n" + "".join(f"f{i}@example.com\n" for i in range(size)))
    outbox = ctx.workdir / "fill-outbox"
    env = ctx.env(url, INVITES_FROM="Beta <beta@example.com>")

    def clear_outbox() -> None:
        shutil.rmtree(outbox, ignore_errors=True)

    def waiting() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(RESET)
        run_quiet(
            [
                *invites_command(),
                "waitlist",
                "add",
                "--cohort",
                "bench",
                "--recipients",
                str(people),
            ],
            env=env,
        )
        run_quiet([*invites_command(), "cohort", "set", "bench", "--seats", str(size)], env=env)
        clear_outbox()

    def issued() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(RESET)
        run_quiet(
            [
                *invites_command(),
                "generate",
                "--cohort",
                "bench",
                "--recipients",
                str(people),
                "--output",
                str(ctx.workdir / "fill-codes.csv"),
            ],
            env=env,
        )
        clear_outbox()

    def all_written() -> None:
        found = len(list(outbox.glob("*.eml")))
        if found != size:
            raise RuntimeError(f"fill/send: {found} of {size:,} messages written")

    return Workload(
        name="fill-outbox",
        ours_label=f"invites fill ({size:,} waiting into as many seats, outbox)",
        baseline_label=f"invites send of {size:,} invites already issued (outbox)",
        prepare_ours=waiting,
        prepare_baseline=issued,
        ours=lambda: run_quiet(
            [*invites_command(), "fill", "--cohort", "bench", "--outbox", str(outbox)], env=env
        ),
        baseline=lambda: run_quiet(
            [*invites_command(), "send", "--cohort", "bench", "--outbox", str(outbox)], env=env
        ),
        verify_ours=all_written,
        verify_baseline=all_written,
        target="<= 1.2",
        notes=["ours also takes the people off the waitlist and issues their invites"],
    )


COHORTS = 10_000


def cohort_list(ctx: Context) -> Workload:
    """`invites cohort list` over 10,000 cohorts with seats and --big invites, against psql
    counting the invites per cohort the same way (one GROUP BY)."""
    url = ctx.fresh_database("bench_cohort_list")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO public.beta_invites (code, email, cohort)
            SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'),
                   'c' || i || '@example.com', 'cohort-' || (i %% %(cohorts)s)
              FROM generate_series(0, %(size)s - 1) AS i
            """,
            {"cohorts": COHORTS, "size": ctx.big},
        )
        conn.execute(
            "INSERT INTO public.beta_invites_cohorts (cohort, seats)"
            " SELECT 'cohort-' || i, 1000 FROM generate_series(0, %s - 1) AS i",
            (COHORTS,),
        )
        conn.execute("VACUUM ANALYZE")
    baseline = (
        "SELECT cohort, count(*) FROM public.beta_invites WHERE used_at IS NOT NULL"
        " OR (revoked_at IS NULL AND anonymized_at IS NULL AND expires_at > now())"
        " GROUP BY cohort"
    )
    return Workload(
        name="cohort-list",
        ours_label=f"invites cohort list --format csv ({COHORTS:,} cohorts, {ctx.big:,} invites)",
        baseline_label="psql: the taken seats of every cohort in one GROUP BY",
        ours=lambda: run_quiet(
            [*invites_command(), "cohort", "list", "--format", "csv"], env=ctx.env(url)
        ),
        baseline=lambda: run_quiet([*psql_command(), url, "-c", baseline]),
        target="<= 1.5",
        notes=["ours also counts waiting and invited-today per cohort"],
    )


ALL = {
    "waitlist-add": waitlist_add,
    "waitlist-join": waitlist_join,
    "fill-outbox": fill_outbox,
    "cohort-list": cohort_list,
}
