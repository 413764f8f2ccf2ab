"""The contract check: does a source folder hold the tables, columns and values the contract says?

`validate_source` runs DuckDB over the files in place (no table is loaded into pandas), so it works
for sources with tens of millions of events. Small tables (courses, enrollments, assignments) are
read once into DuckDB temp tables; each other table is scanned once for all row checks at the same
time (left-joined to the small tables' keys), and once more for exact duplicates. Example rows are
fetched only for the checks that found something.

Severities are chosen by one rule: an **error** is something that would make features or labels
wrong (or cannot be read at all); a **warning** is something feature building handles by itself,
by ignoring or dropping the rows concerned:

- error: missing required table or column, unreadable file, wrong types, nulls in required columns,
  conflicting duplicate keys, unknown event types (the vocabulary has `activity` for anything else,
  so an unknown type is a mapping bug), enrollments of unknown courses, course runs that end before
  they start, unenrolment before enrolment, timestamps before `earliest_timestamp` or on/after
  `latest_timestamp`, timestamps more than `max_days_outside_course` days outside their course run,
  scores or ratings out of range, an empty courses, enrollments or events table (an empty event log
  is a failed export: every student would look equally inactive);
  events of unknown enrollments when they are more than `max_unknown_enrollment_share` of all events
  (ids do not match between tables).
- warning: exact duplicate rows (extra copies are dropped when features are built), a few events of
  unknown enrollments (ignored), assignments of unknown courses (ignored), submissions whose item_id
  is not an assignment of that course (they count as submissions but meet no deadline), an empty
  assignments table (self-paced courses), columns outside the contract (ignored; static attributes
  belong on enrollments with the `attr_` prefix).

`count` is the number of rows concerned: for exact duplicates the surplus copies (rows that would be
dropped), for conflicting keys all rows sharing a conflicting key; 1 for structural problems (a
missing table or column, an unreadable file). Example rows show the raw values as read, without
`attr_*` values unless the problem is about that column.

**Partitioned** (`validation_head`, `validate_slice`, `merge_validation`): the same checks with
the events split by course run, each slice checkable on another machine. The head checks every
other table and the events' columns, and plans the slices (groups of course runs, plus one for
events of no known run); a slice checks the events of its runs against the small tables' rows
of the same runs (the joins are on course_id, so nothing is lost); the merge sums the counts,
keeps the first example rows and decides the share-based severities on the totals. The merged
report is `validate_source`'s.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

import duckdb

from configs.schema import ValidationConfig
from features.contract import (
    ATTR_PREFIX,
    EVENT_TYPES,
    REQUIRED_TABLES,
    TABLES,
    VALUE_RANGES,
    Column,
    EventType,
    Kind,
    TableSpec,
)
from features.errors import NotaloneError
from features.sources import (
    SOURCE_INFO_FILE,
    SourceError,
    TableFile,
    connect,
    csv_header_line,
    csv_lines_sql,
    locate_tables,
    read_source_info,
)

Severity = Literal["error", "warning"]
ValidationMode = Literal["whole", "head", "slice"]
ERROR: Severity = "error"
WARNING: Severity = "warning"

# Small tables are read once into DuckDB temp tables; the others are scanned in place.
SMALL_TABLES = ("courses", "enrollments", "assignments")
# An empty table is an error for these, a warning for the other required tables.
MUST_HAVE_ROWS = ("courses", "enrollments", "events")
CSV_DELIMITERS = (",", ";", "\t", "|")
# The tables whose rows a partitioned check splits by course run (the big one).
PARTITIONED_TABLES = ("events",)
# A slice's duplicate check comes after all its row checks.
DUPLICATES_ORDINAL = 1_000_000
# Lines of a DuckDB error message kept in a problem (the rest is SQL context and hints).
ERROR_MESSAGE_LINES = 4

_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}
_KIND_WORDS = {
    Kind.STRING: "text or integer ids",
    Kind.TIMESTAMP: "a timestamp",
    Kind.NUMBER: "a number",
}


@dataclass(frozen=True)
class Problem:
    """One violation of the contract, with the rows it concerns."""

    severity: Severity
    table: str
    column: str | None
    check: str  # short code, e.g. "null", "wrong_type", "duplicate_key"
    message: str
    count: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table


@dataclass(frozen=True)
class ValidationReport:
    """Every problem found in a source, errors first, plus the row count of each table read."""

    source: Path
    problems: tuple[Problem, ...]
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def duplicate_events(self) -> bool:
        """Were exact duplicate event rows found? Feature building then drops the copies."""
        return any(p.table == "events" and p.check == "duplicate_row" for p in self.problems)

    def summary(self) -> str:
        """One line: counts of errors and warnings and where the first error is."""
        n_err, n_warn = len(self.errors), len(self.warnings)
        text = f"{n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}"
        if self.errors:
            first = self.errors[0]
            text += f"; first: {first.where}: {first.message}"
        return text


class ValidationFailed(NotaloneError):
    """A source has contract errors; it must not be used for features, training or scoring."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(
            f"source {report.source} fails the contract check ({report.summary()}); "
            f"run `notalone validate --source {report.source}` for details"
        )


def require_valid(
    source: Path, config: ValidationConfig, temp_dir: Path | None = None
) -> ValidationReport:
    """Validate a source and raise `ValidationFailed` when it has errors; warnings pass."""
    report = validate_source(source, config, temp_dir)
    if not report.ok:
        raise ValidationFailed(report)
    return report


def validate_source(
    source: Path,
    config: ValidationConfig,
    temp_dir: Path | None = None,
    exported_at: datetime | None = None,
) -> ValidationReport:
    """Check a source folder against the contract; never raises for bad data, only reports it.

    Raises `SourceError` only when `source` is not a folder. `temp_dir` is where DuckDB spills.
    `exported_at` (else `source.yaml`'s): no observed timestamp may lie after it.
    """
    source = Path(source)
    # features/ never prints; in Jupyter without ipywidgets DuckDB refuses to touch the setting
    # (and shows no bar there anyway): _open turns the progress bar off.
    con = _open(config, temp_dir)
    try:
        return _Validator(con, source, config, exported_at).run()
    finally:
        con.close()


def _open(config: ValidationConfig, temp_dir: Path | None) -> duckdb.DuckDBPyConnection:
    con = connect(config.duckdb_memory_limit, config.duckdb_threads, temp_dir)
    with contextlib.suppress(duckdb.Error):
        con.execute("SET enable_progress_bar = false")
    return con


def escalated(
    severity: Severity, count: int, rows: int, error_above_share: float | None
) -> Severity:
    """A warning becomes an error when its rows are more than `error_above_share` of all."""
    if error_above_share is not None and rows and count / rows > error_above_share:
        return ERROR
    return severity


@dataclass(frozen=True)
class RunSlice:
    """Which rows one slice checks: those of the course runs `course_ids`, or (`rest`) every
    row whose course_id is null or none of them."""

    course_ids: tuple[str, ...]
    rest: bool = False

    def sql(self) -> str:
        """A condition on `{course_id}` (formatted with the column expression)."""
        listed = ", ".join(_literal(c) for c in self.course_ids)
        if self.rest:
            return f"(CAST({{course_id}} AS VARCHAR) NOT IN ({listed}) OR {{course_id}} IS NULL)"
        return f"CAST({{course_id}} AS VARCHAR) IN ({listed})"


@dataclass(frozen=True)
class ValidationHead:
    """Everything checked but the sliced tables' rows, and how to slice them.

    `deferred`: table -> the place in `problems` where its row problems go. `slices`: the row
    slices to check (empty: nothing deferred); one whole slice (`None`) when the events cannot be
    split by a course id.
    """

    report: ValidationReport
    raw_problems: tuple[Problem, ...]  # in the order found (the report sorts errors first)
    deferred: dict[str, int]
    slices: tuple[RunSlice | None, ...]
    exported_at: datetime | None
    table_order: tuple[str, ...]


@dataclass(frozen=True)
class SliceReport:
    """One slice's row problems (base severities, with their check's place and share rule)."""

    problems: tuple[Problem, ...]
    ordinals: tuple[int, ...]
    shares: tuple[float | None, ...]
    distinct: tuple[bool, ...]
    rows: dict[str, int]


def validation_head(
    source: Path,
    config: ValidationConfig,
    runs_per_slice: int,
    temp_dir: Path | None = None,
    exported_at: datetime | None = None,
) -> ValidationHead:
    """The head of a partitioned check (see the module doc): slices of `runs_per_slice` runs."""
    source = Path(source)
    con = _open(config, temp_dir)
    try:
        validator = _Validator(con, source, config, exported_at, mode="head")
        report = validator.run()
        slices: tuple[RunSlice | None, ...] = ()
        if validator.deferred:
            sliceable = "courses" in validator.keys and all(
                "course_id" in validator.tables[name].typed for name in validator.deferred
            )
            ids: list[str] = []
            if sliceable:
                ids = [
                    r[0]
                    for r in con.execute("SELECT course_id FROM k_courses ORDER BY 1").fetchall()
                ]
            if ids:
                size = max(1, int(runs_per_slice))
                groups = [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]
                slices = (*(RunSlice(g) for g in groups), RunSlice(tuple(ids), rest=True))
            else:
                slices = (None,)
        return ValidationHead(
            report=report,
            raw_problems=tuple(validator.problems),
            deferred=dict(validator.deferred),
            slices=slices,
            exported_at=validator.exported_at,
            table_order=tuple(validator.tables),
        )
    finally:
        con.close()


def validate_slice(
    source: Path,
    config: ValidationConfig,
    runs: RunSlice | None,
    exported_at: datetime | None,
    temp_dir: Path | None = None,
) -> SliceReport:
    """The row checks of the sliced tables on one slice of course runs (None: all rows)."""
    con = _open(config, temp_dir)
    try:
        validator = _Validator(
            con,
            Path(source),
            config,
            exported_at,
            mode="slice",
            runs_sql=runs.sql() if runs is not None else None,
        )
        validator.run()
        rows = {
            n: t.rows
            for n, t in validator.tables.items()
            if n in PARTITIONED_TABLES and t.rows is not None
        }
        return SliceReport(
            tuple(validator.problems),
            tuple(validator.ordinals),
            tuple(validator.shares),
            tuple(validator.distinct),
            rows,
        )
    finally:
        con.close()


def merge_validation(
    head: ValidationHead, slices: list[SliceReport], config: ValidationConfig
) -> ValidationReport:
    """The head and its slices' reports (in the head's slice order) as one report: the one
    `validate_source` gives."""
    problems = list(head.raw_problems)
    rows = dict(head.report.rows)
    for name, at in sorted(head.deferred.items(), key=lambda kv: -kv[1]):
        merged, total = _merge_table(name, slices, config)
        problems[at:at] = merged
        if total is not None:
            rows[name] = total
    order = {ERROR: 0, WARNING: 1}
    ordered_rows = {n: rows[n] for n in head.table_order if n in rows}
    return ValidationReport(
        head.report.source, tuple(sorted(problems, key=lambda p: order[p.severity])), ordered_rows
    )


def _value_key(value: Any) -> tuple:
    """DuckDB's ascending order, nulls last, of one shown (plain) value."""
    if value is None:
        return (1, 0, 0)
    return (0, isinstance(value, str), value)


def _example_key(row: dict[str, Any], skip: tuple[str, ...] = ()) -> tuple:
    return tuple(_value_key(v) for k, v in row.items() if k not in skip)


def _merge_table(
    name: str, slices: list[SliceReport], config: ValidationConfig
) -> tuple[list[Problem], int | None]:
    found = [
        (ordinal, share, distinct, problem)
        for part in slices
        for ordinal, share, distinct, problem in zip(
            part.ordinals, part.shares, part.distinct, part.problems, strict=True
        )
        if problem.table == name
    ]
    counted = [part.rows[name] for part in slices if name in part.rows]
    total = sum(counted) if counted else None
    unreadable = [p for *_, p in found if p.check == "unreadable"]
    if unreadable:
        return unreadable[:1], total
    if not total:
        severity = ERROR if name in MUST_HAVE_ROWS else WARNING
        empty = Problem(severity, name, None, "empty_table", f"table {name!r} has no rows", 0)
        return [empty], total
    groups: dict[tuple, list] = {}
    for ordinal, share, distinct, problem in found:
        key = (ordinal, problem.column, problem.check, problem.message)
        groups.setdefault(key, []).append((share, distinct, problem))
    merged = []
    limit = int(config.example_rows)
    for key, members in sorted(groups.items(), key=lambda g: g[0][0]):
        _ordinal, column, check, message = key
        share, distinct, first = members[0]
        count = sum(p.count for *_, p in members)
        # The examples in the order each slice fetched them by (`_Validator.examples`).
        examples = [row for *_, p in members for row in p.examples]
        if check == "duplicate_row":
            examples.sort(key=lambda r: (-int(r["copies"]), _example_key(r, ("copies",))))
        elif distinct:  # one example per distinct value of the checked column, the first
            examples.sort(key=lambda r: (_value_key(r.get(column)), _example_key(r)))
            seen: set = set()
            examples = [
                r for r in examples if not (r.get(column) in seen or seen.add(r.get(column)))
            ]
        else:
            examples.sort(key=_example_key)
        severity = escalated(first.severity, count, total, share)
        merged.append(Problem(severity, name, column, check, message, count, examples[:limit]))
    return merged, total


# --------------------------------------------------------------------------------------------
# Internals


@dataclass(frozen=True)
class _RowCheck:
    """A row-level check: a SQL condition over `r` (the raw table) and the joined key tables."""

    severity: Severity
    column: str | None
    check: str
    message: str
    condition: str
    context: str = ""  # extra SELECT expressions shown with the examples (e.g. course bounds)
    distinct_on: str | None = None  # examples show one row per distinct value of this expression
    error_above_share: float | None = None  # warning unless count/rows exceeds this share


@dataclass
class _Table:
    """What is known about one table while it is being checked."""

    spec: TableSpec
    file: TableFile
    relation: str  # DuckDB temp table or view holding the raw rows
    columns: dict[str, str] = field(default_factory=dict)  # name -> DuckDB type
    typed: dict[str, str] = field(default_factory=dict)  # usable contract column -> typed SQL
    readable: bool = True
    rows: int | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _short_error(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("LINE ", "^"))][:ERROR_MESSAGE_LINES]
    return " ".join(kept)


def _header_fields(header: str, delim: str) -> list[str]:
    return [f.strip().strip('"') for f in header.split(delim)]


def _type_family(duck_type: str) -> str:
    t = duck_type.upper().strip('"')  # an all-null Parquet column has type "NULL", quoted
    if t in _INTEGER_TYPES:
        return "integer"
    if t in _FLOAT_TYPES or t.startswith("DECIMAL"):
        return "float"
    if t == "VARCHAR" or t.startswith("ENUM"):
        return "text"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "timestamp"
    if t == "NULL":
        return "null"
    return "other"


# Timestamps of things that happened (not planned dates such as deadlines or course ends): none
# may lie after the source's export time.
OBSERVED_TIMESTAMPS = {
    "enrollments": ("enrolled_at", "unenrolled_at"),
    "events": ("ts",),
    "interventions": ("ts",),
}


class _Validator:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        source: Path,
        config: ValidationConfig,
        exported_at: datetime | None = None,
        mode: ValidationMode = "whole",
        runs_sql: str | None = None,
    ):
        self.con = con
        self.source = source
        self.config = config
        self.exported_at = exported_at
        # "whole": every check. "head": all but the row checks of PARTITIONED_TABLES, whose
        # place in the problem list is kept in `deferred`. "slice": only those row checks, on
        # the rows whose course_id matches `runs_sql` (the small tables restricted alike).
        self.mode = mode
        self.runs_sql = runs_sql
        self.deferred: dict[str, int] = {}
        self.ordinals: list[int] = []  # per problem (slice mode): its check's place
        self.shares: list[float | None] = []  # per problem (slice mode): error_above_share
        self.distinct: list[bool] = []  # per problem (slice mode): examples distinct on column
        self.problems: list[Problem] = []
        self.tables: dict[str, _Table] = {}
        # Key tables for cross-table checks; present only when built from usable columns.
        self.keys: set[str] = set()
        self.earliest = f"TIMESTAMPTZ {_literal(config.earliest_timestamp.isoformat())}"
        self.latest = f"TIMESTAMPTZ {_literal(config.latest_timestamp.isoformat())}"

    # -- reporting ---------------------------------------------------------------------------

    def add(
        self,
        severity: Severity,
        table: str,
        column: str | None,
        check: str,
        message: str,
        count: int = 1,
        examples: list[dict[str, Any]] | None = None,
        ordinal: int = 0,
        share: float | None = None,
        distinct: bool = False,
    ) -> None:
        if self.mode == "slice" and not self._slice_rows:
            return  # the head reports everything but the sliced tables' rows
        self.problems.append(
            Problem(severity, table, column, check, message, int(count), examples or [])
        )
        self.ordinals.append(ordinal)
        self.shares.append(share)
        self.distinct.append(distinct)

    _slice_rows = False  # set while a slice checks its rows

    def unreadable(self, table: _Table, exc: Exception) -> None:
        table.readable = False
        self.add(
            ERROR,
            table.name,
            None,
            "unreadable",
            f"cannot read {table.file.path.name}: {_short_error(exc)}",
        )

    @contextmanager
    def reading(self, table: _Table) -> Iterator[None]:
        """Turn any DuckDB failure while reading `table` into an `unreadable` problem."""
        try:
            yield
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except duckdb.OutOfMemoryException as exc:
            raise NotaloneError(
                f"out of memory while validating table {table.name!r}; raise "
                f"validation.duckdb_memory_limit (now {self.config.duckdb_memory_limit}): {exc}"
            ) from exc
        except duckdb.Error as exc:
            self.unreadable(table, exc)

    def fetch_dicts(self, sql: str, hide: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            out.append(
                {
                    name: self.plain(value)
                    for name, value in zip(names, row, strict=True)
                    if name not in hide
                }
            )
        return out

    def plain(self, value: Any) -> Any:
        """Example values as plain Python: str, int, float, bool or None; long text is cut."""
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        text = str(value)
        limit = self.config.example_value_chars
        return text if len(text) <= limit else text[: limit - 1] + "…"

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> ValidationReport:
        try:
            found = locate_tables(self.source)
        except SourceError as exc:
            if exc.table is None:  # the folder itself is missing: a usage error, not a report
                raise
            self.add(ERROR, exc.table, None, "unreadable", str(exc))
            return self.report()
        if self.exported_at is None and self.mode != "slice":
            try:
                self.exported_at = read_source_info(self.source).exported_at
            except SourceError as exc:
                self.add(ERROR, "source", exc.column, "source_info", str(exc))
        for name in REQUIRED_TABLES:
            if name not in found:
                self.add(
                    ERROR,
                    name,
                    None,
                    "missing_table",
                    f"required table {name!r} not found in {self.source} (expected "
                    f"{name}.parquet, {name}.csv or a folder {name}/ of Parquet files)",
                )
        # Small tables first, courses first of all: the others are checked against their keys.
        ordered = sorted(found, key=lambda n: (n not in SMALL_TABLES, list(TABLES).index(n)))
        if self.mode == "slice":
            ordered = [n for n in ordered if n in SMALL_TABLES or n in PARTITIONED_TABLES]
        for name in ordered:
            self.load(TABLES[name], found[name])
        for name in ordered:
            table = self.tables[name]
            if table.readable:
                self.check_columns(table)
            sliced = name in PARTITIONED_TABLES
            if self.mode == "head" and sliced and table.readable:
                self.deferred[name] = len(self.problems)
            elif self.mode != "slice" or sliced:
                self._slice_rows = self.mode == "slice"
                if table.readable:
                    self.check_rows(table)
                if table.readable and table.rows:
                    self.check_duplicates(table)
                self._slice_rows = False
            if table.readable and name in SMALL_TABLES:
                self.build_keys(table)
        return self.report()

    def report(self) -> ValidationReport:
        order = {ERROR: 0, WARNING: 1}
        problems = sorted(self.problems, key=lambda p: order[p.severity])  # stable within
        rows = {n: t.rows for n, t in self.tables.items() if t.rows is not None}
        return ValidationReport(self.source, tuple(problems), rows)

    def load(self, spec: TableSpec, file: TableFile) -> None:
        """Create the raw relation of a table and read its column names and types."""
        relation = f"r_{spec.name}"
        table = _Table(spec, file, relation)
        self.tables[spec.name] = table
        kind = "TEMP TABLE" if spec.name in SMALL_TABLES else "VIEW"
        where = ""
        if self.runs_sql is not None:
            where = f" WHERE {self.runs_sql.format(course_id='course_id')}"
        with self.reading(table):
            self.con.execute(
                f"CREATE OR REPLACE {kind} {relation} AS SELECT * FROM {file.scan_sql()}{where}"
            )
            described = self.con.execute(f"DESCRIBE {relation}").fetchall()
            table.columns = {row[0]: row[1] for row in described}
        if table.readable and file.fmt == "csv":
            self.check_csv_layout(table)

    def check_csv_layout(self, table: _Table) -> None:
        """Ragged CSV rows (a stray delimiter) make DuckDB's sniffer skip lines or read a single
        column; when the columns read are not the header's, name the ragged lines instead."""
        try:
            header = csv_header_line(table.file)
        except OSError as exc:
            self.unreadable(table, exc)
            return
        if not header.strip():
            table.readable = False
            table.rows = 0
            # No header means no columns: later steps cannot read even an empty table from it.
            self.add(
                WARNING if TABLES[table.name].optional else ERROR,
                table.name,
                None,
                "empty_table",
                f"{table.file.path.name} is empty (not even a header line)",
                count=0,
            )
            return
        delimiters = [d for d in CSV_DELIMITERS if d in header]
        names = list(table.columns)
        if not delimiters:
            return
        if len(names) > 1 and any(_header_fields(header, d) == names for d in delimiters):
            return
        delim = max(delimiters, key=header.count)
        n_fields = len(_header_fields(header, delim))
        fields = (
            f"len(string_split(regexp_replace(line, '\"[^\"]*\"', '', 'g'), {_literal(delim)}))"
        )
        cond = f"trim(line) <> '' AND {fields} <> {n_fields}"
        lines = csv_lines_sql(table.file)
        with self.reading(table):
            bad = self.con.execute(f"SELECT count(*) FROM {lines} WHERE {cond}").fetchone()[0]
            examples = self.fetch_dicts(
                f"SELECT line FROM {lines} WHERE {cond} LIMIT {int(self.config.example_rows)}"
            )
        if not table.readable or not bad:
            return
        table.readable = False
        self.add(
            ERROR,
            table.name,
            None,
            "unreadable",
            f"cannot split {table.file.path.name} into columns: its header has {n_fields} "
            f"fields separated by {delim!r} but some lines have a different number (a stray "
            "delimiter or an unquoted value?)",
            count=bad,
            examples=examples,
        )

    # -- columns -----------------------------------------------------------------------------

    def check_columns(self, table: _Table) -> None:
        spec = table.spec
        present = table.columns
        for col in spec.columns:
            if col.name not in present:
                if col.required:
                    self.add(
                        ERROR,
                        table.name,
                        col.name,
                        "missing_column",
                        f"required column {col.name!r} is missing (columns found: "
                        f"{', '.join(present) or 'none'})",
                    )
                continue
            family = _type_family(present[col.name])
            if self.accepts(col, family):
                table.typed[col.name] = self.typed_sql(col, family)
        for name in present:
            known = any(c.name == name for c in spec.columns)
            if known or (spec.attr_prefix and name.startswith(spec.attr_prefix)):
                continue
            hint = (
                f"; static attributes belong on enrollments as {ATTR_PREFIX}*"
                if spec.name != "enrollments"
                else f"; static attributes need the {ATTR_PREFIX} prefix"
            )
            self.add(
                WARNING,
                table.name,
                name,
                "unknown_column",
                f"column {name!r} is not part of the contract and is ignored{hint}",
            )

    @staticmethod
    def accepts(col: Column, family: str) -> bool:
        """Physical types that can be read as the column's kind (text is checked per value)."""
        if family in ("null", "text"):
            return True
        if col.kind is Kind.STRING:
            return family == "integer"
        if col.kind is Kind.TIMESTAMP:
            return family == "timestamp"
        return family in ("integer", "float")

    @staticmethod
    def typed_sql(col: Column, family: str) -> str:
        q = f"r.{_quote(col.name)}"
        if col.kind is Kind.STRING:
            return f"CAST({q} AS VARCHAR)"
        target = "TIMESTAMPTZ" if col.kind is Kind.TIMESTAMP else "DOUBLE"
        cast = "TRY_CAST" if family == "text" else "CAST"
        return f"{cast}({q} AS {target})"

    # -- row checks --------------------------------------------------------------------------

    def column_checks(self, table: _Table) -> list[_RowCheck]:
        """Types, nulls and implausible timestamps: checks every table gets."""
        checks = []
        for col in table.spec.columns:
            if col.name not in table.columns:
                continue
            raw = f"r.{_quote(col.name)}"
            duck_type = table.columns[col.name]
            family = _type_family(duck_type)
            if col.name not in table.typed:
                checks.append(
                    _RowCheck(
                        ERROR,
                        col.name,
                        "wrong_type",
                        f"column has type {duck_type}; expected {_KIND_WORDS[col.kind]}",
                        f"{raw} IS NOT NULL",
                    )
                )
                continue
            typed = table.typed[col.name]
            if family == "text" and col.kind is not Kind.STRING:
                checks.append(
                    _RowCheck(
                        ERROR,
                        col.name,
                        "wrong_type",
                        f"values cannot be read as {_KIND_WORDS[col.kind]}",
                        f"{raw} IS NOT NULL AND {typed} IS NULL",
                    )
                )
            if not col.nullable:
                blank = f" OR trim({typed}) = ''" if col.kind is Kind.STRING else ""
                checks.append(
                    _RowCheck(
                        ERROR,
                        col.name,
                        "null",
                        "required column has missing (null or blank) values",
                        f"({raw} IS NULL{blank})",
                    )
                )
            if col.kind is Kind.TIMESTAMP:
                checks.append(
                    _RowCheck(
                        ERROR,
                        col.name,
                        "implausible_timestamp",
                        f"timestamps before {self.config.earliest_timestamp} or on/after "
                        f"{self.config.latest_timestamp}",
                        f"({typed} < {self.earliest} OR {typed} >= {self.latest})",
                    )
                )
        return checks

    def plausible(self, typed: str) -> str:
        return f"{typed} >= {self.earliest} AND {typed} < {self.latest}"

    def outside_course(self, table: _Table, column: str) -> _RowCheck:
        """Timestamps more than max_days_outside_course days before start or after end."""
        days = int(self.config.max_days_outside_course)
        t = table.typed[column]
        return _RowCheck(
            ERROR,
            column,
            "outside_course",
            f"more than {days} days before its course run starts or after it ends",
            f"c.course_id IS NOT NULL AND {self.plausible(t)} AND "
            f"({t} < c.earliest_ok OR {t} > c.latest_ok)",
            context=", c.start_at AS course_start_at, c.end_at AS course_end_at",
        )

    def check_rows(self, table: _Table) -> None:
        checks = self.column_checks(table)
        joins: list[str] = []
        typed = table.typed
        name = table.name
        has_courses = "courses" in self.keys
        has_bounds = "course_bounds" in self.keys
        refers_to_course = name in ("enrollments", "assignments", "events")
        if refers_to_course and has_courses and "course_id" in typed:
            joins.append(f"LEFT JOIN k_courses AS c ON c.course_id = {typed['course_id']}")
        if name == "courses" and {"start_at", "end_at"} <= typed.keys():
            checks.append(
                _RowCheck(
                    ERROR,
                    "end_at",
                    "course_end_before_start",
                    "course run ends before (or when) it starts",
                    f"{typed['end_at']} <= {typed['start_at']}",
                )
            )
        if name in ("enrollments", "assignments") and joins:
            assignments = name == "assignments"
            checks.append(
                _RowCheck(
                    WARNING if assignments else ERROR,
                    "course_id",
                    "unknown_course",
                    "course_id not found in courses"
                    + ("; these assignments are ignored" if assignments else ""),
                    f"{typed['course_id']} IS NOT NULL AND c.course_id IS NULL",
                )
            )
        if name == "enrollments":
            if {"enrolled_at", "unenrolled_at"} <= typed.keys():
                checks.append(
                    _RowCheck(
                        ERROR,
                        "unenrolled_at",
                        "unenrolled_before_enrolled",
                        "unenrolled_at is before enrolled_at",
                        f"{typed['unenrolled_at']} < {typed['enrolled_at']}",
                    )
                )
            if joins and has_bounds:
                for column in ("enrolled_at", "unenrolled_at"):
                    if column in typed:
                        checks.append(self.outside_course(table, column))
        if name == "assignments" and joins and has_bounds and "due_at" in typed:
            checks.append(self.outside_course(table, "due_at"))
        if name == "events":
            checks += self.event_checks(table, joins, has_bounds)
        if self.exported_at is not None:
            exported = _literal(self.exported_at.isoformat())
            for column in OBSERVED_TIMESTAMPS.get(name, ()):
                if column in typed:
                    checks.append(
                        _RowCheck(
                            ERROR,
                            column,
                            "after_exported_at",
                            f"timestamps after the source's export time exported_at = "
                            f"{self.exported_at.isoformat()} ({SOURCE_INFO_FILE} or "
                            "--exported-at)",
                            f"{typed[column]} > TIMESTAMPTZ {exported}",
                        )
                    )
        self.run_row_checks(table, checks, " ".join(joins))

    def event_checks(self, table: _Table, joins: list[str], has_bounds: bool) -> list[_RowCheck]:
        checks = []
        typed = table.typed
        event_type = typed.get("event_type")
        if event_type:
            vocabulary = ", ".join(_literal(t) for t in EVENT_TYPES)
            checks.append(
                _RowCheck(
                    ERROR,
                    "event_type",
                    "unknown_event_type",
                    f"event types outside the contract's vocabulary ({', '.join(EVENT_TYPES)}; "
                    "use 'activity' for anything else)",
                    f"{event_type} IS NOT NULL AND {event_type} NOT IN ({vocabulary})",
                    distinct_on=event_type,
                )
            )
        if event_type and "value" in typed:
            value = typed["value"]
            ranges = [
                f"({event_type} = {_literal(str(et))} AND NOT ({value} BETWEEN {lo} AND {hi}))"
                for et, (lo, hi) in VALUE_RANGES.items()
            ]
            described = "; ".join(f"{et} {lo:g}–{hi:g}" for et, (lo, hi) in VALUE_RANGES.items())
            checks.append(
                _RowCheck(
                    ERROR,
                    "value",
                    "value_out_of_range",
                    f"scores or ratings out of range ({described})",
                    f"{value} IS NOT NULL AND ({' OR '.join(ranges)})",
                )
            )
        student, course = typed.get("student_id"), typed.get("course_id")
        if student and course and "enrollments" in self.keys:
            joins.append(
                f"LEFT JOIN k_enrollments AS e ON e.student_id = {student} "
                f"AND e.course_id = {course}"
            )
            share = self.config.max_unknown_enrollment_share
            checks.append(
                _RowCheck(
                    WARNING,
                    "student_id, course_id",
                    "unknown_enrollment",
                    "(student_id, course_id) has no enrollment; such events are ignored "
                    f"(an error above {share:.2%} of events: ids do not match between tables)",
                    f"{student} IS NOT NULL AND {course} IS NOT NULL AND e.student_id IS NULL",
                    error_above_share=share,
                )
            )
        if event_type and course and "assignments" in self.keys:
            item = typed.get("item_id", "CAST(NULL AS VARCHAR)")
            joins.append(
                f"LEFT JOIN k_assignments AS a ON a.assignment_id = {item} "
                f"AND a.course_id = {course}"
            )
            checks.append(
                _RowCheck(
                    WARNING,
                    "item_id",
                    "unknown_assignment",
                    f"{EventType.ASSIGNMENT_SUBMIT} whose item_id is not an assignment of the "
                    "event's course; it counts as a submission but meets no deadline",
                    f"{event_type} = {_literal(EventType.ASSIGNMENT_SUBMIT)} "
                    "AND a.assignment_id IS NULL",
                )
            )
        joined_courses = any(j.startswith("LEFT JOIN k_courses") for j in joins)
        if has_bounds and joined_courses and "ts" in typed:
            checks.append(self.outside_course(table, "ts"))
        return checks

    def run_row_checks(self, table: _Table, checks: list[_RowCheck], joins: str) -> None:
        """One scan for all counts, then one LIMIT query per check that found something."""
        from_sql = f"{table.relation} AS r {joins}"
        counts = ", ".join(
            f"count(*) FILTER (WHERE {c.condition}) AS c{i}" for i, c in enumerate(checks)
        )
        with self.reading(table):
            result = self.con.execute(
                f"SELECT count(*){', ' + counts if counts else ''} FROM {from_sql}"
            ).fetchone()
        if not table.readable:
            return
        table.rows = int(result[0])
        if table.rows == 0 and self.mode == "slice":
            return  # the merge decides on the total
        if table.rows == 0:
            self.add(
                ERROR if table.name in MUST_HAVE_ROWS else WARNING,
                table.name,
                None,
                "empty_table",
                f"table {table.name!r} has no rows",
                count=0,
            )
            return
        for ordinal, (check, count) in enumerate(zip(checks, result[1:], strict=True)):
            if not count:
                continue
            severity = check.severity
            if self.mode != "slice":
                severity = escalated(severity, count, table.rows, check.error_above_share)
            with self.reading(table):
                examples = self.examples(table, check, from_sql)
                self.add(
                    severity,
                    table.name,
                    check.column,
                    check.check,
                    check.message,
                    count=count,
                    examples=examples,
                    ordinal=ordinal,
                    share=check.error_above_share,
                    distinct=check.distinct_on is not None,
                )
            if not table.readable:
                return

    def example_columns(self, table: _Table, column: str | None, alias: str = "r.") -> str:
        """Raw columns shown in examples: attr_* values only when the problem is about them."""
        shown = [
            name for name in table.columns if not name.startswith(ATTR_PREFIX) or name == column
        ]
        return ", ".join(f"{alias}{_quote(n)}" for n in shown)

    def examples(self, table: _Table, check: _RowCheck, from_sql: str) -> list[dict[str, Any]]:
        """The first rows in the order of their shown values (so that a partitioned check, which
        sorts its slices' examples alike, shows the same rows)."""
        shown = self.example_columns(table, check.column)
        select = shown + check.context
        distinct = f"DISTINCT ON ({check.distinct_on}) " if check.distinct_on else ""
        first = f"{check.distinct_on} NULLS LAST, " if check.distinct_on else ""
        order = ", ".join(f"{c} NULLS LAST" for c in shown.split(", "))
        return self.fetch_dicts(
            f"SELECT {distinct}{select} FROM {from_sql} WHERE {check.condition} "
            f"ORDER BY {first}{order} LIMIT {int(self.config.example_rows)}"
        )

    # -- duplicates --------------------------------------------------------------------------

    def check_duplicates(self, table: _Table) -> None:
        """Exact duplicate rows are warnings; keys shared by differing rows are errors."""
        cols = ", ".join(_quote(c) for c in table.columns)
        n_examples = int(self.config.example_rows)
        shown = self.example_columns(table, None, alias="")
        row_hash = f"hash({cols})"
        hashes, groups = f"dup_hashes_{table.name}", f"dup_rows_{table.name}"
        with self.reading(table):
            # Grouping 64-bit row hashes is much cheaper than grouping whole rows; the few rows
            # whose hash repeats are then grouped exactly (a hash collision is not a duplicate).
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {hashes} AS SELECT {row_hash} AS h "
                f"FROM {table.relation} GROUP BY h HAVING count(*) > 1"
            )
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {groups} AS SELECT {cols}, count(*) AS copies "
                f"FROM {table.relation} WHERE {row_hash} IN (SELECT h FROM {hashes}) "
                f"GROUP BY {cols} HAVING count(*) > 1"
            )
            surplus = self.con.execute(
                f"SELECT coalesce(sum(copies - 1), 0) FROM {groups}"
            ).fetchone()[0]
            if surplus:
                examples = self.fetch_dicts(
                    f"SELECT {shown}, copies FROM {groups} ORDER BY copies DESC, "
                    + ", ".join(f"{c} NULLS LAST" for c in shown.split(", "))
                    + f" LIMIT {n_examples}"
                )
                self.add(
                    WARNING,
                    table.name,
                    None,
                    "duplicate_row",
                    "exact duplicate rows; the extra copies (counted here) are dropped when "
                    "features are built",
                    count=surplus,
                    examples=examples,
                    ordinal=DUPLICATES_ORDINAL,
                )
            key = table.spec.key
            if key and all(k in table.typed for k in key):
                self.check_conflicting_keys(table, key, cols, shown)

    def check_conflicting_keys(
        self, table: _Table, key: tuple[str, ...], cols: str, shown: str
    ) -> None:
        key_cols = ", ".join(_quote(k) for k in key)
        not_null = " AND ".join(f"{_quote(k)} IS NOT NULL" for k in key)
        distinct_rows = f"(SELECT DISTINCT {cols} FROM {table.relation}) AS d"
        conflicts = (
            f"(SELECT {key_cols}, count(*) AS n FROM {distinct_rows} WHERE {not_null} "
            f"GROUP BY {key_cols} HAVING count(*) > 1)"
        )
        n_keys, n_rows = self.con.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM {conflicts}"
        ).fetchone()
        if not n_keys:
            return
        examples = self.fetch_dicts(
            f"SELECT {shown} FROM {distinct_rows} SEMI JOIN {conflicts} AS k USING ({key_cols}) "
            f"ORDER BY {key_cols} LIMIT {int(self.config.example_rows)}"
        )
        self.add(
            ERROR,
            table.name,
            ", ".join(key),
            "duplicate_key",
            f"{n_keys} {'/'.join(key)} value{'s' * (n_keys != 1)} appear in several rows "
            "with different contents (which one is right?)",
            count=n_rows,
            examples=examples,
        )

    # -- keys for cross-table checks ---------------------------------------------------------

    def build_keys(self, table: _Table) -> None:
        """Distinct keys of a small table, for the left joins of the tables that refer to it."""
        typed = table.typed
        with self.reading(table):
            if table.name == "courses" and "course_id" in typed:
                bounds = {"start_at", "end_at"} <= typed.keys()
                start = f"min({typed['start_at']})" if bounds else "CAST(NULL AS TIMESTAMPTZ)"
                end = f"max({typed['end_at']})" if bounds else "CAST(NULL AS TIMESTAMPTZ)"
                # Bounds are computed here once: interval arithmetic on every event is slow.
                days = int(self.config.max_days_outside_course)
                self.con.execute(
                    "CREATE OR REPLACE TEMP TABLE k_courses AS SELECT *, "
                    f"start_at - to_days({days}) AS earliest_ok, "
                    f"end_at + to_days({days}) AS latest_ok FROM (SELECT {typed['course_id']} "
                    f"AS course_id, {start} AS start_at, {end} AS end_at FROM {table.relation} "
                    f"AS r WHERE {typed['course_id']} IS NOT NULL GROUP BY 1)"
                )
                self.keys.add("courses")
                if bounds:
                    self.keys.add("course_bounds")
            if table.name == "enrollments" and {"student_id", "course_id"} <= typed.keys():
                self.con.execute(
                    "CREATE OR REPLACE TEMP TABLE k_enrollments AS SELECT DISTINCT "
                    f"{typed['student_id']} AS student_id, {typed['course_id']} AS course_id "
                    f"FROM {table.relation} AS r"
                )
                self.keys.add("enrollments")
            if table.name == "assignments" and {"assignment_id", "course_id"} <= typed.keys():
                self.con.execute(
                    "CREATE OR REPLACE TEMP TABLE k_assignments AS SELECT DISTINCT "
                    f"{typed['assignment_id']} AS assignment_id, "
                    f"{typed['course_id']} AS course_id FROM {table.relation} AS r"
                )
                self.keys.add("assignments")
