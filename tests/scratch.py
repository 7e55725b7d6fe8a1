"""One scratch directory per test session under /tmp, removed at the end, also when interrupted.

Everything the suite writes (the PostgreSQL server's data, PgBouncer's files, pytest's own
tmp_path directories, embedded clusters) lives in /tmp/invites-test-<pid>-*/. Ctrl-C and SIGTERM
end the session through its normal teardown; a session killed outright (SIGKILL) leaves its
directory and servers behind, and the next session stops those servers and removes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

PREFIX = "invites-test-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_servers(directory: Path) -> None:
    """Stop any postmaster or pgbouncer whose pid file lies under `directory`."""
    for pidfile in [*directory.rglob("postmaster.pid"), *directory.rglob("pgbouncer.pid")]:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().split("\n", 1)[0].strip())
            if pid > 1:
                os.kill(pid, signal.SIGQUIT if pidfile.name == "postmaster.pid" else signal.SIGTERM)


def sweep_stale(prefix: str = PREFIX) -> None:
    """Remove the directories of sessions that died without cleaning up."""
    for directory in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        owner = directory.name[len(prefix) :].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid() or _alive(int(owner)):
            continue
        stop_servers(directory)
        shutil.rmtree(directory, ignore_errors=True)


def create(prefix: str = PREFIX) -> Path:
    sweep_stale(prefix)
    directory = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    directory.chmod(0o755)  # as root, the servers run as another account and must enter it
    return directory


def remove(directory: Path) -> None:
    stop_servers(directory)
    shutil.rmtree(directory, ignore_errors=True)


def terminate_gracefully() -> None:
    """SIGTERM unwinds like Ctrl-C, so teardown (and the cleanup) runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
