"""The source store: finding, reading and writing the contract's tables on disk.

A source is a folder with one entry per table: `NAME.parquet`, `NAME.csv`, or a folder `NAME/` of
Parquet files. This is the one module that touches source files; everything else receives DuckDB
relations or DataFrames from here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import yaml

from features.contract import TABLES
from features.errors import NotaloneError


class SourceError(NotaloneError):
    """A source folder or one of its tables cannot be read."""

    def __init__(self, message: str, table: str | None = None, column: str | None = None):
        super().__init__(message)
        self.table = table
        self.column = column


@dataclass(frozen=True)
class TableFile:
    name: str
    path: Path
    fmt: str  # "parquet", "csv" or "parquet_dir"

    def scan_sql(self) -> str:
        """A DuckDB table expression that reads this table in place."""
        p = str(self.path).replace("'", "''")
        if self.fmt == "parquet":
            return f"read_parquet('{p}')"
        if self.fmt == "parquet_dir":
            return f"read_parquet('{p}/*.parquet', union_by_name = true)"
        return f"read_csv('{p}', header = true, auto_detect = true, sample_size = -1)"


def locate_tables(source: str | Path) -> dict[str, TableFile]:
    """Find the contract's tables in a source folder; unknown files are ignored."""
    root = Path(source)
    if not root.is_dir():
        raise SourceError(f"source folder not found: {root}")
    found: dict[str, TableFile] = {}
    for name in TABLES:
        candidates = [
            TableFile(name, root / f"{name}.parquet", "parquet"),
            TableFile(name, root / f"{name}.csv", "csv"),
            TableFile(name, root / name, "parquet_dir"),
        ]
        present = [
            c
            for c in candidates
            if (c.fmt != "parquet_dir" and c.path.is_file())
            or (c.fmt == "parquet_dir" and c.path.is_dir())
        ]
        if len(present) > 1:
            raise SourceError(
                f"table {name!r} is present more than once in {root}: "
                + ", ".join(p.path.name for p in present),
                table=name,
            )
        if present:
            tf = present[0]
            if tf.fmt == "parquet_dir" and not any(tf.path.glob("*.parquet")):
                raise SourceError(f"folder {tf.path} holds no Parquet files", table=name)
            found[name] = tf
    return found


def connect(
    memory_limit: str | None = None, threads: int | None = None, temp_dir: Path | None = None
):
    """A DuckDB connection configured to spill to disk rather than fail on large sources."""
    con = duckdb.connect()
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = '{str(temp_dir).replace(chr(39), chr(39) * 2)}'")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    return con


SOURCE_INFO_FILE = "source.yaml"  # optional, beside the tables: `exported_at: <ISO time, UTC>`
SOURCE_INFO_KEYS = ("exported_at",)


@dataclass(frozen=True)
class SourceInfo:
    """What a source says about itself (`source.yaml`); every field optional.

    `exported_at`: when the tables were exported. Nothing happened in the source between its
    last row and this moment, so labels ("unenrolled / inactive within the horizon") and "already
    gone" may count up to it; without it the last timestamp seen stands in.
    """

    exported_at: datetime | None = None


def parse_exported_at(value: object, where: str = SOURCE_INFO_FILE) -> datetime:
    """An export time as an aware UTC datetime (naive values are taken as UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise SourceError(
            f"{where}: exported_at {value!r} is not a timestamp",
            table="source",
            column="exported_at",
        ) from exc
    if pd.isna(ts):
        raise SourceError(f"{where}: exported_at is empty", table="source", column="exported_at")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def read_source_info(source: str | Path) -> SourceInfo:
    """Read `source.yaml` beside the tables; an absent file is an empty `SourceInfo`."""
    path = Path(source) / SOURCE_INFO_FILE
    if not path.is_file():
        return SourceInfo()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError(f"cannot read {path}: {exc}", table="source") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path} must hold a mapping (e.g. exported_at: ...)", table="source")
    unknown = sorted(set(data) - set(SOURCE_INFO_KEYS))
    if unknown:
        raise SourceError(
            f"{path}: unknown keys {', '.join(map(str, unknown))} (known: "
            f"{', '.join(SOURCE_INFO_KEYS)})",
            table="source",
        )
    exported = data.get("exported_at")
    return SourceInfo(exported_at=None if exported is None else parse_exported_at(exported, path))


def write_source_info(folder: str | Path, info: SourceInfo) -> Path:
    """Write `source.yaml` (atomically: a temporary file renamed into place)."""
    path = Path(folder) / SOURCE_INFO_FILE
    data = {}
    if info.exported_at is not None:
        data["exported_at"] = info.exported_at.astimezone(UTC).isoformat()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return path


def set_exported_at(con: duckdb.DuckDBPyConnection, exported_at: datetime | None) -> None:
    """Record the export time on a connection (`data_end` in features.build reads it)."""
    value = "NULL" if exported_at is None else repr(float(exported_at.timestamp()))
    con.execute(f"CREATE OR REPLACE TEMP TABLE source_info AS SELECT {value}::DOUBLE AS exported_s")


def register_views(
    con: duckdb.DuckDBPyConnection, source: str | Path, exported_at: datetime | None = None
) -> dict[str, TableFile]:
    """Create one view per table found (`raw_<name>`) reading the files in place.

    The export time (`exported_at`, else `source.yaml`'s) is recorded on the connection.
    """
    set_exported_at(con, exported_at or read_source_info(source).exported_at)
    tables = locate_tables(source)
    for name, tf in tables.items():
        try:
            con.execute(f"CREATE OR REPLACE VIEW raw_{name} AS SELECT * FROM {tf.scan_sql()}")
        except duckdb.Error as exc:
            raise SourceError(
                f"cannot read table {name!r} at {tf.path}: {exc}", table=name
            ) from exc
    return tables


def read_table(source: str | Path, name: str) -> pd.DataFrame:
    """Read one whole table into pandas (for small tables: courses, enrollments, assignments)."""
    tables = locate_tables(source)
    if name not in tables:
        raise SourceError(f"table {name!r} not found in {source}", table=name)
    con = connect()
    try:
        return con.execute(f"SELECT * FROM {tables[name].scan_sql()}").df()
    except duckdb.Error as exc:
        raise SourceError(f"cannot read table {name!r}: {exc}", table=name) from exc
    finally:
        con.close()


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` in one rename.

    On any error the temporary folder is removed and `target` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_table(folder: str | Path, name: str, frame: pd.DataFrame) -> Path:
    """Write one table as `NAME.parquet` in a folder (callers make the folder atomic)."""
    path = Path(folder) / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return path


# --- Added for the contract check (features/validate.py): CSV layout diagnostics. -------------
# DuckDB's CSV sniffer copes with a ragged file by skipping lines or falling back to one column,
# so a stray delimiter can surface as "all columns missing". These let validation tell the user
# which lines are ragged instead.


def csv_header_line(table: TableFile) -> str:
    """The first line of a CSV table as text (undecodable bytes replaced), for diagnostics."""
    with open(table.path, encoding="utf-8-sig", errors="replace") as fh:
        return fh.readline().rstrip("\r\n")


def csv_lines_sql(table: TableFile) -> str:
    """A DuckDB table expression with one VARCHAR column `line` per raw line of a CSV table."""
    p = str(table.path).replace("'", "''")
    return (
        f"read_csv('{p}', header = false, auto_detect = false, columns = {{'line': 'VARCHAR'}}, "
        f"delim = '{chr(1)}', quote = '', escape = '')"
    )
