"""The exit statuses of `invites`, one table for the code and the README alike."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success (also: skipped recipients, nothing to do, another sweep running)
    ERROR = 1  # bad input, unreachable database or mail server, a refused code, a failed message
    USAGE = 2  # usage error: unknown option, bad option value, missing argument
    PENDING = 3  # `migrate --status --exit-code`: migrations are pending
    INTERRUPTED = 130  # Ctrl-C (`send` stops after the current message)
