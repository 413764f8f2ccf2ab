"""The Moodle store: reading a Moodle PostgreSQL database Arrow-natively (ADBC, which streams
binary COPY), checking its schema first, and the incremental state kept inside the output source.

Every failure a user can fix is a `MoodleStoreError` (exit 2) that names the table and column and
never shows the password of the DSN.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import pyarrow as pa

from features.errors import NotaloneError
from features.moodle import (
    ADDED_IN,
    COLUMNS,
    CONTEXT_MODULE,
    EVENT_CODE,
    INT,
    LOG_COLUMNS,
    LOG_TABLE,
    NUMBER,
    TEXT,
)

STATE_FILE = "moodle_state.json"
STATE_FORMAT = 1
EVENTS_DIR = "events"
LOG_PART_GLOB = "log-*.parquet"
PG_KINDS: dict[str, tuple[str, ...]] = {
    INT: ("bigint", "integer", "smallint"),
    TEXT: ("character varying", "text", "character"),
    NUMBER: ("numeric", "double precision", "real", "bigint", "integer", "smallint"),
}
SQL_CAST = {INT: "bigint", TEXT: "text", NUMBER: "double precision"}


class MoodleStoreError(NotaloneError):
    """The Moodle database cannot be read as a Moodle database (or the output source is wrong)."""

    def __init__(self, message: str, table: str | None = None, column: str | None = None):
        super().__init__(message)
        self.table = table
        self.column = column


class MoodleConnectionError(MoodleStoreError):
    """The server refused the connection (address, database, user or password)."""


class MoodleSchemaError(MoodleStoreError):
    """A table or column the mapping reads is missing or of another type."""


class EmptyLogStoreError(MoodleStoreError):
    """`logstore_standard_log` has no rows at all."""


def redact(dsn: str) -> str:
    """The DSN with its password replaced by ***, for messages and the state file."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            netloc = f"{parts.username or ''}:***@{host}"
            parts = parts._replace(netloc=netloc)
        return urlunsplit(
            parts._replace(query=re.sub(r"password=[^&]*", "password=***", parts.query))
        )
    return re.sub(r"password\s*=\s*('[^']*'|\S+)", "password=***", dsn)


def _password(dsn: str) -> str | None:
    if "://" in dsn:
        return urlsplit(dsn).password
    match = re.search(r"password\s*=\s*('[^']*'|\S+)", dsn)
    return match.group(1).strip("'") if match else None


def _clean(message: str, dsn: str) -> str:
    secret = _password(dsn)
    if secret:
        message = message.replace(secret, "***")
    return message.replace("IO: [libpq] ", "").strip()


def connect(dsn: str):
    """An ADBC connection to the Moodle database; a refused connection is a clear user error."""
    from adbc_driver_manager import Error as AdbcError
    from adbc_driver_postgresql import dbapi

    if not dsn.startswith(("postgresql://", "postgres://")):
        raise MoodleConnectionError(
            f"--dsn must be a PostgreSQL URL (postgresql://USER@HOST[:PORT]/DB), got {redact(dsn)}"
        )
    try:
        return dbapi.connect(dsn)
    except AdbcError as exc:
        raise MoodleConnectionError(
            f"cannot connect to {redact(dsn)}: {_clean(str(exc), dsn)}"
        ) from None


def _fetch(conn, sql: str) -> list[tuple]:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchall()
    finally:
        cur.close()


def _table_columns(conn, prefix: str) -> dict[str, dict[str, str]]:
    """Moodle table name (without prefix) -> column -> PostgreSQL data_type, for tables we read."""
    wanted = [*COLUMNS, LOG_TABLE, "config", "log"]
    names = ", ".join(f"'{prefix}{t}'" for t in wanted)
    rows = _fetch(
        conn,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = ANY (current_schemas(false)) AND table_name IN ({names})",
    )
    found: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        found.setdefault(table[len(prefix) :], {})[column] = data_type
    return found


def moodle_release(conn, prefix: str, found: dict[str, dict[str, str]]) -> str | None:
    """Moodle's own version string (`config` name 'release'), when the table is there."""
    if "config" not in found:
        return None
    rows = _fetch(conn, f"SELECT value FROM {prefix}config WHERE name = 'release'")
    return str(rows[0][0]) if rows else None


def check_schema(conn, prefix: str) -> str | None:
    """Fail with the table and column when the database lacks what the mapping reads or stores
    it differently; returns Moodle's release string when the database records one."""
    found = _table_columns(conn, prefix)
    if not found:
        raise MoodleSchemaError(
            f"no Moodle tables with prefix {prefix!r} in this database (looked for "
            f"{prefix}course, {prefix}user, {prefix}{LOG_TABLE}, ...): is --prefix right?"
        )
    release = moodle_release(conn, prefix, found)
    version = f" (this database: Moodle {release})" if release else ""
    expected = {**COLUMNS, LOG_TABLE: LOG_COLUMNS}
    for table, columns in expected.items():
        if table not in found:
            hint = ""
            if table == LOG_TABLE and "log" in found:
                hint = (
                    f": only the legacy {prefix}log table exists; the standard log store came "
                    "with Moodle 2.7, and it must be enabled (Site administration > Plugins > "
                    "Logging)"
                )
            raise MoodleSchemaError(
                f"table {prefix}{table} not found{hint}{version}", table=f"{prefix}{table}"
            )
        for column, kind in columns.items():
            actual = found[table].get(column)
            if actual is None:
                since = ADDED_IN.get((table, column))
                why = f"; it was added in Moodle {since}" if since else ""
                raise MoodleSchemaError(
                    f"table {prefix}{table} has no column {column!r}{why}: this database's "
                    f"schema differs from the Moodle versions notalone reads (docs/moodle.md)"
                    f"{version}",
                    table=f"{prefix}{table}",
                    column=column,
                )
            if actual not in PG_KINDS[kind]:
                raise MoodleSchemaError(
                    f"column {prefix}{table}.{column} is {actual}, Moodle stores it as "
                    f"{' / '.join(PG_KINDS[kind][:2])}: this database's schema differs from "
                    f"Moodle's{version}",
                    table=f"{prefix}{table}",
                    column=column,
                )
    return release


def _select(prefix: str, table: str, columns: dict[str, str]) -> str:
    cols = ", ".join(f'"{c}"::{SQL_CAST[k]} AS "{c}"' for c, k in columns.items())
    return f'SELECT {cols} FROM "{prefix}{table}"'


def read_table(conn, prefix: str, table: str) -> pd.DataFrame:
    """One whole (small) Moodle table, the columns the mapping reads, as pandas via Arrow."""
    cur = conn.cursor()
    try:
        cur.execute(_select(prefix, table, COLUMNS[table]))
        return cur.fetch_arrow_table().to_pandas()
    finally:
        cur.close()


def log_bounds(conn, prefix: str) -> tuple[int, int, float]:
    """(rows, highest id, server time in Unix seconds) of the standard log store, right now."""
    rows = _fetch(
        conn,
        f'SELECT (SELECT count(*) FROM (SELECT 1 FROM "{prefix}{LOG_TABLE}" LIMIT 1) AS one), '
        f'(SELECT max(id) FROM "{prefix}{LOG_TABLE}"), extract(epoch FROM now())::float8',
    )
    any_row, top, now = rows[0]
    return int(any_row), int(top or 0), float(now)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def log_select(
    prefix: str, after_id: int, upto_id: int, codes: dict[str, int], default_code: int
) -> str:
    """The log rows with after_id < id <= upto_id as `LOG_BATCH_COLUMNS` plus `event_code`:
    only what the mapping needs, the event map applied by the server (a hash join on the
    mapped names; every other name gets `default_code`), so no event name crosses the wire."""
    code = f"{int(default_code)}::smallint"
    join = ""
    if codes:
        values = ", ".join(f"({_literal(n)}::text, {int(c)}::smallint)" for n, c in codes.items())
        join = f" LEFT JOIN (VALUES {values}) AS m(name, code) ON m.name = l.eventname"
        code = f"coalesce(m.code, {code})"
    return (
        f"SELECT {code} AS {EVENT_CODE}, l.userid::bigint AS userid, "
        f"l.courseid::bigint AS courseid, CASE WHEN l.contextlevel = {CONTEXT_MODULE} "
        "THEN l.contextinstanceid::bigint END AS cmid, l.timecreated::bigint AS timecreated "
        f'FROM "{prefix}{LOG_TABLE}" AS l{join} '
        f"WHERE l.id > {int(after_id)} AND l.id <= {int(upto_id)}"
    )


def first_log_id(conn, prefix: str, after_id: int, upto_id: int) -> int | None:
    rows = _fetch(
        conn,
        f'SELECT min(id) FROM "{prefix}{LOG_TABLE}" WHERE id > {int(after_id)} '
        f"AND id <= {int(upto_id)}",
    )
    return None if rows[0][0] is None else int(rows[0][0])


@contextmanager
def log_batches(
    conn, prefix: str, after_id: int, upto_id: int, codes: dict[str, int], default_code: int
) -> Iterator[pa.RecordBatchReader]:
    """Stream the log rows with after_id < id <= upto_id as Arrow record batches."""
    cur = conn.cursor()
    try:
        cur.execute(log_select(prefix, after_id, upto_id, codes, default_code))
        yield cur.fetch_record_batch()
    finally:
        cur.close()


def prefetched(reader: pa.RecordBatchReader, depth: int = 4) -> Iterator[pa.RecordBatch]:
    """Iterate `reader` with the next batches fetched by a background thread: the server and
    the driver fill the queue while the caller maps and writes (the driver releases the GIL)."""
    import queue
    import threading

    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            for batch in reader:
                if stop.is_set():
                    return
                slots.put(batch)
            slots.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put(exc)

    worker = threading.Thread(target=pump, name="moodle-log-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


# --- the output source: incremental state and previous parts ------------------------------------


def read_state(out: Path) -> dict | None:
    """The state an earlier ingest left in `out`, or None for a first run (absent or empty)."""
    out = Path(out)
    if not out.exists():
        return None
    if not out.is_dir():
        raise MoodleStoreError(f"--out {out} exists and is not a folder")
    path = out / STATE_FILE
    if not path.is_file():
        if any(out.iterdir()):
            raise MoodleStoreError(
                f"--out {out} is a non-empty folder without {STATE_FILE} (not a Moodle source "
                "written by notalone); refusing to replace it. Choose a new or empty folder."
            )
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MoodleStoreError(f"cannot read {path}: {exc}") from None
    if state.get("format") != STATE_FORMAT or "last_log_id" not in state:
        raise MoodleStoreError(f"{path} is not a state file this version understands")
    return state


def write_state(folder: Path, state: dict) -> None:
    (Path(folder) / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def link_previous_parts(out: Path, tmp: Path) -> list[str]:
    """Hard-link the earlier log parts into the folder being built (no copy; the earlier source
    stays whole until the new one replaces it in one rename)."""
    old = Path(out) / EVENTS_DIR
    new = Path(tmp) / EVENTS_DIR
    new.mkdir(exist_ok=True)
    names = []
    for part in sorted(old.glob(LOG_PART_GLOB)) if old.is_dir() else []:
        try:
            os.link(part, new / part.name)
        except OSError:  # another file system or no hard links: copy
            import shutil

            shutil.copy2(part, new / part.name)
        names.append(part.name)
    return names


def read_previous_enrollments(out: Path) -> pd.DataFrame | None:
    path = Path(out) / "enrollments.parquet"
    return pd.read_parquet(path) if path.is_file() else None
