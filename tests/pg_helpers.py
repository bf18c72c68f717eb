"""A throwaway PostgreSQL server for tests: `initdb` and `pg_ctl` in a temporary folder, on a
free loopback port, stopped and deleted at the end of the session whatever happened.

The binaries come from /usr/lib/postgresql/<major>/bin (Debian's layout, newest major first)
or PATH (scripts/setup-system.sh installs Debian's `postgresql`). initdb refuses to run as
root, so when the tests run as root the server runs as the unprivileged `nobody` (through
`setpriv`, in a folder given to it); as any other user it runs as that user.

The server asks for a password over TCP (scram-sha-256), as a production one would: the
password is generated, given to initdb in a file, and reaches clients only through a libpq
password file (`passfile` in the DSN, or PGPASSFILE), never a command line. Each test gets a
schema of its own (`PgServer.schema`), or a database (`PgServer.database`).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from consortia.identity.addresses import free_ports

SUPERUSER = "postgres"
START_TIMEOUT_S = 60
UNPRIVILEGED_USER = "nobody"


def postgres_bin() -> Path:
    """The folder holding initdb and pg_ctl: Debian's newest major, else PATH's."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
        reverse=True,
    )
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise RuntimeError("PostgreSQL is not installed (run scripts/setup-system.sh as root)")
    return Path(on_path).parent


def free_port() -> int:
    """A port for a process to bind later, drawn where no ephemeral port is handed out."""
    return free_ports(1)[0]


@dataclass
class PgServer:
    root: Path
    port: int
    passfile: Path

    def dsn(self, dbname: str = "postgres") -> str:
        """A DSN without a password: libpq finds it in the password file."""
        return (
            f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname} "
            f"passfile={self.passfile}"
        )

    def env(self) -> dict[str, str]:
        """An environment for a child process that connects with `without_passfile(dsn)`:
        libpq reads the password file named by PGPASSFILE."""
        return {**os.environ, "PGPASSFILE": str(self.passfile)}

    def without_passfile(self, dsn: str) -> str:
        return dsn.replace(f" passfile={self.passfile}", "")

    def database(self, name: str) -> str:
        """A new, empty database `name` (dropped first if a test made it before); its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def schema(self, name: str) -> str:
        """A new, empty schema `name` in the database `postgres` (dropped first if a test
        made it before); a DSN whose search path starts there (much quicker to make than a
        database: what each test gets)."""
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            admin.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.dsn()} options=-csearch_path={name}"


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    user = pwd.getpwnam(UNPRIVILEGED_USER)
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) runs the server as nobody"
    return [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--",
        *argv,
    ]


def _give(path: Path) -> None:
    """Hand `path` to the server's user (when the tests run as root)."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


@contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PgServer]:
    """A running server, stopped (immediately: it holds nothing worth keeping) and deleted
    on the way out, even when starting it failed half way. Not `durable` (tests): commits
    are not flushed to disk (fsync, synchronous_commit and full-page writes off)."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="consortia-pg-"))
    data, sockets = root / "data", root / "sockets"
    started = False

    def stop() -> None:
        nonlocal started
        if started:
            subprocess.run(
                _as_server_user(
                    [str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"]
                ),
                capture_output=True,
                check=False,
                timeout=START_TIMEOUT_S,
            )
            started = False
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)  # a session interrupted before the fixture's teardown
    try:
        root.chmod(0o700)
        _give(root)
        sockets.mkdir()
        _give(sockets)
        password = secrets.token_hex(16)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        _give(pwfile)
        subprocess.run(
            _as_server_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            check=True,
            timeout=START_TIMEOUT_S,
        )
        pwfile.unlink()
        port = 0
        for _ in range(3):  # a port taken between choosing and binding: try another
            port = free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c max_connections=40"
            if not durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            result = subprocess.run(
                _as_server_user(
                    [
                        str(bin_dir / "pg_ctl"),
                        "start",
                        "-D",
                        str(data),
                        "-l",
                        str(root / "server.log"),
                        "-w",
                        "-t",
                        str(START_TIMEOUT_S),
                        "-o",
                        options,
                    ]
                ),
                capture_output=True,
                check=False,
                timeout=START_TIMEOUT_S + 10,
            )
            if result.returncode == 0:
                started = True
                break
        if not started:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {log[-2000:]}")
        passfile = root / "pgpass"  # the client's (this process's user): mode 0600
        passfile.write_text(f"127.0.0.1:{port}:*:{SUPERUSER}:{password}\n")
        passfile.chmod(0o600)
        yield PgServer(root, port, passfile)
    finally:
        with suppress(Exception):
            stop()
        atexit.unregister(stop)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway server for the session (each xdist worker starts its own)."""
    with postgres_server() as server:
        yield server
