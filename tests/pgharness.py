"""One PostgreSQL server for the whole test session, started unprivileged when we are root.

initdb and postgres refuse to run as root, so as root they are run through small wrapper
scripts that `setpriv` to the server's account; setpriv execs in place, so testing.postgresql
still signals the real postmaster when it stops it.
"""

from __future__ import annotations

import os
import shlex
import stat
import tempfile
from pathlib import Path
from typing import Any

from beta_invites_cli.embedded import server_account


def _wrapper(directory: Path, program: str, uid: int, gid: int) -> str:
    import testing.postgresql

    real = testing.postgresql.find_program(program, ["bin"])
    script = directory / program
    script.write_text(
        "#!/bin/sh\n"
        f'exec setpriv --reuid={uid} --regid={gid} --clear-groups {shlex.quote(real)} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def start_server() -> Any:
    import testing.postgresql

    account = server_account()
    if account is None:
        return testing.postgresql.Postgresql()

    base = Path(tempfile.mkdtemp(prefix="invites-test-pg-"))
    base.chmod(0o755)
    wrappers = Path(tempfile.mkdtemp(prefix="invites-test-bin-"))
    wrappers.chmod(0o755)
    uid, gid = account.pw_uid, account.pw_gid

    class UnprivilegedPostgresql(testing.postgresql.Postgresql):  # type: ignore[misc]
        def initialize_database(self) -> None:
            for path in (base, base / "data", base / "tmp"):
                path.mkdir(exist_ok=True)
                os.chown(path, uid, gid)
                path.chmod(stat.S_IRWXU | (0o055 if path == base else 0))
            super().initialize_database()

    return UnprivilegedPostgresql(
        base_dir=str(base),
        initdb=_wrapper(wrappers, "initdb", uid, gid),
        postgres=_wrapper(wrappers, "postgres", uid, gid),
    )
