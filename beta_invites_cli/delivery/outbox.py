"""Outbox directories: .eml files written instead of emailing, and their cleanup.

Each .eml file holds its recipient's address, so the anonymising sweep must reach them too.
Every outbox `send` writes to is recorded (as an absolute path) in a small file in the tool's
state directory; `invites expire` deletes the messages of the invites it has anonymised from
every recorded outbox on this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beta_invites_cli.delivery.message import Letter
from beta_invites_cli.errors import InvitesError

if TYPE_CHECKING:
    import psycopg

REGISTRY = "outboxes"
BATCH = 1000


class OutboxTransport:
    """Writes each message as an .eml file: nothing is emailed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"the outbox {directory}"

    def connect(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvitesError(
                f"cannot create the outbox {self.directory}: {exc.strerror}"
            ) from None

    def deliver(self, letter: Letter, before_end: Callable[[], None] | None = None) -> None:
        path = self.directory / f"{letter.name}.eml"
        temporary = path.with_suffix(".eml.tmp")
        try:
            temporary.write_bytes(letter.data)
            if before_end is not None:
                before_end()
            temporary.replace(path)  # a reader never sees half a message
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise InvitesError(f"cannot write {path}: {exc.strerror}") from None

    def close(self) -> None:
        pass


def registry_path(environ: Mapping[str, str]) -> Path:
    from beta_invites_cli.embedded import default_home

    return default_home(environ) / REGISTRY


def remember(environ: Mapping[str, str], directory: Path) -> None:
    """Record `directory` as an outbox, once. Best effort: a read-only home only loses this."""
    path = registry_path(environ)
    entry = str(directory.absolute())
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            if entry not in handle.read().splitlines():
                handle.write(entry + "\n")


def known(environ: Mapping[str, str]) -> list[Path]:
    try:
        text = registry_path(environ).read_text(encoding="utf-8")
    except OSError:
        return []
    return [Path(line) for line in text.splitlines() if line.strip()]


@dataclass
class Cleanup:
    """What the sweep did to the outboxes: messages removed, and per directory those it could
    not remove (the reason, once): a cron job running as another user than `send` did."""

    removed: int = 0
    left: dict[Path, tuple[int, str]] = field(default_factory=dict)

    def could_not(self, directory: Path, exc: OSError) -> None:
        count, reason = self.left.get(directory, (0, exc.strerror or str(exc)))
        self.left[directory] = (count + 1, reason)

    def problems(self) -> list[str]:
        """One line per directory, never an address (the file names are codes)."""
        return [
            f"could not delete {count} outbox message(s) of anonymised invites in {directory} "
            f"({reason}): they still hold the addresses; run `invites expire` as the user that "
            "sent them, or delete them (the next run tries again)"
            for directory, (count, reason) in self.left.items()
        ]


def remove_anonymised(conn: psycopg.Connection[Any], environ: Mapping[str, str]) -> Cleanup:
    """Delete the outbox messages of anonymised invites (and half-written ones)."""
    cleanup = Cleanup()
    for directory in known(environ):
        try:
            with os.scandir(directory) as entries:
                files = [entry.name for entry in entries if entry.name.endswith((".eml", ".tmp"))]
        except FileNotFoundError:
            continue  # an outbox since removed
        except NotADirectoryError:
            continue
        except OSError as exc:
            cleanup.could_not(directory, exc)  # cannot even be listed: count the directory
            continue
        for stray in (name for name in files if name.endswith(".eml.tmp")):
            _unlink(directory / stray, cleanup)
        names = [name[: -len(".eml")] for name in files if name.endswith(".eml")]
        for start in range(0, len(names), BATCH):
            rows = conn.execute(
                """
                SELECT code FROM public.beta_invites
                 WHERE code = ANY(%s) AND anonymized_at IS NOT NULL
                """,
                (names[start : start + BATCH],),
            ).fetchall()
            for (code,) in rows:
                if _unlink(directory / f"{code}.eml", cleanup):
                    cleanup.removed += 1
    return cleanup


def _unlink(path: Path, cleanup: Cleanup) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False  # another sweep took it
    except OSError as exc:
        cleanup.could_not(path.parent, exc)
        return False
    return True
