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
from pathlib import Path

import duckdb
import pandas as pd

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


def register_views(con: duckdb.DuckDBPyConnection, source: str | Path) -> dict[str, TableFile]:
    """Create one view per table found (`raw_<name>`) reading the files in place."""
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
