"""Opening the workspace database: the URL, the engine and the migrations to head."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

DB_URL_ENV = "NOTALONE_DB_URL"
DB_FILE = "workspace.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database_url(url: str | None, home: Path) -> str:
    """The given URL, else `NOTALONE_DB_URL`, else a SQLite file in the workspace home.
    A bare `postgresql://` URL is read with psycopg 3."""
    url = url or os.environ.get(DB_URL_ENV) or f"sqlite:///{Path(home).resolve() / DB_FILE}"
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            url = "postgresql+psycopg://" + url[len(bare) :]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # the scorer and the app write the same file
    cursor.close()


def open_workspace_db(url: str | None = None, home: Path | str = ".") -> Engine:
    """An engine on the workspace database, migrated to the latest schema."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    resolved = database_url(url, Path(home))
    if resolved.startswith("sqlite:///"):
        Path(resolved.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(resolved, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        with engine.connect() as conn:  # WAL: readers never wait for the scorer's publish
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    else:
        engine = create_engine(resolved, pool_pre_ping=True)
    migrations = AlembicConfig()
    migrations.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        migrations.attributes["connection"] = conn
        command.upgrade(migrations, "head")
    return engine


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
