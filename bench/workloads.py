"""The workloads: each pairs one of our commands with the best baseline on the same data."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import psycopg

from bench import big
from bench.harness import Context, Workload, invites_command, psql_command, run_quiet
from beta_invites_cli import migrations
from beta_invites_cli.codes import new_code
from beta_invites_cli.delivery.channel import Letterhead
from beta_invites_cli.delivery.engine import Pending, compose
from beta_invites_cli.issuing import issue, prepare
from beta_invites_cli.template import load as load_template


def startup(ctx: Context) -> Workload:
    invites = invites_command()
    return Workload(
        name="startup",
        ours_label="invites --version",
        baseline_label='python -c "import click" (what it loads)',
        ours=lambda: run_quiet([*invites, "--version"]),
        baseline=lambda: run_quiet([sys.executable, "-c", "import click"]),
    )


def migrate(ctx: Context) -> Workload:
    invites = invites_command()
    files = [str(migrations.sql_directory() / m.name) for m in migrations.available()]
    ours_url = ctx.url("bench_migrate_ours")
    base_url = ctx.url("bench_migrate_psql")

    def fresh(name: str) -> None:
        url = ctx.fresh_database(name, migrated=False)
        run_quiet(
            [
                *psql_command(),
                url,
                "-c",
                "CREATE TABLE public.users (id uuid PRIMARY KEY DEFAULT gen_random_uuid())",
            ]
        )

    return Workload(
        name="migrate",
        ours_label="invites migrate (empty database)",
        baseline_label="psql -f each file",
        prepare_ours=lambda: fresh("bench_migrate_ours"),
        prepare_baseline=lambda: fresh("bench_migrate_psql"),
        ours=lambda: run_quiet([*invites, "migrate"], env=ctx.env(ours_url)),
        baseline=lambda: run_quiet(
            [*psql_command(), base_url, *[a for f in files for a in ("-f", f)]]
        ),
        notes=["ours also takes the advisory lock, verifies checksums and records each file"],
    )


def issuing(ctx: Context, name: str, url: str, reset: str, label: str, note: str) -> Workload:
    """`invites generate --output` of `--size` new people into `url`, against psql \\copy of the
    same rows (codes precomputed). `reset` is the SQL that removes them before each round."""
    invites = invites_command()
    size = ctx.size
    recipients = ctx.workdir / f"{name}.csv"
    recipients.write_text("email\n" + "".join(f"{name}{i}@example.com\n" for i in range(size)))
    precomputed = ctx.workdir / f"{name}-precomputed.csv"
    precomputed.write_text(
        "".join(f"{new_code()},{name}{i}@example.com,bench\n" for i in range(size))
    )

    def prepare() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(reset)
            conn.execute("VACUUM ANALYZE public.beta_invites")

    output = str(ctx.workdir / f"{name}-issued.csv")

    def all_issued() -> None:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM public.beta_invites WHERE cohort = 'bench'"
            ).fetchone()
        if row is None or row[0] != size:
            raise RuntimeError(f"{name}: {row[0] if row else 0} of {size:,} invites were issued")

    return Workload(
        name=name,
        ours_label=f"invites generate --output codes.csv ({size:,} from CSV{label})",
        baseline_label=f"psql \\copy of the same rows{label} (codes precomputed)",
        prepare_ours=prepare,
        prepare_baseline=prepare,
        ours=lambda: run_quiet(
            [
                *invites,
                "generate",
                "--cohort",
                "bench",
                "--recipients",
                str(recipients),
                "--output",
                output,
            ],
            env=ctx.env(url),
        ),
        baseline=lambda: run_quiet(
            [
                *psql_command(),
                url,
                "-c",
                f"\\copy public.beta_invites (code, email, cohort) FROM '{precomputed}' CSV",
            ]
        ),
        target="<= 1.3",
        notes=[note],
        verify_ours=all_issued,
        verify_baseline=all_issued,
    )


def generate(ctx: Context) -> Workload:
    return issuing(
        ctx,
        "generate",
        ctx.fresh_database("bench_generate"),
        "TRUNCATE public.beta_invites",
        "",
        "ours also validates and normalises every address and skips people already invited",
    )


def generate_into_big(ctx: Context) -> Workload:
    """Into a table that already holds `--big` invites: the "already invited" check reads the
    existing table, so its cost follows the table, not the input."""
    return issuing(
        ctx,
        "generate-into-big",
        big.clone(ctx, "bench_generate_big"),
        "DELETE FROM public.beta_invites WHERE cohort = 'bench'",
        f", into {ctx.big:,} invites",
        "ours also reads the existing table to skip people already invited",
    )


def send(ctx: Context) -> Workload:
    """`invites send` of 5,000 messages against a plain smtplib loop over one connection."""
    from tests.smtp import SmtpServer

    invites = invites_command()
    count = min(ctx.size, 5_000)
    url = ctx.fresh_database("bench_send")
    server = SmtpServer()
    server.__enter__()
    sender = "Beta <beta@example.com>"
    with psycopg.connect(url, autocommit=True) as conn:
        addresses = [("--email", f"person{i}@example.com") for i in range(count)]
        request = prepare("bench", [], addresses, expires_in=None, sent_by=None, skip_invalid=False)
        with issue(conn, request) as issued:
            assert issued.created == count
        rows = conn.execute(
            "SELECT id, code, email, cohort, expires_at FROM public.beta_invites ORDER BY created_at"
        ).fetchall()
    head = Letterhead(sender, None, None, load_template(None, signup_url=None))
    rendered = [("beta@example.com", row[2], compose(head, Pending(*row)).data) for row in rows]
    messages = ctx.workdir / "messages.pickle"
    messages.write_bytes(pickle.dumps(rendered))

    def unsend() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE public.beta_invites SET sent_at = NULL")
            conn.execute("VACUUM ANALYZE public.beta_invites")
        server.recorder.raw.clear()

    def all_delivered() -> None:
        if len(server.recorder.raw) != count:
            raise RuntimeError(f"send: {len(server.recorder.raw)} of {count} messages arrived")
        server.recorder.raw.clear()

    return Workload(
        name="send",
        ours_label=f"invites send ({count:,} messages, sent_at committed per message)",
        baseline_label="smtplib loop, one connection, pre-rendered messages",
        prepare_ours=unsend,
        ours=lambda: run_quiet(
            [*invites, "send", "--cohort", "bench"],
            env=ctx.env(url, SMTP_URL=server.url, INVITES_FROM=sender),
        ),
        baseline=lambda: run_quiet(
            [
                sys.executable,
                str(Path(__file__).with_name("smtplib_baseline.py")),
                "127.0.0.1",
                str(server.port),
                str(messages),
            ]
        ),
        target="<= 1.25 (throughput >= 0.8)",
        notes=["both talk to the same in-process aiosmtpd server; ours renders each message too"],
        prepare_baseline=lambda: server.recorder.raw.clear(),
        verify_ours=all_delivered,
        verify_baseline=all_delivered,
    )


ALL = {
    "startup": startup,
    "migrate": migrate,
    "generate": generate,
    "generate-into-big": generate_into_big,
    "send": send,
    "expire": big.expire,
    "redeem-throughput": big.redeem_throughput,
    "redeem-process": big.redeem_process,
    "show-process": big.show_process,
    "report": big.report,
    "list-csv": big.list_export,
    "list-json": big.list_json,
    "list-jsonl": big.list_jsonl,
}
