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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from configs.schema import Config
from features.catalog import KEY_COLUMNS, LABEL_COLUMN, META_COLUMNS, feature_names
from features.contract import ATTR_PREFIX, EventType
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
SLOPE_WEIGHTS = (-1.5, -0.5, 0.5, 1.5)  # least-squares slope over 4 equally spaced weeks


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


def _prepare_base_tables(
    con: duckdb.DuckDBPyConnection, config: Config, as_of: datetime | None, plan: Plan
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
    else:
        t = as_of.timestamp()
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE anchors AS
            SELECT course_id, start_s, end_s, {t}::DOUBLE AS anchor_s,
                   0::INTEGER AS k_first, 0::INTEGER AS k_last
            FROM courses WHERE start_s <= {t} AND {t} <= end_s
            """
        )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE enr AS
        SELECT (row_number() OVER (ORDER BY student_id, course_id))::INTEGER AS eid, *
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


def _rollups(con: duckdb.DuckDBPyConnection, plan: Plan, progress: Progress) -> None:
    """One pass over events: exact duplicates dropped, rolled up to (enrollment, bin)."""
    step_s = plan.step_s
    type_counts = ",\n".join(
        f"count(*) FILTER (WHERE event_type = '{t}') AS n_{stem}" for stem, t in COUNTED_TYPES
    )
    submit, login, feedback = (
        EventType.ASSIGNMENT_SUBMIT.value,
        EventType.LOGIN.value,
        EventType.FEEDBACK.value,
    )
    item = "CAST(item_id AS VARCHAR)" if _has_column(con, "raw_events", "item_id") else "NULL"
    value = "CAST(value AS DOUBLE)" if _has_column(con, "raw_events", "value") else "NULL::DOUBLE"
    progress("reading events")
    # Events of unknown enrollments are ignored here (validate reports them).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ev AS
        SELECT e.eid, x.ts_s, x.event_type, x.item_id, x.value,
               CAST(floor((x.ts_s - a.anchor_s) / {DAY_SECONDS}) AS INTEGER) AS day
        FROM (
            SELECT DISTINCT CAST(student_id AS VARCHAR) AS student_id,
                   CAST(course_id AS VARCHAR) AS course_id,
                   epoch(CAST(ts AS TIMESTAMPTZ)) AS ts_s,
                   CAST(event_type AS VARCHAR) AS event_type,
                   {item} AS item_id, {value} AS value
            FROM raw_events
        ) x
        JOIN enr e USING (student_id, course_id)
        JOIN anchors a USING (course_id)
        WHERE x.ts_s IS NOT NULL
        """
    )
    progress("daily rollup")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE daily AS
        SELECT eid, day,
               count(*) AS n_events,
               {type_counts},
               max(ts_s) AS last_s,
               max(ts_s) FILTER (WHERE event_type = '{submit}') AS last_submit_s,
               max(ts_s) FILTER (WHERE event_type = '{login}') AS last_login_s,
               sum(value) FILTER (WHERE event_type = '{submit}') AS score_sum,
               count(value) FILTER (WHERE event_type = '{submit}') AS score_n,
               arg_max(value, ts_s) FILTER (WHERE event_type = '{submit}') AS score_last,
               max(ts_s) FILTER (WHERE event_type = '{submit}' AND value IS NOT NULL)
                   AS score_last_s,
               arg_max(value, ts_s) FILTER (WHERE event_type = '{feedback}') AS feedback_last,
               max(ts_s) FILTER (WHERE event_type = '{feedback}' AND value IS NOT NULL)
                   AS feedback_last_s
        FROM ev GROUP BY eid, day
        """
    )
    progress("first submissions")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE first_submit AS
        SELECT eid, item_id, min(ts_s) AS submit_s
        FROM ev WHERE event_type = '{submit}' AND item_id IS NOT NULL
        GROUP BY eid, item_id
        """
    )
    con.execute("DROP TABLE ev")
    steps_per_day = step_s // DAY_SECONDS
    sums = ",\n".join(f"sum(n_{stem}) AS n_{stem}" for stem, _ in COUNTED_TYPES)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE bins AS
        SELECT eid, CAST(floor(day / {steps_per_day}) AS INTEGER) AS bin,
               sum(n_events) AS n_events, count(*) AS n_active_days, {sums},
               max(last_s) AS last_s, max(last_submit_s) AS last_submit_s,
               max(last_login_s) AS last_login_s,
               sum(score_sum) AS score_sum, sum(score_n) AS score_n,
               arg_max(score_last, score_last_s) AS score_last, max(score_last_s) AS score_last_s,
               arg_max(feedback_last, feedback_last_s) AS feedback_last,
               max(feedback_last_s) AS feedback_last_s
        FROM daily GROUP BY ALL
        """
    )
    con.execute("DROP TABLE daily")


def _deadlines(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """Per (enrollment, bin): deadlines passing, on-time and late submissions; recent misses."""
    step_s = plan.step_s
    recent = max(plan.windows)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE due AS
        SELECT e.eid,
               CAST(floor((epoch(CAST(a.due_at AS TIMESTAMPTZ)) - n.anchor_s) / {step_s})
                    AS INTEGER) AS due_bin,
               epoch(CAST(a.due_at AS TIMESTAMPTZ)) AS due_s,
               f.submit_s,
               CAST(floor((f.submit_s - n.anchor_s) / {step_s}) AS INTEGER) AS submit_bin
        FROM (SELECT DISTINCT CAST(assignment_id AS VARCHAR) AS assignment_id,
                     CAST(course_id AS VARCHAR) AS course_id, due_at FROM raw_assignments) a
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


def _grid_and_features(
    con: duckdb.DuckDBPyConnection, config: Config, plan: Plan, attrs: list[str], data_end_s: float
) -> str:
    """Dense (enrollment, bin) grid, window functions over it, and the final snapshot query."""
    step_s = plan.step_s
    b_lo_expr = f"a.k_first - {plan.lookback_bins + 1}"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE grid AS
        SELECT e.eid, g.bin
        FROM enr e JOIN anchors a USING (course_id),
             LATERAL (
                SELECT unnest(range({b_lo_expr}, a.k_last + {plan.horizon_bins} + 1)) AS bin
             ) g
        """
    )
    # Clamp bins outside the grid into its first/last bin so nothing is lost from cumulative sums.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE bins_c AS
        SELECT b.eid,
               LEAST(GREATEST(b.bin, {b_lo_expr}), a.k_last + {plan.horizon_bins}) AS bin,
               b.* EXCLUDE (eid, bin)
        FROM bins b JOIN enr e USING (eid) JOIN anchors a USING (course_id)
        """
    )
    sums = ", ".join(
        f"sum(n_{stem}) AS n_{stem}"
        for stem in ("events", "active_days", *(s for s, _ in COUNTED_TYPES))
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE bins_cc AS
        SELECT eid, bin, {sums},
               max(last_s) AS last_s, max(last_submit_s) AS last_submit_s,
               max(last_login_s) AS last_login_s, sum(score_sum) AS score_sum,
               sum(score_n) AS score_n, arg_max(score_last, score_last_s) AS score_last,
               max(score_last_s) AS score_last_s,
               arg_max(feedback_last, feedback_last_s) AS feedback_last,
               max(feedback_last_s) AS feedback_last_s
        FROM bins_c GROUP BY ALL
        """
    )
    con.execute("DROP TABLE bins_c")
    # First bin in which each course saw each event type: type-specific features are null
    # (unknown, not zero) for a course run that has no such data before t.
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

    def before(expr: str, n: int) -> str:
        return f"sum({expr}) OVER (w ROWS BETWEEN {n} PRECEDING AND 1 PRECEDING)"

    def upto(agg: str) -> str:
        return f"{agg} OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"

    win_cols = []
    for days, nb in zip(config.features.windows_days, plan.windows, strict=True):
        win_cols.append(f"{before('coalesce(b.n_events, 0)', nb)} AS events_{days}d")
        win_cols.append(f"{before('coalesce(b.n_active_days, 0)', nb)} AS active_days_{days}d")
        for stem in WINDOWED_STEMS:
            win_cols.append(f"{before(f'coalesce(b.n_{stem}, 0)', nb)} AS {stem}_{days}d")
    sup = plan.support_bins
    recent_bins = max(plan.windows)
    future = (
        f"sum(coalesce(b.n_events, 0)) OVER "
        f"(w ROWS BETWEEN CURRENT ROW AND {plan.horizon_bins - 1} FOLLOWING)"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE rolled AS
        SELECT g.eid, g.bin AS k,
               {upto("max(b.last_s)")} AS last_s,
               {upto("max(b.last_submit_s)")} AS last_submit_s,
               {upto("max(b.last_login_s)")} AS last_login_s,
               {", ".join(win_cols)},
               {upto("sum(coalesce(b.n_events, 0))")} AS events_total,
               lag(coalesce(b.n_events, 0), 1) OVER w AS ev_w1,
               lag(coalesce(b.n_events, 0), 2) OVER w AS ev_w2,
               lag(coalesce(b.n_events, 0), 3) OVER w AS ev_w3,
               lag(coalesce(b.n_events, 0), 4) OVER w AS ev_w4,
               {upto("sum(coalesce(d.n_due, 0))")} AS deadlines_due,
               {upto("sum(coalesce(d.n_on_time, 0))")} AS deadlines_on_time,
               {upto("sum(coalesce(d.n_late, 0))")} AS deadlines_late,
               {upto("sum(b.score_sum)")} AS score_sum_all,
               {upto("sum(coalesce(b.score_n, 0))")} AS score_n_all,
               {before("b.score_sum", recent_bins)} AS score_sum_recent,
               {before("coalesce(b.score_n, 0)", recent_bins)} AS score_n_recent,
               {upto("arg_max(b.score_last, b.score_last_s)")} AS score_last,
               {before("coalesce(b.n_questions, 0)", sup)} AS questions_sup,
               {before("coalesce(b.n_support_tickets, 0)", sup)} AS tickets_sup,
               {upto("arg_max(b.feedback_last, b.feedback_last_s)")} AS feedback_last,
               {future} AS events_future
        FROM grid g
        LEFT JOIN bins_cc b ON b.eid = g.eid AND b.bin = g.bin
        LEFT JOIN due_bins d ON d.eid = g.eid AND d.bin = g.bin
        WINDOW w AS (PARTITION BY g.eid ORDER BY g.bin)
        """
    )
    horizon_s = config.snapshots.horizon_days * DAY_SECONDS
    inactivity = "OR r.events_future = 0" if config.snapshots.inactivity_is_dropout else ""
    nullable_stems = {stem for stem, _ in COUNTED_TYPES}
    windowed = []
    for days in config.features.windows_days:
        windowed.append(f"r.events_{days}d")
        windowed.append(f"r.active_days_{days}d")
        for stem in WINDOWED_STEMS:
            windowed.append(
                f"CASE WHEN cf.first_{stem} < r.k THEN r.{stem}_{days}d END AS {stem}_{days}d"
                if stem in nullable_stems
                else f"r.{stem}_{days}d"
            )
    s_days = config.features.support_window_days
    slope = " + ".join(
        f"({w}) * r.ev_w{len(SLOPE_WEIGHTS) - i}" for i, w in enumerate(SLOPE_WEIGHTS)
    )
    slope_norm = sum(w * w for w in SLOPE_WEIGHTS)
    attr_sel = "".join(f", e.{_q(a)}" for a in attrs)
    first_w = config.features.windows_days[-1]
    return f"""
        SELECT e.student_id, e.course_id, to_timestamp(t.t_s) AS as_of,
               e.curator_id, e.mentor_id,
               to_timestamp(a.start_s) AS course_start, to_timestamp(a.end_s) AS course_end,
               to_timestamp(e.enrolled_s) AS enrolled_at,
               CASE WHEN t.t_s + {horizon_s} > {data_end_s} THEN NULL
                    WHEN (e.unenrolled_s >= t.t_s AND e.unenrolled_s < t.t_s + {horizon_s})
                         {inactivity} THEN 1.0
                    ELSE 0.0 END AS {LABEL_COLUMN},
               (t.t_s - r.last_s) / {DAY_SECONDS} AS days_since_last_activity,
               (t.t_s - r.last_submit_s) / {DAY_SECONDS} AS days_since_last_submission,
               CASE WHEN cf.first_logins < r.k THEN (t.t_s - r.last_login_s) / {DAY_SECONDS} END
                   AS days_since_last_login,
               {", ".join(windowed)},
               r.events_total,
               CASE WHEN r.ev_w2 > 0 THEN (r.ev_w1 - r.ev_w2) / r.ev_w2 END AS events_change_7d,
               ({slope}) / {slope_norm} AS events_slope_28d,
               r.deadlines_due,
               r.deadlines_due - r.deadlines_on_time - r.deadlines_late AS deadlines_missed,
               r.deadlines_late,
               CASE WHEN r.deadlines_due > 0 THEN r.deadlines_on_time / r.deadlines_due END
                   AS on_time_share,
               coalesce(dr.due_recent, 0)::DOUBLE AS deadlines_due_28d,
               coalesce(dr.missed_recent, 0)::DOUBLE AS deadlines_missed_28d,
               CASE WHEN r.score_n_all > 0 THEN r.score_sum_all / r.score_n_all END AS score_mean,
               r.score_last,
               CASE WHEN r.score_n_recent > 0 AND r.score_n_all > r.score_n_recent
                    THEN r.score_sum_recent / r.score_n_recent
                         - (r.score_sum_all - r.score_sum_recent)
                           / (r.score_n_all - r.score_n_recent) END AS score_trend,
               CASE WHEN cf.first_questions < r.k THEN r.questions_sup END AS questions_{s_days}d,
               CASE WHEN cf.first_support_tickets < r.k THEN r.tickets_sup END
                   AS support_tickets_{s_days}d,
               r.feedback_last,
               (t.t_s - a.start_s) / {DAY_SECONDS} AS days_since_start,
               (t.t_s - a.start_s) / nullif(a.end_s - a.start_s, 0) AS course_elapsed_share,
               (t.t_s - e.enrolled_s) / {DAY_SECONDS} AS days_since_enrolment,
               (a.end_s - a.start_s) / {DAY_SECONDS} AS course_length_days,
               percent_rank() OVER (PARTITION BY e.course_id, r.k ORDER BY r.events_{first_w}d)
                   AS events_{first_w}d_pct_in_run,
               percent_rank() OVER (PARTITION BY e.course_id, r.k ORDER BY r.submissions_{first_w}d)
                   AS submissions_{first_w}d_pct_in_run
               {attr_sel}
        FROM rolled r
        JOIN enr e USING (eid)
        JOIN anchors a USING (course_id)
        JOIN course_first cf USING (course_id)
        CROSS JOIN LATERAL (SELECT a.anchor_s + r.k * {step_s} AS t_s) t
        LEFT JOIN due_recent dr ON dr.eid = r.eid AND dr.k = r.k
        WHERE r.k BETWEEN a.k_first AND a.k_last
          AND e.enrolled_s <= t.t_s
          AND (e.unenrolled_s IS NULL OR e.unenrolled_s >= t.t_s)
        """


def data_end(con: duckdb.DuckDBPyConnection) -> float:
    """The last moment the source knows about (epoch seconds): labels need t + horizon <= it."""
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


def feature_query(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    as_of: datetime | None = None,
    progress: Progress | None = None,
) -> str:
    """Prepare the intermediate tables on `con` and return the SQL of the snapshot frame."""
    say = progress or (lambda _msg: None)
    plan = Plan.from_config(config)
    for table in ("courses", "enrollments", "events", "assignments"):
        if not con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [f"raw_{table}"]
        ).fetchall()[0][0]:
            raise SourceError(f"table {table!r} is missing from the source", table=table)
    try:
        end_s = data_end(con)
        say("snapshots")
        attrs = _prepare_base_tables(con, config, as_of, plan)
        _rollups(con, plan, say)
        say("deadlines")
        _deadlines(con, plan)
        say("windows")
        return _grid_and_features(con, config, plan, attrs, end_s)
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
    for col in ("as_of", *META_COLUMNS[2:]):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    for col in attrs:
        if pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col]):
            frame[col] = frame[col].astype("float64")
        else:
            frame[col] = frame[col].astype("str").where(frame[col].notna(), None).astype("category")
    ordered = [*KEY_COLUMNS, *META_COLUMNS, LABEL_COLUMN, *names, *sorted(attrs)]
    return (
        frame[ordered]
        .sort_values(["as_of", "course_id", "student_id"], kind="stable")
        .reset_index(drop=True)
    )


def open_source(source: str | Path, config: Config, temp_dir: Path | None = None):
    """A DuckDB connection with the source's tables registered as `raw_*` views."""
    con = connect(
        config.features.duckdb_memory_limit, config.features.duckdb_threads, temp_dir=temp_dir
    )
    try:
        register_views(con, source)
    except BaseException:
        con.close()
        raise
    return con


def build_feature_frame(
    source: str | Path,
    config: Config,
    as_of: datetime | None = None,
    progress: Progress | None = None,
    temp_dir: Path | None = None,
) -> pd.DataFrame:
    """All weekly snapshots with labels (`as_of=None`) or one snapshot at `as_of`, as pandas."""
    con = open_source(source, config, temp_dir)
    try:
        sql = feature_query(con, config, as_of, progress)
        if progress:
            progress("features")
        frame = con.execute(sql).df()
    finally:
        con.close()
    return _finish_frame(frame, config)


def write_feature_file(
    source: str | Path,
    out: str | Path,
    config: Config,
    as_of: datetime | None = None,
    progress: Progress | None = None,
    temp_dir: Path | None = None,
) -> int:
    """Stream the snapshot frame straight to Parquet (no pandas copy); returns the row count."""
    out = Path(out)
    con = open_source(source, config, temp_dir)
    try:
        sql = feature_query(con, config, as_of, progress)
        if progress:
            progress("writing")
        tmp = out.with_name(f".{out.name}.tmp")
        path = str(tmp).replace("'", "''")
        con.execute(
            f"COPY ({sql} ORDER BY as_of, course_id, student_id) TO '{path}' (FORMAT parquet)"
        )
        (rows,) = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0]
        tmp.replace(out)
    finally:
        con.close()
    return int(rows)


def label_rate(frame: pd.DataFrame) -> float:
    labelled = frame[LABEL_COLUMN].dropna()
    return float(labelled.mean()) if len(labelled) else math.nan
