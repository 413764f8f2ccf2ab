"""A throwaway PostgreSQL 15 server for tests (minimal version; the shared one replaces it).

`postgres_server` (session-scoped fixture, registered in tests/conftest.py) runs `initdb` in a
temporary folder owned by `nobody` (initdb refuses root) and starts it on a free port on
127.0.0.1; tests make their own databases with `create_database(name)`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_AS = "nobody"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    socket_dir: str

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_user(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", RUN_AS, "--", *args]
    return args


@pytest.fixture(scope="session")
def postgres_server():
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb refuses root")
    root = Path(tempfile.mkdtemp(prefix="notalone-pg-"))
    data, sockets = root / "data", root / "sock"
    data.mkdir()
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, RUN_AS)
        shutil.chown(data, RUN_AS)
        shutil.chown(sockets, RUN_AS)
        os.chmod(root, 0o755)
    user = RUN_AS if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    port = _free_port()
    subprocess.run(
        _as_user(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_user(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server = PostgresServer("127.0.0.1", port, user, str(sockets))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.create_database("notalone_probe")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield server
    finally:
        subprocess.run(
            _as_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
