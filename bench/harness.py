"""Timing our commands against the best baseline on the same data, in the same run.

Each workload has a `prepare` step (untimed, run before every round, e.g. resetting the data),
then `ours` and `baseline` are timed alternately for several rounds. The table shows min,
median and max of each over the rounds, the ratio of the medians, and the load average while
it ran: a ratio measured on a busy machine says so.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Context:
    admin_url: str
    size: int
    rounds: int
    workdir: Path
    big: int = 1_000_000

    def fresh_database(self, name: str, *, migrated: bool = True) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.url(name)
        if migrated:
            from beta_invites_cli import migrations

            with psycopg.connect(url, autocommit=True) as conn:
                migrations.migrate(conn, create_users_table=True)
        return url

    def url(self, name: str) -> str:
        params = {k: str(v) for k, v in conninfo_to_dict(self.admin_url).items() if v is not None}
        params["dbname"] = name
        return make_conninfo("", **params)

    def env(self, url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["DATABASE_URL"] = url
        env.update(extra)
        return env


def invites_command() -> list[str]:
    script = shutil.which("invites", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "beta_invites_cli"]


def psql_command() -> list[str]:
    return [shutil.which("psql") or "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]


def run_quiet(
    command: list[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> None:
    result = subprocess.run(
        command,
        env=env,
        input=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {result.stderr.strip()[-500:]}")


Step = Callable[[], object]


@dataclass
class Workload:
    name: str
    ours_label: str
    baseline_label: str
    ours: Step
    baseline: Step
    prepare_ours: Step = field(default=lambda: None)
    prepare_baseline: Step = field(default=lambda: None)
    target: str = ""  # what the issue asks for, e.g. "<= 1.5"
    notes: list[str] = field(default_factory=list)
    # Untimed checks after each round that the step did its whole job: a benchmark that times
    # a command doing nothing must fail, not flatter us.
    verify_ours: Step = field(default=lambda: None)
    verify_baseline: Step = field(default=lambda: None)


@dataclass
class Outcome:
    workload: Workload
    ours_times: list[float]
    baseline_times: list[float]
    load: float  # the 1-minute load average when the workload finished

    @property
    def ours(self) -> float:
        return statistics.median(self.ours_times)

    @property
    def baseline(self) -> float:
        return statistics.median(self.baseline_times)

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")


def spread(times: list[float]) -> str:
    """min / median / max, in seconds."""
    return f"{min(times):.3f} / {statistics.median(times):.3f} / {max(times):.3f}"


def measure(workload: Workload, rounds: int) -> Outcome:
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(rounds):
        for prepare, step, verify, into in (
            (workload.prepare_baseline, workload.baseline, workload.verify_baseline, baseline),
            (workload.prepare_ours, workload.ours, workload.verify_ours, ours),
        ):
            prepare()
            started = time.perf_counter()
            step()
            into.append(time.perf_counter() - started)
            verify()
    return Outcome(workload, ours, baseline, os.getloadavg()[0])


def report(outcomes: list[Outcome], ctx: Context) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Sizes: {ctx.size:,} recipients for generate, {ctx.big:,} invites for expire/redeem/"
        f"report/list; {ctx.rounds} rounds; the server runs with fsync on, as in production. "
        "Times are min / median / max seconds; ratio = median ours / median baseline (lower is "
        "better: 1.3 means ours takes 30% longer; a throughput target of >= X is a time ratio "
        "of <= 1/X). Load is the 1-minute load average as the workload ended (2 cores here).",
        "",
        "| workload | ours | baseline | ours (s) | baseline (s) | ratio | target | load |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for o in outcomes:
        w = o.workload
        lines.append(
            f"| {w.name} | {w.ours_label} | {w.baseline_label} | {spread(o.ours_times)} | "
            f"{spread(o.baseline_times)} | {o.ratio:.2f} | {w.target} | {o.load:.1f} |"
        )
    notes = [f"- {w.name}: {n}" for o in outcomes for w in [o.workload] for n in w.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
