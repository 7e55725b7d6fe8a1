"""`python -m bench [--size N] [--big N] [--rounds R] [--only NAME ...] [--write-results]`.

Needs the development extra (`pip install -e '.[dev]'`): it starts its own PostgreSQL server
with the test suite's harness, and a real SMTP server (aiosmtpd). Everything it writes lives in
one /tmp/invites-bench-* directory, removed at the end, also on Ctrl-C or SIGTERM (a run killed
outright is cleaned up by the next one).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `python bench/run.py` from the repository root
    sys.path.insert(0, str(HERE.parent))

from bench.harness import Context, Outcome, measure, report  # noqa: E402
from bench.workloads import ALL  # noqa: E402

NEEDS = ("testing.postgresql", "aiosmtpd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--size",
        type=int,
        default=100_000,
        help="recipients for generate (send uses at most 5,000)",
    )
    parser.add_argument(
        "--big",
        type=int,
        default=1_000_000,
        help="invites in the table for expire, redeem, report, list",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(ALL), help="run only these workloads")
    parser.add_argument(
        "--write-results",
        nargs="?",
        type=Path,
        const=HERE / "RESULTS.md",
        default=None,
        metavar="FILE",
        help="also write the table to FILE (default bench/RESULTS.md); otherwise only print it",
    )
    args = parser.parse_args()
    missing = [name for name in NEEDS if importlib.util.find_spec(name.split(".")[0]) is None]
    if missing:
        parser.exit(
            1,
            f"bench needs the development extra ({', '.join(missing)}): pip install -e '.[dev]'\n",
        )

    from tests import scratch
    from tests.pgharness import start_server

    workdir = scratch.create(prefix="invites-bench-")
    scratch.terminate_gracefully()
    try:
        server = start_server(workdir, fsync=True)
        try:
            ctx = Context(server.url(), args.size, args.rounds, workdir, big=args.big)
            outcomes: list[Outcome] = []
            for name in args.only or list(ALL):
                print(f"{name} ...", file=sys.stderr, flush=True)
                outcome = measure(ALL[name](ctx), args.rounds)
                outcomes.append(outcome)
                print(
                    f"{name}: ours {outcome.ours:.3f}s, baseline {outcome.baseline:.3f}s, "
                    f"ratio {outcome.ratio:.2f} (load {outcome.load:.1f})",
                    file=sys.stderr,
                    flush=True,
                )
            text = report(outcomes, ctx)
            print(text)
            if args.write_results is not None:
                args.write_results.write_text(text)
        finally:
            server.stop()
    finally:
        scratch.remove(workdir)


if __name__ == "__main__":
    main()
