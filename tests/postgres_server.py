"""A real PostgreSQL server for tests: `initdb` in a temporary folder, `pg_ctl start`, stop at end.

Use the session-scoped fixture `postgres_server` (registered in tests/conftest.py). It returns a
`PostgresServer` whose `create_database(name)` makes a fresh database and returns its DSN
(`postgresql://USER@127.0.0.1:PORT/NAME`, no password: connections from 127.0.0.1 are trusted).

Roles that are members of `PASSWORD_GROUP` must log in with a password over TCP (scram-sha-256),
so a test can check what happens with wrong credentials.

The binaries come from PATH or `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package); only
when none is found are the tests skipped. initdb refuses to run as root: as root the server runs as
`SERVER_OS_USER` (via `runuser`), with its data folder in a temporary folder owned by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "notalone"
SERVER_OS_USER = "nobody"  # who runs initdb/postgres when the tests run as root
PASSWORD_GROUP = "password_login"
START_TIMEOUT_S = 60
BINARIES = ("initdb", "pg_ctl")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    socket_dir: Path

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` (dropping an earlier one of that name) and return its DSN."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            con.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH first, then the newest Debian install."""
    on_path = [shutil.which(b) for b in BINARIES]
    if all(on_path):
        return Path(on_path[0]).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for folder in reversed(candidates):
        if all((Path(folder) / b).is_file() for b in BINARIES):
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", SERVER_OS_USER, "--", *cmd]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:2])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


HBA = f"""# written by tests/postgres_server.py
local all all trust
host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


def start_server(bin_dir: Path, root: Path) -> tuple[PostgresServer, Path]:
    """initdb into `root/data`, start on a free port; returns the server and its data folder."""
    data = root / "data"
    sockets = root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SERVER_OS_USER)
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    _run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
    )
    # A small file the server user can read: written by us, then handed over.
    hba = root / "pg_hba.conf"
    hba.write_text(HBA)
    if os.geteuid() == 0:
        os.chown(hba, owner.pw_uid, owner.pw_gid)
    port = free_port()
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c hba_file={hba} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        ]
    )
    server = PostgresServer(host="127.0.0.1", port=port, user=SUPERUSER, socket_dir=sockets)
    import psycopg

    with psycopg.connect(server.dsn("postgres"), autocommit=True) as con:
        con.execute(f"CREATE ROLE {PASSWORD_GROUP} NOLOGIN")
    return server, data


def stop_server(bin_dir: Path, data: Path) -> None:
    subprocess.run(
        _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the test session, stopped and removed at its end."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin; "
            "install the Debian package `postgresql`"
        )
    # Not under pytest's tmp folder: that is private to root, and the server user must reach it.
    root = Path(tempfile.mkdtemp(prefix="notalone-pg-"))
    os.chmod(root, 0o755)
    data = None
    try:
        server, data = start_server(bin_dir, root)
        yield server
    finally:
        if data is not None:
            stop_server(bin_dir, data)
        shutil.rmtree(root, ignore_errors=True)
