"""Point-in-time snapshots, labels and behavioural features, built in DuckDB from one pass.

How it stays fast: snapshot times of a course run are `anchor + k * step` (weekly), so every
window the features need (7/14/28 days) is a union of whole step-sized *bins* before the snapshot.
Events are read once and rolled up to (enrollment, day), then to (enrollment, bin); every weekly
feature is a window function over that small per-enrollment bin grid. Adding snapshots costs one
more grid row, not another scan of the events.

How it stays honest (point-in-time rule): a feature at t reads only bins < k, i.e. rows with
timestamps < t. Labels read the bins at and after k and are never features. The population at t
depends only on enrolments at or before t and unenrolments before t.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from configs.schema import Config
from features.catalog import (
    CHANGE_TYPES,
    KEY_COLUMNS,
    LABEL_COLUMN,
    META_COLUMNS,
    PERCENTILE_SCORES,
    feature_names,
)
from features.contract import ATTR_PREFIX, EVENTS, EventType
from features.deadlines import DueList, deadline_features
from features.errors import NotaloneError
from features.sources import SourceError, connect, register_views

DAY_SECONDS = 86_400

# Per-type daily counts carried through the rollups: (column stem, event type).
COUNTED_TYPES: tuple[tuple[str, str], ...] = (
    ("lesson_views", EventType.LESSON_VIEW),
    ("lesson_completions", EventType.LESSON_COMPLETE),
    ("submissions", EventType.ASSIGNMENT_SUBMIT),
    ("quiz_attempts", EventType.QUIZ_ATTEMPT),
    ("logins", EventType.LOGIN),
    ("questions", EventType.QUESTION),
    ("support_tickets", EventType.SUPPORT_TICKET),
)
# Windowed features per type; questions and tickets get the support window only.
WINDOWED_STEMS = ("lesson_views", "lesson_completions", "submissions", "quiz_attempts", "logins")
# Week-on-week change per event type (click sources): the same stems as the catalogue's.
CHANGE_STEMS = CHANGE_TYPES
SLOPE_WEIGHTS = (-1.5, -0.5, 0.5, 1.5)  # least-squares slope over 4 equally spaced weeks
BITMASK_DAYS = 63  # days of a bin that fit in a BIGINT bit mask (active-day counting)


class FeatureError(NotaloneError):
    """Features cannot be built from this source with this configuration."""


Progress = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """Bin arithmetic shared by every query: sizes in bins, derived from the config."""

    step_s: int
    windows: tuple[int, ...]  # in bins
    support_bins: int
    horizon_bins: int
    lookback_bins: int  # the furthest any feature looks back, in bins

    @classmethod
    def from_config(cls, config: Config) -> Plan:
        step = config.snapshots.step_days

        def bins(days: int, what: str) -> int:
            if days % step:
                raise FeatureError(f"{what} ({days} days) must be a multiple of step_days ({step})")
            return days // step

        windows = tuple(bins(w, "features.windows_days") for w in config.features.windows_days)
        support = bins(config.features.support_window_days, "features.support_window_days")
        horizon = bins(config.snapshots.horizon_days, "snapshots.horizon_days")
        lookback = max((*windows, support, len(SLOPE_WEIGHTS), 2))
        return cls(step * DAY_SECONDS, windows, support, horizon, lookback)


def _attr_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    cols = con.execute("SELECT column_name FROM (DESCRIBE raw_enrollments)").fetchall()
    return [c for (c,) in cols if c.startswith(ATTR_PREFIX)]


def _has_column(con: duckdb.DuckDBPyConnection, view: str, column: str) -> bool:
    cols = con.execute(f"SELECT column_name FROM (DESCRIBE {view})").fetchall()
    return column in {c for (c,) in cols}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class CalendarWeeks:
    """Snapshots at `first`, `first` + step, ... up to `last` for every enrollment active then:
    what the weekly scorer would have scored at each of those times (a backtest's frame)."""

    first: datetime
    last: datetime

    def key(self) -> str:
        return f"calendar:{self.first.isoformat()}..{self.last.isoformat()}"


def _prepare_base_tables(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    as_of: datetime | CalendarWeeks | None,
    plan: Plan,
) -> list[str]:
    """Typed courses/enrollments with per-course anchors and snapshot ranges."""
    has_mentor = _has_column(con, "raw_enrollments", "mentor_id")
    mentor = "CAST(mentor_id AS VARCHAR)" if has_mentor else "NULL::VARCHAR"
    attrs = _attr_columns(con) if config.features.include_attrs else []
    attr_sql = "".join(f", {_q(a)}" for a in attrs)
    step_s = plan.step_s
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE courses AS
        SELECT DISTINCT CAST(course_id AS VARCHAR) AS course_id,
               epoch(CAST(start_at AS TIMESTAMPTZ)) AS start_s,
               epoch(CAST(end_at AS TIMESTAMPTZ)) AS end_s
        FROM raw_courses
        """
    )
    offset_s = config.snapshots.first_offset_days * DAY_SECONDS
    if as_of is None:
        # Weekly snapshots from start + first_offset to the end: anchor so that t = anchor + k*step.
        shift = offset_s % step_s
        k_min = offset_s // step_s
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE anchors AS
            SELECT course_id, start_s, end_s, start_s + {shift} AS anchor_s,
                   {k_min}::INTEGER AS k_first,
                   CAST(floor((end_s - start_s - {shift}) / {step_s}) AS INTEGER) AS k_last
            FROM courses
            WHERE end_s - start_s - {shift} >= {k_min} * {step_s}
            """
        )
    elif isinstance(as_of, CalendarWeeks):
        # Every step from `first` to `last` at which a run is going (from its first snapshot
        # on): anchored on the calendar, not on each run's start, so all runs share the times.
        t0, t1 = as_of.first.timestamp(), as_of.last.timestamp()
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE anchors AS
            SELECT course_id, start_s, end_s, {t0}::DOUBLE AS anchor_s,
                   CAST(greatest(ceil((start_s + {offset_s} - {t0}) / {step_s}), 0) AS INTEGER)
                       AS k_first,
                   CAST(floor((least(end_s, {t1}) - {t0}) / {step_s}) AS INTEGER) AS k_last
            FROM courses
            WHERE greatest(ceil((start_s + {offset_s} - {t0}) / {step_s}), 0)
                  <= floor((least(end_s, {t1}) - {t0}) / {step_s})
            """
        )
    else:
        t = as_of.timestamp()
        # The same population as the weekly snapshots: a run is scored from its first snapshot
        # (start + first_offset_days) on; before that nobody has had time to show anything and
        # the model has never seen such a row.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE anchors AS
            SELECT course_id, start_s, end_s, {t}::DOUBLE AS anchor_s,
                   0::INTEGER AS k_first, 0::INTEGER AS k_last
            FROM courses WHERE start_s + {offset_s} <= {t} AND {t} <= end_s
            """
        )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE enr AS
        SELECT (row_number() OVER (ORDER BY course_id, student_id))::INTEGER AS eid, *
        FROM (
            SELECT DISTINCT CAST(e.student_id AS VARCHAR) AS student_id,
                   CAST(e.course_id AS VARCHAR) AS course_id,
                   epoch(CAST(e.enrolled_at AS TIMESTAMPTZ)) AS enrolled_s,
                   epoch(CAST(e.unenrolled_at AS TIMESTAMPTZ)) AS unenrolled_s,
                   CAST(e.curator_id AS VARCHAR) AS curator_id,
                   {mentor} AS mentor_id
                   {attr_sql}
            FROM raw_enrollments e
        ) e
        JOIN anchors a USING (course_id)
        """
    )
    dupes = con.execute(
        "SELECT student_id, course_id, count(*) FROM enr GROUP BY ALL HAVING count(*) > 1 LIMIT 5"
    ).fetchall()
    if dupes:
        raise FeatureError(
            "table 'enrollments' has conflicting rows for the same (student_id, course_id), "
            f"e.g. {dupes}; run `notalone validate` for details"
        )
    return attrs


def has_duplicate_events(con: duckdb.DuckDBPyConnection) -> bool:
    """Might the events hold exact duplicate rows? (A repeated 64-bit row hash, as validate.)

    A hash collision only sends the build down the exact (slower) de-duplicating path.
    """
    present = [c.name for c in EVENTS.columns if _has_column(con, "raw_events", c.name)]
    cols = ", ".join(_q(c) for c in present)
    (repeats,) = con.execute(
        f"SELECT count(*) FROM (SELECT hash({cols}) AS h FROM raw_events "
        "GROUP BY h HAVING count(*) > 1)"
    ).fetchall()[0]
    return repeats > 0


def _events_sql(con: duckdb.DuckDBPyConnection, distinct: bool, where: str = "") -> str:
    """Events joined to their enrollment (unknown ones drop out: validate reports them).

    `distinct` drops exact duplicates; it groups every event row, so it is used only when
    duplicates may exist. Nothing is materialised: the rows stream into the aggregation.
    """
    has = _has_column
    item = "CAST(x.item_id AS VARCHAR)" if has(con, "raw_events", "item_id") else "NULL::VARCHAR"
    value = "CAST(x.value AS DOUBLE)" if has(con, "raw_events", "value") else "NULL::DOUBLE"
    ts = "epoch(CAST(x.ts AS TIMESTAMPTZ))"
    return f"""
        SELECT {"DISTINCT" if distinct else ""} e.eid, {ts} AS ts_s,
               CAST(x.event_type AS VARCHAR) AS event_type, {item} AS item_id, {value} AS value,
               CAST(floor(({ts} - e.anchor_s) / {DAY_SECONDS}) AS INTEGER) AS day
        FROM raw_events x
        JOIN (SELECT e.eid, e.student_id, e.course_id, a.anchor_s
              FROM enr e JOIN anchors a USING (course_id)) e
          ON e.student_id = CAST(x.student_id AS VARCHAR)
         AND e.course_id = CAST(x.course_id AS VARCHAR)
        WHERE x.ts IS NOT NULL {where}
    """


def _rollups(
    con: duckdb.DuckDBPyConnection, plan: Plan, progress: Progress, duplicates: bool | None
) -> None:
    """One pass over events rolled up to (enrollment, bin); submissions and feedback apart."""
    step_s = plan.step_s
    steps_per_day = step_s // DAY_SECONDS
    submit, login, feedback = (
        EventType.ASSIGNMENT_SUBMIT.value,
        EventType.LOGIN.value,
        EventType.FEEDBACK.value,
    )
    if duplicates is None:
        progress("duplicate check")
        duplicates = has_duplicate_events(con)
    # Counting by a small integer code is cheaper than comparing strings once per counted type.
    code = " ".join(f"WHEN '{t}' THEN {i}" for i, (_, t) in enumerate(COUNTED_TYPES))
    type_counts = ", ".join(
        f"count(*) FILTER (WHERE type_code = {i}) AS n_{stem}"
        for i, (stem, _) in enumerate(COUNTED_TYPES)
    )
    login_code = next(i for i, (_, t) in enumerate(COUNTED_TYPES) if t == login)
    view_code = next(i for i, (_, t) in enumerate(COUNTED_TYPES) if t == EventType.LESSON_VIEW)
    # Every enrollment's bin grid spans its history and label horizon; bins outside it are
    # clamped into its first/last bin, so cumulative sums lose nothing.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE edges AS
        SELECT e.eid, a.k_first - {plan.lookback_bins + 1} AS lo,
               a.k_last + {plan.horizon_bins} AS hi
        FROM enr e JOIN anchors a USING (course_id)
        """
    )

    def clamped_bin(day: str) -> str:
        return f"LEAST(GREATEST(CAST(floor({day} / {steps_per_day}) AS INTEGER), g.lo), g.hi)"

    sums = ", ".join(f"sum(n_{stem}) AS n_{stem}" for stem, _ in COUNTED_TYPES)
    # Active days per bin without grouping by day: a bit per day of the bin, OR-ed together and
    # counted (far fewer groups than (enrollment, day)); bins longer than a 64-bit mask count
    # distinct days instead.
    if steps_per_day < BITMASK_DAYS:
        active_days = f"bit_count(bit_or(1::BIGINT << (day - bin * {steps_per_day})))"
    else:
        active_days = "count(DISTINCT day)"
    progress("weekly rollup")
    # Events -> (enrollment, bin) -> clamped into the grid, in one statement.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE activity_bins AS
        SELECT b.eid, LEAST(GREATEST(b.bin, g.lo), g.hi) AS bin,
               sum(n_events) AS n_events, sum(n_active_days) AS n_active_days, {sums},
               max(last_s) AS last_s, max(last_login_s) AS last_login_s,
               max(last_view_s) AS last_view_s
        FROM (
            SELECT eid, bin, count(*) AS n_events, {active_days} AS n_active_days, {type_counts},
                   max(ts_s) AS last_s,
                   max(ts_s) FILTER (WHERE type_code = {login_code}) AS last_login_s,
                   max(ts_s) FILTER (WHERE type_code = {view_code}) AS last_view_s
            FROM (SELECT eid, day, CAST(floor(day / {steps_per_day}) AS INTEGER) AS bin, ts_s,
                         CASE event_type {code} ELSE -1 END AS type_code
                  FROM ({_events_sql(con, duplicates)}))
            GROUP BY eid, bin
        ) b JOIN edges g USING (eid)
        GROUP BY ALL
        """
    )
    progress("submissions and feedback")
    # Few rows: always de-duplicated exactly, so score sums never count a copy twice.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE marks AS
        {_events_sql(con, True, f"AND x.event_type IN ('{submit}', '{feedback}')")}
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE first_submit AS
        SELECT eid, item_id, min(ts_s) AS submit_s FROM marks
        WHERE event_type = '{submit}' AND item_id IS NOT NULL
        GROUP BY eid, item_id
        """
    )
    # Same-time submissions (OULAD dates are whole days) tie on ts: the higher score wins, so the
    # result never depends on thread scheduling.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE bins_cc AS
        SELECT * FROM activity_bins FULL JOIN (
            SELECT m.eid, {clamped_bin("m.day")} AS bin,
                   max(ts_s) FILTER (WHERE event_type = '{submit}') AS last_submit_s,
                   sum(value) FILTER (WHERE event_type = '{submit}') AS score_sum,
                   count(value) FILTER (WHERE event_type = '{submit}') AS score_n,
                   arg_max(value, [ts_s, value]) FILTER (WHERE event_type = '{submit}')
                       AS score_last,
                   arg_max(value, [ts_s, value]) FILTER (WHERE event_type = '{feedback}')
                       AS feedback_last
            FROM marks m JOIN edges g USING (eid)
            GROUP BY ALL
        ) USING (eid, bin)
        """
    )
    for table in ("activity_bins", "marks", "edges"):
        con.execute(f"DROP TABLE {table}")


def _deadlines(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """Per (enrollment, bin): deadlines passing, on-time and late submissions; recent misses."""
    step_s = plan.step_s
    recent = max(plan.windows)
    # Clamp into the enrollment's bin grid (as events are): a deadline long before the grid must
    # still count in the cumulative sums, or "missed" would go negative at scoring time.
    lo, hi = f"n.k_first - {plan.lookback_bins + 1}", f"n.k_last + {plan.horizon_bins}"
    has_weight = _has_column(con, "raw_assignments", "weight")
    weight = "max(CAST(weight AS DOUBLE))" if has_weight else "NULL::DOUBLE"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE due AS
        SELECT e.eid, a.assignment_id, a.weight,
               LEAST(GREATEST(
                   CAST(floor((epoch(CAST(a.due_at AS TIMESTAMPTZ)) - n.anchor_s) / {step_s})
                        AS INTEGER), {lo}), {hi}) AS due_bin,
               epoch(CAST(a.due_at AS TIMESTAMPTZ)) AS due_s,
               f.submit_s,
               -- GREATEST/LEAST skip NULLs: keep "never submitted" NULL explicitly.
               CASE WHEN f.submit_s IS NOT NULL THEN
                   LEAST(GREATEST(CAST(floor((f.submit_s - n.anchor_s) / {step_s}) AS INTEGER),
                                  {lo}), {hi}) END AS submit_bin
        FROM (SELECT CAST(assignment_id AS VARCHAR) AS assignment_id,
                     CAST(course_id AS VARCHAR) AS course_id, due_at, {weight} AS weight
              FROM raw_assignments GROUP BY ALL) a
        JOIN enr e ON e.course_id = a.course_id
        JOIN anchors n ON n.course_id = a.course_id
        LEFT JOIN first_submit f ON f.eid = e.eid AND f.item_id = a.assignment_id
        WHERE a.due_at IS NOT NULL
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE due_bins AS
        SELECT eid, bin, sum(n_due) AS n_due, sum(n_on_time) AS n_on_time, sum(n_late) AS n_late
        FROM (
            SELECT eid, due_bin AS bin, 1 AS n_due,
                   CASE WHEN submit_s <= due_s THEN 1 ELSE 0 END AS n_on_time, 0 AS n_late
            FROM due
            UNION ALL
            SELECT eid, submit_bin AS bin, 0, 0, 1 FROM due WHERE submit_s > due_s
        ) GROUP BY ALL
        """
    )
    # A deadline due in the window before snapshot k and not submitted before t_k.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE due_recent AS
        SELECT eid, k, count(*) AS due_recent,
               count(*) FILTER (WHERE submit_bin IS NULL OR submit_bin >= k) AS missed_recent
        FROM (SELECT eid, due_bin, submit_bin, unnest(range(due_bin + 1, due_bin + {recent + 1}))
                     AS k FROM due)
        GROUP BY ALL
        """
    )
    # The deadline list itself, for the position features (features.deadlines), in list order.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE due_list AS
        SELECT eid, assignment_id, due_s, due_bin, submit_bin, weight FROM due
        """
    )
    con.execute("DROP TABLE due")
    con.execute("DROP TABLE first_submit")


def _course_first(con: duckdb.DuckDBPyConnection) -> None:
    """First bin in which each course run saw each event type.

    Type-specific features are null (unknown, not zero) for a run with no such data before t.
    """
    first_seen = ", ".join(
        f"min(bin) FILTER (WHERE n_{stem} > 0) AS first_{stem}" for stem, _ in COUNTED_TYPES
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE course_first AS
        SELECT e.course_id, {first_seen}
        FROM bins_cc b JOIN enr e USING (eid) GROUP BY e.course_id
        """
    )


GRID_COUNTS = ("events", "active_days", *(stem for stem, _ in COUNTED_TYPES))
GRID_VALUES = (
    "last_s",
    "last_submit_s",
    "last_login_s",
    "last_view_s",
    "score_sum",
    "score_last",
    "feedback_last",
)
GRID_ZERO_FILLED = (
    *(f"n_{stem}" for stem in GRID_COUNTS),
    "score_n",
    "n_due",
    "n_on_time",
    "n_late",
    "due_recent",
    "missed_recent",
)


_FILL_SQL = {True: "0::DOUBLE", False: "'NaN'::DOUBLE"}  # zero-filled counts / values


def _fetch_grid(
    con: duckdb.DuckDBPyConnection, enr: pd.DataFrame, lo: int, hi: int, plan: Plan
) -> dict[str, np.ndarray]:
    """The dense bin grid of enrollments lo..hi, sorted by (eid, bin), as float arrays.

    Each enrollment's grid covers its history and label horizon; the sparse per-bin tables are
    fetched and scattered into it (counts default to 0, values to NaN = none).
    """
    chunk = enr.loc[lo:hi]
    first = (chunk["k_first"].to_numpy(dtype=np.int64)) - (plan.lookback_bins + 1)
    sizes = chunk["k_last"].to_numpy(dtype=np.int64) + plan.horizon_bins - first + 1
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    n = int(sizes.sum())
    eids = chunk.index.to_numpy(dtype=np.int64)
    grid = {
        "eid": np.repeat(eids, sizes),
        "bin": np.repeat(first, sizes) + np.arange(n) - np.repeat(offsets, sizes),
    }
    grid |= {c: np.zeros(n) for c in GRID_ZERO_FILLED}
    grid |= {c: np.full(n, np.nan) for c in GRID_VALUES}
    sparse = (
        ("bins_cc", "bin", [*(f"n_{s}" for s in GRID_COUNTS), "score_n", *GRID_VALUES]),
        ("due_bins", "bin", ["n_due", "n_on_time", "n_late"]),
        ("due_recent", "k", ["due_recent", "missed_recent"]),
    )
    for table, bin_col, cols in sparse:
        # Nulls filled in DuckDB (0 for counts, NaN for values): plain arrays, no masks.
        values = ", ".join(
            f"coalesce({c}::DOUBLE, {_FILL_SQL[c in GRID_ZERO_FILLED]}) AS {c}" for c in cols
        )
        rows = con.execute(
            f"SELECT eid, {bin_col} AS bin, {values} FROM {table} WHERE eid BETWEEN {lo} AND {hi}"
        ).fetchnumpy()
        where = np.asarray(rows["eid"], dtype=np.int64) - lo  # eids are consecutive integers
        offset = np.asarray(rows["bin"], dtype=np.int64) - first[where]
        inside = (offset >= 0) & (offset < sizes[where])  # recent misses may reach past the grid
        at = offsets[where[inside]] + offset[inside]
        for c in cols:
            grid[c][at] = np.asarray(rows[c], dtype=float)[inside]
    return grid


def _fetch_due(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> DueList:
    """The deadline list of enrollments lo..hi, in (eid, due time, assignment) order."""
    cols = con.execute(
        f"""
        SELECT eid, due_s::DOUBLE AS due_s, due_bin::DOUBLE AS due_bin,
               submit_bin::DOUBLE AS submit_bin, weight::DOUBLE AS weight
        FROM due_list WHERE eid BETWEEN {lo} AND {hi} ORDER BY eid, due_s, assignment_id
        """
    ).fetchnumpy()
    return DueList.from_columns(cols)


class _Windows:
    """Window sums over a sorted (eid, bin) grid, evaluated at the rows `at` only.

    Every sum is over rows before the evaluated row within its enrollment; running sums are over
    the whole grid (history rows count), but results are gathered for snapshot rows alone.
    """

    def __init__(self, eid: np.ndarray, at: np.ndarray):
        n = len(eid)
        new_group = np.r_[True, eid[1:] != eid[:-1]]
        starts = np.flatnonzero(new_group)
        sizes = np.diff(np.r_[starts, n])
        self.n = n
        self.at = at
        self.start = np.repeat(starts, sizes)[at]
        self.end = np.repeat(starts + sizes, sizes)[at]
        # The same column feeds several windows and the same window several columns: running
        # sums (kept with their column, so its id stays valid) and window starts are cached.
        self._cums: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._lows: dict[int | None, np.ndarray] = {None: self.start}

    def _cum(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Running sum of x (with a leading 0) and its values at the evaluated rows."""
        key = id(x)
        if key not in self._cums:
            cum = np.concatenate(([0.0], np.cumsum(x)))
            self._cums[key] = (x, cum, cum[self.at])
        return self._cums[key][1:]

    def before(self, x: np.ndarray, n: int | None = None) -> np.ndarray:
        """Sum of x over the n rows before each row (all earlier rows when n is None)."""
        cum, at_row = self._cum(x)
        if n not in self._lows:
            self._lows[n] = np.maximum(self.at - n, self.start)
        return at_row - cum[self._lows[n]]

    def ahead(self, x: np.ndarray, n: int) -> np.ndarray:
        """Sum of x over this row and the n - 1 rows after it."""
        cum, at_row = self._cum(x)
        return cum[np.minimum(self.at + n, self.end)] - at_row

    def lag(self, x: np.ndarray, j: int) -> np.ndarray:
        src = self.at - j
        return np.where(src >= self.start, x[np.maximum(src, 0)], np.nan)

    def last_before(self, x: np.ndarray) -> np.ndarray:
        """The last non-null x in the rows before each row (rows are in time order)."""
        # Index of the latest non-null row at or before each row; it belongs to the evaluated
        # row's enrollment only if it is not before the enrollment's first row.
        latest = np.maximum.accumulate(np.where(np.isnan(x), -1, np.arange(self.n)))
        src = latest[np.maximum(self.at - 1, 0)]
        ok = (self.at > self.start) & (src >= self.start)
        return np.where(ok, x[np.maximum(src, 0)], np.nan)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _window_features(
    g: dict[str, np.ndarray], at: np.ndarray, plan: Plan, config: Config
) -> dict[str, np.ndarray]:
    """Every windowed feature at the grid rows `at` (snapshot rows), from the bins before them."""
    w = _Windows(g["eid"], at)
    out: dict[str, np.ndarray] = {
        "last_s": w.last_before(g["last_s"]),
        "last_submit_s": w.last_before(g["last_submit_s"]),
        "last_login_s": w.last_before(g["last_login_s"]),
        "last_view_s": w.last_before(g["last_view_s"]),
    }
    for days, nb in zip(config.features.windows_days, plan.windows, strict=True):
        out[f"events_{days}d"] = w.before(g["n_events"], nb)
        out[f"active_days_{days}d"] = w.before(g["n_active_days"], nb)
        for stem in WINDOWED_STEMS:
            out[f"{stem}_{days}d"] = w.before(g[f"n_{stem}"], nb)
    out["events_total"] = w.before(g["n_events"])
    week = [w.lag(g["n_events"], j) for j in range(1, len(SLOPE_WEIGHTS) + 1)]  # k-1, k-2, ...
    out["events_change_7d"] = _divide(week[0] - week[1], week[1])
    for stem in CHANGE_STEMS:
        last, before = w.lag(g[f"n_{stem}"], 1), w.lag(g[f"n_{stem}"], 2)
        out[f"{stem}_change_7d"] = _divide(last - before, before)
    weights = np.array(SLOPE_WEIGHTS)
    out["events_slope_28d"] = sum(
        wt * y for wt, y in zip(weights, reversed(week), strict=True)
    ) / float((weights**2).sum())
    due = w.before(g["n_due"])
    on_time = w.before(g["n_on_time"])
    late = w.before(g["n_late"])
    out["deadlines_due"] = due
    out["deadlines_missed"] = due - on_time - late
    out["deadlines_late"] = late
    out["on_time_share"] = _divide(on_time, due)
    out["deadlines_due_28d"] = g["due_recent"][at]
    out["deadlines_missed_28d"] = g["missed_recent"][at]
    score_sum = np.nan_to_num(g["score_sum"])
    sum_all, n_all = w.before(score_sum), w.before(g["score_n"])
    recent = max(plan.windows)
    sum_recent, n_recent = w.before(score_sum, recent), w.before(g["score_n"], recent)
    out["score_mean"] = _divide(sum_all, n_all)
    out["score_last"] = w.last_before(g["score_last"])
    older = _divide(sum_all - sum_recent, n_all - n_recent)
    out["score_trend"] = np.where(n_recent > 0, _divide(sum_recent, n_recent) - older, np.nan)
    out["questions_sup"] = w.before(g["n_questions"], plan.support_bins)
    out["tickets_sup"] = w.before(g["n_support_tickets"], plan.support_bins)
    out["feedback_last"] = w.last_before(g["feedback_last"])
    out["events_future"] = w.ahead(g["n_events"], plan.horizon_bins)
    return out


def _percent_rank(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """SQL percent_rank within groups: (rank - 1) / (rows - 1), ties share the lowest rank.

    A single row ranks 0. Plain numpy (one sort) rather than two pandas group-bys: it runs on
    every snapshot row.
    """
    n = len(values)
    order = np.lexsort((values, group))  # by group, then value (NaN last)
    v, g = values[order], group[order]
    rows = np.arange(n)
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_value = new_group | np.r_[True, v[1:] != v[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, rows, 0))
    run_start = np.maximum.accumulate(np.where(new_value, rows, 0))
    starts = np.flatnonzero(new_group)
    size = np.repeat(np.diff(np.r_[starts, n]), np.diff(np.r_[starts, n]))
    ranked = np.where(size > 1, (run_start - group_start) / np.maximum(size - 1, 1), 0.0)
    ranked[np.isnan(v) & (size > 1)] = np.nan
    out = np.empty(n)
    out[order] = ranked
    return out


def _snapshot_index(g: dict[str, np.ndarray], enr: pd.DataFrame, plan: Plan) -> np.ndarray:
    """Grid rows that are snapshots of an enrollment in the population at that time, in the
    output's row order: by as_of, then (course_id, student_id) (the grid's eid order).

    Every feature is gathered at these rows, so the frame comes out in its final order and the
    writer need not sort it (`_sorted` finds it sorted).
    """
    pos = enr.index.get_indexer(g["eid"])
    k = g["bin"].astype(np.int64)

    def per_row(col: str) -> np.ndarray:
        return enr[col].to_numpy(dtype=float)[pos]

    t_s = per_row("anchor_s") + k * plan.step_s
    unenrolled = per_row("unenrolled_s")
    keep = (
        (k >= per_row("k_first"))
        & (k <= per_row("k_last"))
        & (per_row("enrolled_s") <= t_s)
        & ~(unenrolled < t_s)  # NaN (never unenrolled) stays in
    )
    at = np.flatnonzero(keep)
    # The as_of values exactly as `_snapshot_rows` makes them (and `_sorted` compares them).
    as_of = pd.to_datetime(t_s[at], unit="s", utc=True).asi8
    return at[np.argsort(as_of, kind="stable")]


def _snapshot_rows(
    g: dict[str, np.ndarray],
    at: np.ndarray,
    f: dict[str, np.ndarray],
    due: DueList,
    enr: pd.DataFrame,
    course_first: pd.DataFrame,
    plan: Plan,
    config: Config,
    attrs: list[str],
    data_end_s: float,
) -> pd.DataFrame:
    """The snapshot rows `at` of the grid with their features `f`, labels and named columns."""
    # The wide, string-heavy enrollment columns are gathered for snapshot rows only.
    pos = enr.index.get_indexer(g["eid"][at])
    info = enr.take(pos).reset_index(drop=True)
    k = g["bin"][at].astype(np.int64)
    t_s = info["anchor_s"].to_numpy(dtype=float) + k * plan.step_s
    first = course_first.reindex(info["course_id"]).reset_index(drop=True)

    def known(stem: str) -> np.ndarray:
        """Has this course run seen this event type before t? If not, the feature is unknown."""
        return first[f"first_{stem}"].to_numpy(dtype=float) < k

    horizon_s = config.snapshots.horizon_days * DAY_SECONDS
    unenrolled = info["unenrolled_s"].to_numpy()
    dropped = (unenrolled >= t_s) & (unenrolled < t_s + horizon_s)
    if config.snapshots.inactivity_is_dropout:
        dropped |= f["events_future"] == 0
    label = np.where(t_s + horizon_s > data_end_s, np.nan, dropped.astype(float))

    cols: dict[str, object] = {
        "student_id": info["student_id"],
        "course_id": info["course_id"],
        "as_of": pd.to_datetime(t_s, unit="s", utc=True),
        "curator_id": info["curator_id"],
        "mentor_id": info["mentor_id"],
        "course_start": pd.to_datetime(info["start_s"], unit="s", utc=True),
        "course_end": pd.to_datetime(info["end_s"], unit="s", utc=True),
        "enrolled_at": pd.to_datetime(info["enrolled_s"], unit="s", utc=True),
        LABEL_COLUMN: label,
        "days_since_last_activity": (t_s - f["last_s"]) / DAY_SECONDS,
        "days_since_last_submission": (t_s - f["last_submit_s"]) / DAY_SECONDS,
        "days_since_last_login": np.where(
            known("logins"), (t_s - f["last_login_s"]) / DAY_SECONDS, np.nan
        ),
        "days_since_last_content_view": np.where(
            known("lesson_views"), (t_s - f["last_view_s"]) / DAY_SECONDS, np.nan
        ),
    }
    cols |= deadline_features(due, g["eid"][at], k, t_s)
    for name in feature_names(config.features):
        if name in cols or name not in f:
            continue
        stem = next((s for s in WINDOWED_STEMS if name.startswith(f"{s}_")), None)
        cols[name] = np.where(known(stem), f[name], np.nan) if stem else f[name]
    s_days = config.features.support_window_days
    cols[f"questions_{s_days}d"] = np.where(known("questions"), f["questions_sup"], np.nan)
    cols[f"support_tickets_{s_days}d"] = np.where(
        known("support_tickets"), f["tickets_sup"], np.nan
    )
    start, end = info["start_s"].to_numpy(), info["end_s"].to_numpy()
    cols["days_since_start"] = (t_s - start) / DAY_SECONDS
    cols["course_elapsed_share"] = _divide(t_s - start, end - start)
    cols["days_since_enrolment"] = (t_s - info["enrolled_s"].to_numpy()) / DAY_SECONDS
    cols["course_length_days"] = (end - start) / DAY_SECONDS
    cols["registration_lead_days"] = (start - info["enrolled_s"].to_numpy()) / DAY_SECONDS
    last_w = config.features.windows_days[-1]
    # One group per (course run, snapshot): course codes are small, k fits beside them.
    k_span, k_min = (int(k.max() - k.min()) + 1, int(k.min())) if len(k) else (1, 0)
    group = info["course_code"].to_numpy(dtype=np.int64) * k_span + (k - k_min)
    for stem in ("events", "submissions"):
        counts = f[f"{stem}_{last_w}d"]  # raw counts: rank even where the type is unknown
        cols[f"{stem}_{last_w}d_pct_in_run"] = _percent_rank(counts, group)
    for score in PERCENTILE_SCORES:
        # Among the students of the run and week who have a score (no score: no percentile).
        values = f[score]
        scored = ~np.isnan(values)
        ranked = np.full(len(values), np.nan)
        ranked[scored] = _percent_rank(values[scored], group[scored])
        cols[f"{score}_pct_in_run"] = ranked
    for a in attrs:
        cols[a] = info[a].to_numpy()
    return pd.DataFrame(cols, copy=False)


def data_end(con: duckdb.DuckDBPyConnection) -> float:
    """The last moment the source knows about (epoch seconds): labels need t + horizon <= it.

    The export time when the source has one (`source.yaml` or `--exported-at`, recorded by
    `open_source` / `register_views`), else the last timestamp seen.
    """
    (present,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'source_info'"
    ).fetchall()[0]
    if present:
        (exported,) = con.execute("SELECT max(exported_s) FROM source_info").fetchall()[0]
        if exported is not None:
            return float(exported)
    (end_s,) = con.execute(
        """
        SELECT greatest(
            (SELECT max(epoch(CAST(ts AS TIMESTAMPTZ))) FROM raw_events),
            (SELECT max(epoch(CAST(enrolled_at AS TIMESTAMPTZ))) FROM raw_enrollments),
            (SELECT max(epoch(CAST(unenrolled_at AS TIMESTAMPTZ))) FROM raw_enrollments))
        """
    ).fetchall()[0]
    if end_s is None:
        raise FeatureError("the source has no timestamps: is it empty?")
    return float(end_s)


def source_data_end(source: str | Path, exported_at: datetime | None = None) -> datetime:
    """`data_end` of a source folder as an aware UTC datetime (for "already gone" and friends).

    `exported_at` overrides `source.yaml`; without either, the last timestamp in the source.
    """
    con = connect()
    try:
        register_views(con, source, exported_at)
        return datetime.fromtimestamp(data_end(con), UTC)
    finally:
        con.close()


def _course_chunks(enr: pd.DataFrame, grid_rows: pd.Series, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive eid ranges made of whole course runs, about max_rows grid rows each.

    Whole course runs keep the within-run percentiles exact; bounded chunks keep memory flat.
    """
    per_course = (
        pd.DataFrame({"course_id": enr["course_id"], "rows": grid_rows, "eid": enr.index})
        .groupby("course_id", sort=False)
        .agg(lo=("eid", "min"), hi=("eid", "max"), rows=("rows", "sum"))
        .sort_values("lo")
    )
    chunks: list[tuple[int, int]] = []
    lo, rows = None, 0
    for course in per_course.itertuples():
        if lo is None:
            lo = course.lo
        rows += course.rows
        if rows >= max_rows:
            chunks.append((lo, course.hi))
            lo, rows = None, 0
    if lo is not None:
        chunks.append((lo, int(per_course["hi"].iloc[-1])))
    return chunks


def iter_feature_chunks(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    as_of: datetime | CalendarWeeks | None = None,
    progress: Progress | None = None,
    duplicate_events: bool | None = None,
    data_end_s: float | None = None,
) -> Iterator[pd.DataFrame]:
    """Prepare the rollups on `con`; yield the snapshot frame in chunks of whole course runs.

    `duplicate_events`: whether the events may hold exact duplicate rows (to be dropped). None
    checks (one hash aggregation of the events); callers that validated the source know already.
    `data_end_s`: the whole source's last moment, for a connection that sees only some course runs
    (a partition); None reads it from `con`.
    """
    say = progress or (lambda _msg: None)
    plan = Plan.from_config(config)
    for table in ("courses", "enrollments", "events", "assignments"):
        (present,) = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [f"raw_{table}"]
        ).fetchall()[0]
        if not present:
            raise SourceError(f"table {table!r} is missing from the source", table=table)
    try:
        end_s = data_end(con) if data_end_s is None else data_end_s
        say("snapshots")
        attrs = _prepare_base_tables(con, config, as_of, plan)
        _rollups(con, plan, say, duplicate_events)
        say("deadlines")
        _deadlines(con, plan)
        say("course first seen")
        _course_first(con)
        attr_sql = "".join(f", e.{_q(a)}" for a in attrs)
        enr = (
            con.execute(
                f"""
                SELECT e.eid, e.student_id, e.course_id, e.enrolled_s, e.unenrolled_s,
                       e.curator_id, e.mentor_id, a.anchor_s, a.start_s, a.end_s,
                       a.k_first, a.k_last{attr_sql}
                FROM enr e JOIN anchors a USING (course_id) ORDER BY e.eid
                """
            )
            .df()
            .set_index("eid")
        )
        enr["course_code"] = pd.factorize(enr["course_id"])[0]
        course_first = con.execute("SELECT * FROM course_first").df().set_index("course_id")
        grid_rows = enr["k_last"] - enr["k_first"] + plan.lookback_bins + 2 + plan.horizon_bins
        chunks = _course_chunks(enr, grid_rows, config.features.chunk_grid_rows)
        for i, (lo, hi) in enumerate(chunks, start=1):
            say(f"features {i}/{len(chunks)}")
            grid = _fetch_grid(con, enr, lo, hi, plan)
            if not len(grid["eid"]):
                continue
            at = _snapshot_index(grid, enr, plan)
            feats = _window_features(grid, at, plan, config)
            due = _fetch_due(con, lo, hi)
            frame = _snapshot_rows(
                grid, at, feats, due, enr, course_first, plan, config, attrs, end_s
            )
            yield _finish_frame(frame, config)
    except duckdb.Error as exc:
        raise FeatureError(
            f"cannot build features: {exc}. Run `notalone validate --source DIR` for details."
        ) from exc


def _finish_frame(frame: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Column order and dtypes of the agreed feature frame (see features.catalog)."""
    names = feature_names(config.features)
    attrs = [c for c in frame.columns if c.startswith(ATTR_PREFIX)]
    for col in ("student_id", "course_id", "curator_id", "mentor_id"):
        frame[col] = frame[col].astype("str").where(frame[col].notna(), None)
    for col in names + [LABEL_COLUMN]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in attrs:
        if pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
            frame[col] = frame[col].astype("float64")
        else:
            frame[col] = frame[col].astype("str").where(frame[col].notna(), None).astype("category")
    ordered = [*KEY_COLUMNS, *META_COLUMNS, LABEL_COLUMN, *names, *sorted(attrs)]
    return frame[ordered]


def _empty_frame(config: Config) -> pd.DataFrame:
    utc = "datetime64[us, UTC]"
    cols = {c: pd.Series(dtype="str") for c in ("student_id", "course_id")}
    cols["as_of"] = pd.Series(dtype=utc)
    cols |= {"curator_id": pd.Series(dtype="str"), "mentor_id": pd.Series(dtype="str")}
    cols |= {c: pd.Series(dtype=utc) for c in META_COLUMNS[2:]}
    cols |= {c: pd.Series(dtype="float64") for c in [LABEL_COLUMN, *feature_names(config.features)]}
    return pd.DataFrame(cols)


def open_source(
    source: str | Path,
    config: Config,
    temp_dir: Path | None = None,
    exported_at: datetime | None = None,
):
    """A DuckDB connection with the source's tables registered as `raw_*` views.

    `exported_at` overrides the export time of `source.yaml` (the `--exported-at` option).
    """
    con = connect(
        config.features.duckdb_memory_limit, config.features.duckdb_threads, temp_dir=temp_dir
    )
    try:
        register_views(con, source, exported_at)
    except BaseException:
        con.close()
        raise
    return con


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by (as_of, course_id, student_id).

    Within a chunk, frames come in (as_of, course_id, student_id) order already (see
    `_snapshot_index`; enrollment ids are numbered in (course_id, student_id) order), and chunks
    are consecutive ranges of them, so a stable sort on as_of alone gives the full order without
    comparing strings; a frame already in order is not copied.
    """
    as_of = frame["as_of"].to_numpy(dtype="int64")
    if len(as_of) < 2 or bool((as_of[1:] >= as_of[:-1]).all()):
        return frame.reset_index(drop=True)
    order = np.argsort(as_of, kind="stable")
    return frame.take(order).reset_index(drop=True)


def build_feature_frame(
    source: str | Path,
    config: Config,
    as_of: datetime | CalendarWeeks | None = None,
    progress: Progress | None = None,
    temp_dir: Path | None = None,
    duplicate_events: bool | None = None,
    exported_at: datetime | None = None,
) -> pd.DataFrame:
    """All weekly snapshots with labels (`as_of=None`) or one snapshot at `as_of`, as pandas.

    `exported_at`: the export time (default: `source.yaml`'s, else the last timestamp).
    """
    con = open_source(source, config, temp_dir, exported_at)
    try:
        chunks = list(iter_feature_chunks(con, config, as_of, progress, duplicate_events))
    finally:
        con.close()
    if not chunks:
        return _empty_frame(config)
    frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    for col in frame.columns:
        if col.startswith(ATTR_PREFIX) and frame[col].dtype == object:
            frame[col] = frame[col].astype("category")
    return _sorted(frame)


def write_feature_file(
    source: str | Path,
    out: str | Path,
    config: Config,
    as_of: datetime | CalendarWeeks | None = None,
    progress: Progress | None = None,
    temp_dir: Path | None = None,
    duplicate_events: bool | None = None,
    exported_at: datetime | None = None,
) -> int:
    """Write the snapshot frame to Parquet chunk by chunk (bounded memory); returns the row count.

    A chunk is converted and written in a background thread while the next one is built (Arrow
    and Parquet release the GIL): about a fifth faster on 2 cores, one chunk more in memory. The
    file appears atomically: it is written beside `out` and renamed into place at the end.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    parts = _ParquetParts(tmp)
    con = open_source(source, config, temp_dir, exported_at)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="features-writer") as pool:
            pending: Future | None = None
            try:
                for chunk in iter_feature_chunks(con, config, as_of, progress, duplicate_events):
                    if pending is not None:
                        pending.result()  # at most one chunk waits to be written
                    pending = pool.submit(parts.write, chunk)
            finally:
                if pending is not None:
                    pending.result()
        if not parts.close():
            _empty_frame(config).to_parquet(tmp, index=False)
        tmp.replace(out)
    except BaseException:
        parts.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    return parts.rows


class _ParquetParts:
    """One Parquet file written chunk by chunk, in the first chunk's schema."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, chunk: pd.DataFrame) -> None:
        with warnings.catch_warnings():
            # pandas 3.1 deprecates .values on tz-aware columns, which pyarrow still calls.
            warnings.simplefilter("ignore", category=Warning)
            table = pa.Table.from_pandas(_sorted(chunk), preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self.path, self._schema)
        # Category dictionaries differ between chunks; cast to the first chunk's schema.
        self._writer.write_table(
            table.cast(self._schema) if table.schema != self._schema else table
        )
        self.rows += table.num_rows

    def close(self) -> bool:
        """Finish the file; False when nothing was written (there is no file)."""
        if self._writer is None:
            return False
        self._writer.close()
        self._writer = None
        return True


def label_rate(frame: pd.DataFrame) -> float:
    labelled = frame[LABEL_COLUMN].dropna()
    return float(labelled.mean()) if len(labelled) else math.nan
