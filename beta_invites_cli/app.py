"""What every command shares: settings, the database it talks to, and messages on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beta_invites_cli.settings import Settings
from beta_invites_cli.target import Target, resolve

if TYPE_CHECKING:
    import psycopg


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


@dataclass
class App:
    settings: Settings
    _target: Target | None = field(default=None, init=False)

    @property
    def embedded(self) -> bool:
        return self.settings.uses_embedded_database

    def target(self) -> Target:
        if self._target is None:
            if self.embedded:
                from beta_invites_cli.embedded import EmbeddedCluster, default_home

                cluster = EmbeddedCluster(default_home(self.settings.values))
                self._target, started = cluster.ensure_running()
                # Said only when something happened, so cron jobs stay silent.
                if started:
                    say(
                        f"{started} the embedded database in {cluster.home} "
                        "(set DATABASE_URL to use another; `invites db stop` stops it)."
                    )
            else:
                self._target = resolve(self.settings)
        return self._target

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        from beta_invites_cli.db import connect

        conn = connect(self.target(), autocommit=autocommit)
        try:
            yield conn
        finally:
            conn.close()
