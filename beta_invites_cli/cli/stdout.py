"""Standard output that cannot take what is written: a full disk, a file too large, a failing
device. One line says so instead of a traceback (a closed pipe, as in `| head`, is click's:
exit 1 without a word)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def unwritable(exc: OSError) -> bool:
    """Whether `exc` is standard output failing: our own files name themselves."""
    return exc.filename is None and exc.errno in UNWRITABLE


def discard() -> None:
    """Nothing more can reach standard output: Python's own flush at exit must not fail again
    over what is still buffered."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextmanager
def written_after_commit(done: str, hint: str = "") -> Iterator[None]:
    """Output printed once a change is committed: when it cannot be written, the error says
    the change was made (`done`, as "3 invite(s) were revoked")."""
    try:
        yield
    except OSError as exc:
        if not unwritable(exc):
            raise
        discard()
        raise click.ClickException(
            f"{done}, but the output could not be written ({exc.strerror}){hint}"
        ) from None
