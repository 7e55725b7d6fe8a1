"""The workloads: each pairs one of our commands with the best baseline on the same data."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench import big, seats
from bench.harness import Context, Workload, invites_command, psql_command, run_quiet
from beta_invites_cli import migrations
from beta_invites_cli.codes import new_code
from beta_invites_cli.delivery.channel import Letterhead
from beta_invites_cli.delivery.selection import Pending, compose
from beta_invites_cli.intake import prepare
from beta_invites_cli.issuing import issue
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


# Between rounds: the invites, and what the history triggers wrote about them (both commands
# write their history: \copy fires the triggers too).
EMPTY = "TRUNCATE public.beta_invites, public.beta_invites_reminders, public.beta_invites_events"


def generate(ctx: Context) -> Workload:
    return issuing(
        ctx,
        "generate",
        ctx.fresh_database("bench_generate"),
        EMPTY,
        "",
        "ours also validates and normalises every address and skips people already invited; "
        "both write the history (the trigger fires for \\copy too)",
    )


HISTORY_TRIGGER = "ALTER TABLE public.beta_invites {} TRIGGER beta_invites_history_insert"


def history_overhead(ctx: Context) -> Workload:
    """What the history adds to bulk issuing: the same `invites generate` with the history
    trigger on (ours) and off (baseline)."""
    url = ctx.fresh_database("bench_history")
    issued = issuing(ctx, "history-overhead", url, EMPTY, "", "")

    def switch(state: str) -> Callable[[], None]:
        def prepare() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(HISTORY_TRIGGER.format(state))
            issued.prepare_ours()

        return prepare

    return Workload(
        name="history-overhead",
        ours_label=f"invites generate ({ctx.size:,}) with the history trigger",
        baseline_label="the same command with the history trigger disabled",
        prepare_ours=switch("ENABLE"),
        prepare_baseline=switch("DISABLE"),
        ours=issued.ours,
        baseline=issued.ours,
        verify_ours=issued.verify_ours,
        verify_baseline=issued.verify_ours,
        target="<= 1.15",
        notes=["one set-based INSERT of the events per statement (a statement-level trigger)"],
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


class _Mailing:
    """A cohort of `count` issued invites, a real SMTP server answering the end of DATA after
    `delay` seconds, and the same messages pre-rendered for the smtplib baseline."""

    def __init__(self, ctx: Context, name: str, count: int, delay: float) -> None:
        from tests.smtp import Behaviour, SmtpServer

        self.ctx, self.count = ctx, count
        self.url = ctx.fresh_database(f"bench_{name.replace('-', '_')}")
        self.server = SmtpServer(Behaviour(delay=delay))
        self.server.__enter__()
        self.sender = "Beta <beta@example.com>"
        with psycopg.connect(self.url, autocommit=True) as conn:
            addresses = [("--email", f"person{i}@example.com") for i in range(count)]
            request = prepare(
                "bench", [], addresses, expires_in=None, sent_by=None, skip_invalid=False
            )
            with issue(conn, request) as issued:
                assert issued.created == count
            rows = conn.execute(
                "SELECT id, code, email, cohort, expires_at FROM public.beta_invites"
                " ORDER BY created_at"
            ).fetchall()
        head = Letterhead(self.sender, None, None, load_template(None, signup_url=None))
        rendered = [("beta@example.com", r[2], compose(head, Pending(*r)).data) for r in rows]
        self.messages = ctx.workdir / f"{name}-messages.pickle"
        self.messages.write_bytes(pickle.dumps(rendered))

    def unsend(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("UPDATE public.beta_invites SET sent_at = NULL, message_id = NULL")
            conn.execute("VACUUM ANALYZE public.beta_invites")
        self.server.recorder.raw.clear()

    def all_delivered(self) -> None:
        arrived = len(self.server.recorder.raw)
        if arrived != self.count:
            raise RuntimeError(f"send: {arrived} of {self.count} messages arrived")
        self.server.recorder.raw.clear()

    def ours(self, connections: int, **settings: str) -> Callable[[], None]:
        env = self.ctx.env(self.url, SMTP_URL=self.server.url, INVITES_FROM=self.sender, **settings)
        command = [*invites_command(), "send", "--cohort", "bench"]
        return lambda: run_quiet([*command, "--connections", str(connections)], env=env)

    def smtplib(self, connections: int) -> Callable[[], None]:
        script = str(Path(__file__).with_name("smtplib_baseline.py"))
        port = str(self.server.port)
        command = [sys.executable, script, "127.0.0.1", port, str(self.messages), str(connections)]
        return lambda: run_quiet(command)


def send(ctx: Context) -> Workload:
    """`invites send` of 5,000 messages to a server that answers at once, on one connection
    each: CPU-bound, so it shows our per-message cost."""
    mailing = _Mailing(ctx, "send", min(ctx.size, 5_000), 0.0)
    return Workload(
        name="send",
        ours_label=f"invites send --connections 1 ({mailing.count:,} messages, zero latency)",
        baseline_label="smtplib loop, one connection, pre-rendered messages",
        prepare_ours=mailing.unsend,
        prepare_baseline=mailing.unsend,
        ours=mailing.ours(1),
        baseline=mailing.smtplib(1),
        verify_ours=mailing.all_delivered,
        verify_baseline=mailing.all_delivered,
        target="<= 1.5",
        notes=[
            "ours renders each message (text and HTML) and commits sent_at per message "
            "(fsync on); the baseline commits nothing"
        ],
    )


def send_relay(ctx: Context, connections: int) -> Workload:
    """2,000 messages to a relay that takes 25 ms to answer the end of DATA."""
    mailing = _Mailing(ctx, f"send-relay-{connections}", 2_000, 0.025)
    target = "<= 1.15" if connections == 1 else "<= 1.2"
    return Workload(
        name=f"send-relay-{connections}",
        ours_label=f"invites send --connections {connections} (2,000 messages, 25 ms relay)",
        baseline_label=f"smtplib, {connections} connection(s) in as many threads, pre-rendered",
        prepare_ours=mailing.unsend,
        prepare_baseline=mailing.unsend,
        ours=mailing.ours(connections),
        baseline=mailing.smtplib(connections),
        verify_ours=mailing.all_delivered,
        verify_baseline=mailing.all_delivered,
        target=target,
        notes=["ours commits sent_at per message (fsync on); the baseline commits nothing"],
    )


def send_relay_dkim(ctx: Context) -> Workload:
    """send-relay-4 with every message DKIM-signed (RSA 2048) against the same unsigned."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    mailing = _Mailing(ctx, "send-relay-dkim", 2_000, 0.025)
    key = ctx.workdir / "dkim.pem"
    key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    def all_signed() -> None:
        unsigned = sum(
            not raw.startswith(b"DKIM-Signature:") for raw in mailing.server.recorder.raw
        )
        if unsigned:
            raise RuntimeError(f"send-relay-dkim: {unsigned} messages arrived unsigned")
        mailing.all_delivered()

    return Workload(
        name="send-relay-dkim",
        ours_label="invites send --connections 4, DKIM-signed (RSA 2048; 2,000 messages, 25 ms)",
        baseline_label="the same send without DKIM",
        prepare_ours=mailing.unsend,
        prepare_baseline=mailing.unsend,
        ours=mailing.ours(4, INVITES_DKIM_KEY_FILE=str(key), INVITES_DKIM_SELECTOR="s1"),
        baseline=mailing.ours(4),
        verify_ours=all_signed,
        verify_baseline=mailing.all_delivered,
        target="<= 1.1",
        notes=["the cost of signing: both sides are ours, committing sent_at per message"],
    )


def bounces_import(ctx: Context) -> Workload:
    """`invites bounces import` of 10,000 DSN files, against a loop that only parses them."""
    from tests import dsn_samples

    count = 10_000
    url = ctx.fresh_database("bench_bounces")
    folder = ctx.workdir / "bounces"
    folder.mkdir()
    shapes = [dsn_samples.postfix, dsn_samples.exim, dsn_samples.gmail, dsn_samples.exchange]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO public.beta_invites (code, email, cohort, sent_at, message_id)
            SELECT translate(upper(substr(md5(i::text), 1, 16)), '01', 'XY'),
                   'p' || i || '@example.com', 'bench', now(), 'm' || i || '@example.com'
              FROM generate_series(0, %s - 1) AS i
            """,
            (count,),
        )
    for i in range(count):
        shape = shapes[i % len(shapes)]
        (folder / f"{i}.eml").write_bytes(shape(f"p{i}@example.com", f"m{i}@example.com"))

    def reset() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE public.beta_invites SET delivery_outcome = NULL, delivery_class = NULL"
            )
            conn.execute("DELETE FROM public.beta_invites_suppressions")
            conn.execute("DELETE FROM public.beta_invites_refusal_days")

    def all_recorded() -> None:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM public.beta_invites WHERE delivery_outcome IS NOT NULL"
            ).fetchone()
        if row is None or row[0] != count:
            raise RuntimeError(f"bounces-import: {row[0] if row else 0} of {count} recorded")

    parse_only = (
        "import sys, pathlib; from email import policy; from email.parser import BytesParser\n"
        "parser = BytesParser(policy=policy.default)\n"
        "for path in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n"
        "    parser.parsebytes(path.read_bytes())"
    )
    return Workload(
        name="bounces-import",
        ours_label=f"invites bounces import ({count:,} .eml files, 4 shapes)",
        baseline_label="python: parse every file with email's BytesParser, nothing else",
        prepare_ours=reset,
        ours=lambda: run_quiet(
            [*invites_command(), "bounces", "import", str(folder)], env=ctx.env(url)
        ),
        baseline=lambda: run_quiet([sys.executable, "-c", parse_only, str(folder)]),
        verify_ours=all_recorded,
        notes=["ours also reads each report, matches it, records it and suppresses the address"],
    )


ALL = {
    "startup": startup,
    "migrate": migrate,
    "generate": generate,
    "generate-into-big": generate_into_big,
    "history-overhead": history_overhead,
    "send": send,
    "send-relay-1": lambda ctx: send_relay(ctx, 1),
    "send-relay-4": lambda ctx: send_relay(ctx, 4),
    "send-relay-dkim": send_relay_dkim,
    "bounces-import": bounces_import,
    "expire": big.expire,
    "redeem-throughput": big.redeem_throughput,
    "redeem-sql": big.redeem_sql,
    "redeem-process": big.redeem_process,
    "show-process": big.show_process,
    "report": big.report,
    "report-activity": big.report_activity,
    "report-html": big.report_html,
    "list-csv": big.list_export,
    "list-json": big.list_json,
    "list-jsonl": big.list_jsonl,
    **seats.ALL,
}
