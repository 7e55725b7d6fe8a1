"""The `invites` program's entry point: nothing but the guard around start-up.

Ctrl-C while Python is still importing the command line must not print a traceback, so the
imports happen inside the guard.
"""

from __future__ import annotations

import sys
from typing import Any

# A Ctrl-C that lands while Python runs a finaliser (the import system's lock callbacks, a
# weakref) cannot be raised there: Python prints it as "Exception ignored ... Traceback" and
# goes on. It is kept here instead, and the program ends as interrupted.
swallowed: list[BaseException] = []


def _unraisable(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        swallowed.append(unraisable.exc_value)
        return
    sys.__unraisablehook__(unraisable)


def main() -> None:
    sys.unraisablehook = _unraisable
    try:
        from beta_invites_cli.cli import main as run

        run()
    except KeyboardInterrupt:
        interrupted()
    except SystemExit as exc:
        if swallowed and not exc.code:
            interrupted()
        raise


def interrupted() -> None:
    sys.stderr.write("\ninterrupted\n")
    sys.exit(130)
