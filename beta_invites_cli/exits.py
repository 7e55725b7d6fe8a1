"""The exit statuses of `invites`, one table for the code and the README alike."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success (also: skipped, bounced or uncertain messages, nothing to do)
    ERROR = 1  # bad input, unreachable server, a refused code, a message to retry, auto-pause
    USAGE = 2  # usage error: unknown option, bad option value, missing argument
    PENDING = 3  # `migrate --status --exit-code`: migrations are pending
    INTERRUPTED = 130  # Ctrl-C (`send` stops after the current message)
