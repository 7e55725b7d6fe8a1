"""The `invites` program's entry point: nothing but the guard around start-up.

Ctrl-C while Python is still importing the command line must not print a traceback, so the
imports happen inside the guard.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from beta_invites_cli.cli import main as run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        sys.exit(130)
