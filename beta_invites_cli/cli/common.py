"""What every command module shares: the command's context, messages on stderr, failures."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn
from uuid import UUID

import click
import psycopg

from beta_invites_cli import users
from beta_invites_cli.database import Database
from beta_invites_cli.settings import Settings

SHOWN_LINES = 20  # skipped/duplicate/failed lines shown before "... and N more"

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def say(message: str) -> None:
    """A message for the person at the terminal: always stderr, never mixed into data.
    `--quiet` silences these; warnings and errors are always shown."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Something the operator must see even with --quiet."""
    print(message, file=sys.stderr, flush=True)


def report_lines(kind: str, lines: list[str], total: int | None = None) -> None:
    """The first lines of a kind, then how many more there were (`total`, when only the first
    few were kept)."""
    total = len(lines) if total is None else total
    for line in lines[:SHOWN_LINES]:
        say(f"{kind} {line}")
    if total > SHOWN_LINES:
        say(f"... and {total - SHOWN_LINES} more {kind}")


class App:
    """A command's context: the settings, and the database they name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = Database(settings, on_start=say)

    @property
    def embedded(self) -> bool:
        return self.database.embedded


pass_app = click.make_pass_decorator(App)


class Problems(click.ClickException):
    """Several problems, shown one `Error:` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def show(self, file: Any = None) -> None:
        for problem in self.problems:
            click.echo(f"Error: {problem}", err=True)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def check_user(conn: psycopg.Connection[Any], user: UUID | None, option: str) -> None:
    """A user id given with `option` must name a row of public.users."""
    try:
        users.check_user(conn, user)
    except users.UnknownUser as exc:
        fail(f"{option} {exc}")


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when it is a terminal; nothing animated in pipes or cron."""
    if not sys.stderr.isatty() or total == 0 or _quiet:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from beta_invites_cli.cli.render import console

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


@contextmanager
def stop_on_interrupt() -> Iterator[Callable[[], bool]]:
    """Ctrl-C asks the loop to stop after the current message instead of killing it mid-way."""
    import signal

    stopped = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stopped
        stopped = True
        warn("stopping after the current message (Ctrl-C again to abort now)")
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: stopped
    finally:
        signal.signal(signal.SIGINT, previous)
