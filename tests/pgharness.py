"""One PostgreSQL server (and one PgBouncer in front of it) for the whole test session.

initdb, postgres and pgbouncer refuse to run as root, so as root they are run through small
wrapper scripts that `setpriv` to the server's account; setpriv execs in place, so
testing.postgresql still signals the real postmaster when it stops it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beta_invites_cli.embedded import server_account


def _wrapper(directory: Path, program: str, real: str) -> str:
    account = server_account()
    script = directory / program
    if account is None:
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(real)} "$@"\n')
    else:
        script.write_text(
            "#!/bin/sh\n"
            f"exec setpriv --reuid={account.pw_uid} --regid={account.pw_gid} --clear-groups "
            f'{shlex.quote(real)} "$@"\n'
        )
    script.chmod(0o755)
    return str(script)


def _own(path: Path, mode: int) -> None:
    path.mkdir(exist_ok=True)
    account = server_account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(mode)


def start_server(scratch: Path, *, fsync: bool = False) -> Any:
    """The tests run without fsync (nothing to lose); the benchmarks with it, as production."""
    import testing.postgresql

    base = scratch / "postgresql"
    wrappers = scratch / "bin"
    wrappers.mkdir()
    wrappers.chmod(0o755)

    class ScratchPostgresql(testing.postgresql.Postgresql):  # type: ignore[misc]
        def initialize_database(self) -> None:
            _own(base, 0o755)
            _own(base / "data", 0o700)
            _own(base / "tmp", 0o700)
            super().initialize_database()

    args = "-h 127.0.0.1 -c logging_collector=off" + ("" if fsync else " -F")
    return ScratchPostgresql(
        base_dir=str(base),
        postgres_args=args,
        initdb=_wrapper(wrappers, "initdb", testing.postgresql.find_program("initdb", ["bin"])),
        postgres=_wrapper(
            wrappers, "postgres", testing.postgresql.find_program("postgres", ["bin"])
        ),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode in front of the test server, as many deployments run."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def start_pgbouncer(scratch: Path, server_host: str, server_port: int) -> PgBouncer:
    binary = find_pgbouncer()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
    directory = scratch / "pgbouncer"
    _own(directory, 0o755)
    port = free_port()
    (directory / "users.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server_host} port={server_port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        # Few server connections for many clients: every transaction may land on another one.
        "default_pool_size = 3\n"
        "max_client_conn = 200\n"
        "server_reset_query =\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (directory / name).chmod(0o644)
    wrappers = scratch / "bin"
    process = subprocess.Popen(
        [_wrapper(wrappers, "pgbouncer", binary), str(directory / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return PgBouncer(process, port, directory)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    log = (directory / "pgbouncer.log").read_text(errors="replace")[-2000:]
    process.kill()
    raise RuntimeError(f"pgbouncer did not start: {log}")
