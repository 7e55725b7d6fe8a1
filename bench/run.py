"""`python -m bench [--size N] [--rounds R] [--only NAME ...]`: run the benchmarks."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `python bench/run.py` from the repository root
    sys.path.insert(0, str(HERE.parent))

from bench.harness import Context, Outcome, measure, report  # noqa: E402
from bench.workloads import ALL  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000, help="invites in the synthetic data")
    parser.add_argument(
        "--big", type=int, default=1_000_000, help="invites for expire, report, list"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=sorted(ALL), help="run only these workloads")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()

    from tests.pgharness import start_server

    server = start_server()
    try:
        ctx = Context(
            server.url(), args.size, args.rounds, Path(tempfile.mkdtemp(prefix="invites-bench-"))
        )
        outcomes: list[Outcome] = []
        for name in args.only or list(ALL):
            print(f"{name} ...", file=sys.stderr, flush=True)
            outcome = measure(ALL[name](ctx), args.rounds)
            outcomes.append(outcome)
            print(
                f"{name}: ours {outcome.ours:.3f}s, baseline {outcome.baseline:.3f}s, "
                f"ratio {outcome.ratio:.2f}",
                file=sys.stderr,
                flush=True,
            )
        text = report(outcomes, ctx)
        print(text)
        args.results.write_text(text)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
