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

from configs.schema import parse_yaml
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
    fmt: str  # "parquet", "csv", "parquet_dir" or "parquet_hive" (folders KEY=VALUE/*.parquet)

    def scan_sql(self) -> str:
        """A DuckDB table expression that reads this table in place."""
        p = str(self.path).replace("'", "''")
        if self.fmt == "parquet":
            return f"read_parquet('{p}')"
        if self.fmt == "parquet_dir":
            return f"read_parquet('{p}/*.parquet', union_by_name = true)"
        if self.fmt == "parquet_hive":
            # Partition values stay text (a course id "0042" is not the number 42); a filter on
            # the partition column reads only the matching folders.
            return (
                f"read_parquet('{p}/*/*.parquet', hive_partitioning = true, "
                "hive_types_autocast = false, union_by_name = true)"
            )
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
                if any(tf.path.glob("*=*/*.parquet")):
                    tf = TableFile(name, tf.path, "parquet_hive")
                    found[name] = tf
                    continue
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
SOURCE_INFO_KEYS = ("exported_at", "origin")  # origin: who wrote the source (e.g. moodle)


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
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
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


# --- Queries the weekly job asks of a source (connections with the raw_* views of
# `features.build.register_views`, or the source folder itself). ------------------------------


def first_course_start(con) -> float | None:
    """Epoch seconds of the earliest course-run start, or None when there are no runs."""
    return con.execute(
        "SELECT min(epoch(CAST(start_at AS TIMESTAMPTZ))) FROM raw_courses"
    ).fetchall()[0][0]


def active_enrollment_count(con, at: datetime, first_offset_days: int) -> int:
    """Enrollments active at `at` in runs at least `first_offset_days` old (scored from a run's
    first snapshot on, as the feature build does)."""
    return con.execute(
        """
        SELECT count(*) FROM raw_enrollments e JOIN raw_courses c
          ON CAST(e.course_id AS VARCHAR) = CAST(c.course_id AS VARCHAR)
        WHERE CAST(c.start_at AS TIMESTAMPTZ) + to_days($offset) <= $t
          AND $t <= CAST(c.end_at AS TIMESTAMPTZ)
          AND CAST(e.enrolled_at AS TIMESTAMPTZ) <= $t
          AND (e.unenrolled_at IS NULL OR CAST(e.unenrolled_at AS TIMESTAMPTZ) >= $t)
        """,
        {"t": at, "offset": first_offset_days},
    ).fetchall()[0][0]


def recent_contacts(source: str | Path, start: datetime, end: datetime) -> pd.DataFrame | None:
    """Latest contact per (student, course) in [start, end) from the optional `interventions`
    table (student_id, course_id, ts); None when the source has no such table."""
    tables = locate_tables(source)
    if "interventions" not in tables:
        return None
    con = connect()
    try:
        return con.execute(
            f"""
            SELECT CAST(student_id AS VARCHAR) AS student_id,
                   CAST(course_id AS VARCHAR) AS course_id,
                   max(CAST(ts AS TIMESTAMPTZ)) AS ts
            FROM {tables["interventions"].scan_sql()}
            WHERE CAST(ts AS TIMESTAMPTZ) >= $start AND CAST(ts AS TIMESTAMPTZ) < $t
            GROUP BY ALL
            """,
            {"start": start, "t": end},
        ).df()
    except Exception as exc:  # duckdb errors: unreadable table or columns
        raise SourceError(
            f"cannot read table 'interventions': {exc}", table="interventions"
        ) from exc
    finally:
        con.close()


def all_contacts(source: str | Path) -> pd.DataFrame | None:
    """Every recorded contact (student_id, course_id, ts) of the optional `interventions`
    table; None when the source has none."""
    if "interventions" not in locate_tables(source):
        return None
    table = read_table(source, "interventions")
    return pd.DataFrame(
        {
            "student_id": table["student_id"].astype("str"),
            "course_id": table["course_id"].astype("str"),
            "ts": pd.to_datetime(table["ts"], utc=True),
        }
    )


def display_names_of(source: Path) -> pd.DataFrame | None:
    """(student_id, display_name) from the source's enrollments, when it has that optional
    column; for curator-facing pages only (never MLflow)."""
    if "enrollments" not in locate_tables(source):
        return None
    enrollments = read_table(source, "enrollments")
    if "display_name" not in enrollments.columns:
        return None
    names = enrollments[["student_id", "display_name"]].dropna(subset=["display_name"])
    return names.astype("str").drop_duplicates("student_id")


def course_titles(source: str | Path) -> pd.Series:
    """course_id -> title (the id itself when the source has no title)."""
    courses = read_table(source, "courses")
    ids = courses["course_id"].astype("str")
    if "title" in courses.columns:
        titles = courses["title"].astype("str").where(courses["title"].notna(), ids)
    else:
        titles = ids
    titles = pd.Series(titles.to_numpy(dtype=object), index=ids.to_numpy(dtype=object))
    return titles[~titles.index.duplicated()]  # an exact duplicate course row is only a warning


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename,
    so a reader sees the old file or the new one, never half of one. The temporary name carries
    the writer's pid, so a file left by a killed writer can be recognised and removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(target: str | Path, text: str) -> Path:
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_source_variant(
    source: str | Path,
    out: str | Path,
    course_prefixes: list[str] | None = None,
    event_types: list[str] | None = None,
    drop_attrs: list[str] | None = None,
) -> Path:
    """A copy of a source restricted for an experiment (written atomically to `out`).

    `course_prefixes` keeps the course runs whose id starts with one of them (e.g. "AAA" for the
    OULAD module AAA), `event_types` keeps only those event types (e.g. only submissions: a
    school without click data), `drop_attrs` removes attr_* columns from the enrollments.
    """
    tables = {name: read_table(source, name) for name in locate_tables(source)}
    if course_prefixes:
        prefixes = tuple(course_prefixes)
        keep = {c for c in tables["courses"]["course_id"].astype(str) if c.startswith(prefixes)}
        if not keep:
            raise NotaloneError(f"no course run of {source} starts with {', '.join(prefixes)}")
        for name, table in tables.items():
            if "course_id" in table.columns:
                tables[name] = table[table["course_id"].astype(str).isin(keep)]
    if event_types is not None and "events" in tables:
        events = tables["events"]
        tables["events"] = events[events["event_type"].astype(str).isin(event_types)]
    if drop_attrs:
        tables["enrollments"] = tables["enrollments"].drop(
            columns=[c for c in drop_attrs if c in tables["enrollments"].columns]
        )
    with atomic_dir(out) as tmp:
        for name, table in tables.items():
            write_table(tmp, name, table.reset_index(drop=True))
    return Path(out)
