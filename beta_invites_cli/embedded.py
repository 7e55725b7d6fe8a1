"""The embedded default database: a private PostgreSQL cluster under INVITES_HOME.

Created and started on first use and left running for the next command. The server listens on
a Unix socket inside a directory only its owner can enter, never on TCP, so trust
authentication is safe. PostgreSQL refuses to run as root, so as root the cluster belongs to an
unprivileged system user (`postgres` when it exists).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from beta_invites_cli.database import Target
from beta_invites_cli.errors import InvitesError

DATABASE = "invites"
ROLE = "invites"
FALLBACK_SYSTEM_USER = "beta-invites"
SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"
INSTALL_HINT = (
    "no PostgreSQL server binaries found for the embedded database: "
    "`pip install pgserver` (Python 3.11 or 3.12) or `apt-get install postgresql`, "
    "or set DATABASE_URL to use an existing server"
)


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("INVITES_HOME"):
        return Path(environ["INVITES_HOME"]).expanduser().absolute()
    if os.geteuid() == 0:
        # root's home is usually closed to the unprivileged user the server runs as.
        return Path("/var/lib/beta-invites")
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "beta-invites"


def server_account() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root; None means ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SYSTEM_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_SYSTEM_USER,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(FALLBACK_SYSTEM_USER)


def candidate_binary_dirs() -> Iterator[Path]:
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        yield Path(spec.origin).parent / "pginstall" / "bin"
    initdb = shutil.which("initdb")
    if initdb is not None:
        yield Path(initdb).resolve().parent

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)


def major_version(directory: Path) -> str | None:
    """The major version of the PostgreSQL binaries in `directory` ("15"), from pg_ctl."""
    try:
        output = subprocess.run(
            [str(directory / "pg_ctl"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except OSError:
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", output)
    return match.group(1) if match else None


def find_binaries(major: str | None = None) -> Path:
    """The first complete set of binaries; of major version `major` when given."""
    others = []
    for directory in candidate_binary_dirs():
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            if major is None:
                return directory
            version = major_version(directory)
            if version == major:
                return directory
            others.append(f"{version} in {directory}")
    if major is not None:
        found = f" (found only {'; '.join(others)})" if others else ""
        raise InvitesError(
            f"the embedded database was created by PostgreSQL {major}, whose binaries are gone"
            f"{found}: reinstall them (`pip install pgserver` or `apt-get install "
            f"postgresql-{major}`), or set DATABASE_URL"
        )
    raise InvitesError(INSTALL_HINT)


def reachable_by(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether `account` can enter every directory above `path` (by its world or owner bits)."""
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        mode = parent.stat()
        if mode.st_uid == account.pw_uid:
            if not mode.st_mode & stat.S_IXUSR:
                return False
        elif not mode.st_mode & stat.S_IXOTH:
            return False
    return True


@dataclass
class ClusterStatus:
    home: Path
    initialised: bool
    running: bool
    pid: int | None
    binaries: Path | None
    version: str | None


class EmbeddedCluster:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.datadir = home / "pgdata"
        self.logfile = self.datadir / "server.log"
        self.account = server_account()

    @property
    def socket_dir(self) -> Path:
        if len(str(self.datadir)) + len("/.s.PGSQL.5432") <= SOCKET_PATH_LIMIT:
            return self.datadir
        digest = hashlib.sha256(str(self.datadir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"beta-invites-{digest}"

    def target(self) -> Target:
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(host=str(self.socket_dir), port=5432, dbname=DATABASE, user=ROLE)
        return Target(
            conninfo=conninfo,
            overrides={},
            label=f"the embedded database in {self.home}",
        )

    # -- the server's own programs, run as the server's account ------------------------------

    def _run(self, binaries: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        # Output goes to files, not pipes: the postmaster that pg_ctl starts would hold a pipe
        # open and make us wait for it forever.
        with tempfile.TemporaryFile("w+") as out:
            account = self.account
            result = subprocess.run(
                [str(binaries / tool), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                text=True,
                check=False,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
            )
            out.seek(0)
            return subprocess.CompletedProcess(result.args, result.returncode, out.read(), "")

    def _chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            handle = open(self.home / ".lock", "a")  # noqa: SIM115 - closed below
        except OSError as exc:
            reason = "not a directory" if self.home.exists() else exc.strerror
            raise InvitesError(
                f"the embedded database cannot live in {self.home} ({reason}): set "
                "INVITES_HOME to a directory of yours, or DATABASE_URL to use a server"
            ) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def binaries(self) -> Path:
        """The binaries this cluster was created with, else the best ones on the machine.

        The recorded ones may be gone (the virtualenv that installed pgserver was deleted):
        then binaries of the cluster's major version are found again and recorded instead.
        """
        recorded = self.home / "binaries"
        if recorded.is_file():
            path = Path(recorded.read_text().strip())
            if (path / "pg_ctl").is_file():
                return path
        version_file = self.datadir / "PG_VERSION"
        wanted = version_file.read_text().strip() if version_file.is_file() else None
        found = find_binaries(wanted)
        if self.account is not None and not reachable_by(found, self.account):
            found = self._copy_binaries(found)
        if wanted is not None:
            recorded.write_text(f"{found}\n")
        return found

    def _copy_binaries(self, found: Path) -> Path:
        # A wheel installed under /root cannot be executed by the server's account: keep a
        # copy of the bundled installation beside the cluster, in the same layout, because
        # the binaries find their shared libraries relative to themselves
        # (site-packages/pgserver/pginstall/bin -> site-packages/pgserver.libs).
        install = found.parent
        package = install.parent
        copy_root = self.home / "pgserver-copy"
        copied_bin = copy_root / package.name / install.name / found.name
        if not (copied_bin / "pg_ctl").is_file():
            shutil.copytree(
                install, copy_root / package.name / install.name, symlinks=True, dirs_exist_ok=True
            )
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, copy_root / libs.name, symlinks=True, dirs_exist_ok=True)
        return copied_bin

    # -- lifecycle ------------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        initialised = (self.datadir / "PG_VERSION").is_file()
        version = (self.datadir / "PG_VERSION").read_text().strip() if initialised else None
        binaries = self.binaries() if initialised else None
        pid = self._running_pid(binaries) if binaries else None
        return ClusterStatus(self.home, initialised, pid is not None, pid, binaries, version)

    def _running_pid(self, binaries: Path) -> int | None:
        result = self._run(binaries, "pg_ctl", "status", "-D", str(self.datadir))
        if result.returncode != 0:
            return None
        match = re.search(r"PID: (\d+)", result.stdout)
        return int(match.group(1)) if match else None

    def ensure_running(self, *, create: bool = True) -> tuple[Target, str | None]:
        """The running cluster, and what it took: "Created", "Started" or None (it was up).
        With `create` False, a cluster that does not exist yet is an error."""
        if self._looks_running():
            return self.target(), None
        done = None
        with self._lock():
            if not create and not (self.datadir / "PG_VERSION").is_file():
                raise InvitesError(
                    f"no database: DATABASE_URL is not set and there is no embedded database in "
                    f"{self.home} (a cron job must `cd` to the directory of its .env, or set "
                    "DATABASE_URL); nothing was created"
                )
            binaries = self.binaries()
            if not (self.datadir / "PG_VERSION").is_file():
                self._initialise(binaries)
                done = "Created"
            if self._running_pid(binaries) is None:
                self._start(binaries)
                done = done or "Started"
            if not (self.home / "ready").is_file():
                self._create_database()
                (self.home / "ready").write_text("")
        return self.target(), done

    def _looks_running(self) -> bool:
        """Cheap check for the common case: a live postmaster and its socket, no subprocess."""
        if not (self.home / "ready").is_file() or not (self.socket_dir / ".s.PGSQL.5432").exists():
            return False
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def _initialise(self, binaries: Path) -> None:
        if self.account is not None and not reachable_by(self.home, self.account):
            raise InvitesError(
                f"the embedded PostgreSQL server runs as user {self.account.pw_name!r}, which cannot "
                f"enter {self.home}: set INVITES_HOME to a directory it can reach "
                "(for example /var/lib/beta-invites)"
            )
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise InvitesError(
                f"{self.datadir} exists but is not a PostgreSQL cluster: move it away"
            )
        self.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._chown(self.datadir)
        result = self._run(
            binaries,
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        )
        if result.returncode != 0:
            raise InvitesError(f"initdb failed: {result.stdout.strip().splitlines()[-1:]}")
        socket_dir = self.socket_dir
        if socket_dir != self.datadir:
            socket_dir.mkdir(mode=0o700, exist_ok=True)
            self._chown(socket_dir)
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# beta-invites embedded database: Unix socket only, in a private directory.\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{socket_dir}'\n"
            )
        (self.home / "binaries").write_text(f"{binaries}\n")

    def _start(self, binaries: Path) -> None:
        socket_dir = self.socket_dir
        if not socket_dir.exists():  # a temporary directory may have been cleaned away
            socket_dir.mkdir(mode=0o700)
            self._chown(socket_dir)
        result = self._run(
            binaries,
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
        )
        if result.returncode != 0:
            tail = (
                self.logfile.read_text(errors="replace").strip().splitlines()[-3:]
                if self.logfile.exists()
                else []
            )
            detail = " / ".join(tail) or result.stdout.strip()
            raise InvitesError(f"the embedded database in {self.home} did not start: {detail}")

    def _create_database(self) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(host=str(self.socket_dir), port=5432, dbname="postgres", user=ROLE)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        with self._lock():
            status = self.status()
            if not status.running or status.binaries is None:
                return False
            result = self._run(
                status.binaries, "pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.datadir)
            )
            if result.returncode != 0:
                raise InvitesError(f"could not stop the embedded database: {result.stdout.strip()}")
            return True
