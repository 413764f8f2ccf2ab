"""The straightforward pandas implementation of the behavioural features: approach (c) of the bench.

What most data scientists would write: load the tables into pandas, then for every weekly snapshot
t of every course run filter the events to `ts < t` and group by enrolment, snapshot after
snapshot. It computes the same point-in-time semantics as `features.build` (the DuckDB builder), so
the benchmark can check that both agree on a sample of rows before comparing their speed:

- population at t: enrolled at or before t, not unenrolled before t; label as in DESIGN.md;
- recency: days since the last activity, submission and login;
- frequency: events, active days and per-type counts (lesson views and completions, submissions,
  quiz attempts, logins) in the last 7/14/28 days, events since enrolment;
- trend: last week vs the week before, slope over 4 weeks;
- deadlines: due, missed, submitted late, on-time share, due and missed in the last 28 days;
- scores: mean, last, trend; support: questions and tickets in the last 14 days, last feedback;
- progress and cohort percentiles;
- deadline position (next deadline and its weight, latest deadline missed, days since the last
  miss, submission / missed streaks), registration lead, score percentiles within the run and
  week, days since the last lesson view and the week-on-week change per event type.

That is every feature of `features.catalog.feature_names` (see `COVERED`); static `attr_*`
columns are not produced. Per-type counts are null (unknown, not zero) while the course run has no
event of that type before t, as in the builder. Only for the benchmark and its test: nothing in
the product imports this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from configs.schema import Config
from features.build import COUNTED_TYPES, SLOPE_WEIGHTS, WINDOWED_STEMS
from features.catalog import (
    CHANGE_TYPES,
    KEY_COLUMNS,
    LABEL_COLUMN,
    META_COLUMNS,
    PERCENTILE_SCORES,
    feature_names,
)
from features.contract import TABLES, EventType, Kind
from features.sources import SourceError, locate_tables, read_source_info

DAY = pd.Timedelta(days=1)
TYPE_OF_STEM = dict(COUNTED_TYPES)
SOURCE_TABLES = ("courses", "enrollments", "events", "assignments")
SUBMIT = EventType.ASSIGNMENT_SUBMIT.value


def covered_features(config: Config) -> list[str]:
    """The feature columns this implementation produces (all catalogue features)."""
    return feature_names(config.features)


def read_source(source: str | Path) -> dict[str, pd.DataFrame]:
    """Load the four contract tables a feature build reads into pandas (events in full).

    The export time of `source.yaml`, if any, comes along as `tables["exported_at"]` (a
    one-row frame) for `prepare`.
    """
    found = locate_tables(source)
    tables = {}
    exported = read_source_info(source).exported_at
    if exported is not None:
        tables["exported_at"] = pd.DataFrame({"exported_at": [pd.Timestamp(exported)]})
    for name in SOURCE_TABLES:
        if name not in found:
            raise SourceError(f"table {name!r} is missing from the source", table=name)
        tf = found[name]
        if tf.fmt == "csv":
            frame = pd.read_csv(tf.path)
            for col in TABLES[name].columns:
                if col.kind == Kind.TIMESTAMP and col.name in frame:
                    frame[col.name] = pd.to_datetime(frame[col.name], utc=True)
        else:
            frame = pd.read_parquet(tf.path)
        tables[name] = frame
    return tables


@dataclass
class Prepared:
    """Typed tables, events without exact duplicates or unknown enrolments, snapshot times."""

    courses: pd.DataFrame  # course_id, start_at, end_at
    enrollments: pd.DataFrame
    events: pd.DataFrame  # student_id, course_id, ts, event_type, item_id, value
    assignments: pd.DataFrame  # assignment_id, course_id, due_at
    data_end: pd.Timestamp
    snapshots: dict[str, list[pd.Timestamp]]  # course_id -> weekly snapshot times


def _as_str(series: pd.Series) -> pd.Series:
    return series.astype("str").where(series.notna(), None)


def _as_key(series: pd.Series) -> pd.Series:
    """Ids as strings; categorical ids (dictionary-encoded Parquet) are kept as read."""
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(series):
        return series
    return _as_str(series)


def _utc(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype) and str(series.dtype.tz) == "UTC":
        return series
    return pd.to_datetime(series, utc=True)


def snapshot_times(start: pd.Timestamp, end: pd.Timestamp, config: Config) -> list[pd.Timestamp]:
    """Weekly snapshots of a course run: start + first_offset, then every step, up to the end."""
    step = pd.Timedelta(days=config.snapshots.step_days)
    t = start + pd.Timedelta(days=config.snapshots.first_offset_days)
    times = []
    while t <= end:
        times.append(t)
        t += step
    return times


def prepare(tables: dict[str, pd.DataFrame], config: Config) -> Prepared:
    courses = tables["courses"][["course_id", "start_at", "end_at"]].drop_duplicates().copy()
    courses["course_id"] = _as_str(courses["course_id"])
    courses["start_at"] = _utc(courses["start_at"])
    courses["end_at"] = _utc(courses["end_at"])
    snapshots = {
        row.course_id: snapshot_times(row.start_at, row.end_at, config)
        for row in courses.itertuples()
    }
    snapshots = {course: times for course, times in snapshots.items() if times}

    enr = tables["enrollments"].copy()
    if "mentor_id" not in enr:
        enr["mentor_id"] = None
    enr = enr[
        ["student_id", "course_id", "enrolled_at", "unenrolled_at", "curator_id", "mentor_id"]
    ].drop_duplicates()
    for col in ("student_id", "course_id", "curator_id", "mentor_id"):
        enr[col] = _as_str(enr[col])
    enr["enrolled_at"] = _utc(enr["enrolled_at"])
    enr["unenrolled_at"] = _utc(enr["unenrolled_at"])
    enr = enr[enr.course_id.isin(list(snapshots))]

    events = tables["events"].copy()
    if "item_id" not in events:
        events["item_id"] = None
    if "value" not in events:
        events["value"] = np.nan
    events = events[["student_id", "course_id", "ts", "event_type", "item_id", "value"]]
    for col in ("student_id", "course_id", "event_type", "item_id"):
        events[col] = _as_key(events[col])
    events["ts"] = _utc(events["ts"])
    events["value"] = events["value"].astype("float64")
    data_end = max(
        t
        for t in (events.ts.max(), enr.enrolled_at.max(), enr.unenrolled_at.max())
        if not pd.isna(t)
    )
    if "exported_at" in tables:  # the export time ends the data, as in the builder
        data_end = tables["exported_at"]["exported_at"].iloc[0]
    events = events.dropna(subset=["ts"]).drop_duplicates()

    asg = tables["assignments"].copy()
    if "weight" not in asg:
        asg["weight"] = np.nan
    asg["assignment_id"] = _as_str(asg["assignment_id"])
    asg["course_id"] = _as_str(asg["course_id"])
    asg["due_at"] = _utc(asg["due_at"])
    asg["weight"] = asg["weight"].astype("float64")
    # One deadline per (assignment, course, due time), the largest weight given for it.
    asg = (
        asg.groupby(["assignment_id", "course_id", "due_at"], as_index=False)["weight"]
        .max()
        .dropna(subset=["due_at"])
    )
    return Prepared(courses, enr, events, asg, data_end, snapshots)


@dataclass
class CourseRun:
    """One course run's slice of the data, with what every snapshot of it needs."""

    course_id: str
    start: pd.Timestamp
    end: pd.Timestamp
    enrollments: pd.DataFrame
    events: pd.DataFrame  # plus `day`: whole days since the course's snapshot anchor
    assignments: pd.DataFrame
    first_submit: pd.DataFrame  # student_id, assignment_id, submit_at


def course_run(prep: Prepared, course_id: str, config: Config) -> CourseRun:
    course = prep.courses.set_index("course_id").loc[course_id]
    start, end = course.start_at, course.end_at
    # Days are counted from the snapshot anchor, so weekly windows hold whole days.
    step = config.snapshots.step_days
    anchor = start + pd.Timedelta(days=config.snapshots.first_offset_days % step)
    enrollments = prep.enrollments[prep.enrollments.course_id == course_id]
    events = prep.events[prep.events.course_id == course_id]
    # Events of unknown enrolments are ignored, as in the builder.
    events = events[events.student_id.isin(enrollments.student_id)].copy()
    events["day"] = (events.ts - anchor) // DAY
    submits = events[(events.event_type == SUBMIT) & events.item_id.notna()]
    first_submit = (
        submits.groupby(["student_id", "item_id"], as_index=False)["ts"]
        .min()
        .rename(columns={"item_id": "assignment_id", "ts": "submit_at"})
        .astype({"student_id": "str", "assignment_id": "str"})
    )
    return CourseRun(
        course_id,
        start,
        end,
        enrollments,
        events,
        prep.assignments[prep.assignments.course_id == course_id],
        first_submit,
    )


def _percent_rank(values: pd.Series) -> pd.Series:
    """SQL percent_rank within the run: (rank - 1) / (rows - 1), ties share the lowest rank."""
    n = len(values)
    if n <= 1:
        return pd.Series(0.0, index=values.index)
    return (values.rank(method="min") - 1) / (n - 1)


def snapshot_features(
    run: CourseRun, t: pd.Timestamp, config: Config, data_end: pd.Timestamp
) -> pd.DataFrame:
    """Every feature of every enrolment of `run` in the population at `t`, from rows before t."""
    fc = config.features
    enr = run.enrollments
    pop = enr[(enr.enrolled_at <= t) & (enr.unenrolled_at.isna() | (enr.unenrolled_at >= t))]
    out = pop.set_index("student_id")[["curator_id", "mentor_id", "enrolled_at"]].copy()
    index = out.index

    def by_student_id(values: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
        """Results grouped by a categorical id get a plain string index, like the population."""
        if isinstance(values.index.dtype, pd.CategoricalDtype):
            values = values.set_axis(values.index.astype("str"))
        return values

    def per_student(values: pd.Series, fill: float = np.nan) -> pd.Series:
        return by_student_id(values).reindex(index, fill_value=fill).astype("float64")

    def days_since(stamps: pd.Series) -> pd.Series:
        return per_student((t - stamps) / DAY)

    past = run.events[run.events.ts < t]
    seen = set(past.event_type.unique())
    out["days_since_last_activity"] = days_since(past.groupby("student_id").ts.max())
    submits = past[past.event_type == SUBMIT]
    out["days_since_last_submission"] = days_since(submits.groupby("student_id").ts.max())
    logins = past[past.event_type == EventType.LOGIN.value]
    out["days_since_last_login"] = (
        days_since(logins.groupby("student_id").ts.max())
        if EventType.LOGIN.value in seen
        else np.nan
    )

    views = past[past.event_type == EventType.LESSON_VIEW.value]
    out["days_since_last_content_view"] = (
        days_since(views.groupby("student_id").ts.max())
        if EventType.LESSON_VIEW.value in seen
        else np.nan
    )

    raw_counts: dict[str, pd.Series] = {}  # per-type counts before nulling unknown types
    for w in fc.windows_days:
        window = past[past.ts >= t - pd.Timedelta(days=w)]
        by_student = window.groupby("student_id")
        out[f"events_{w}d"] = per_student(by_student.size(), 0)
        out[f"active_days_{w}d"] = per_student(by_student["day"].nunique(), 0)
        by_type = window.groupby(["student_id", "event_type"]).size().unstack(fill_value=0)
        for stem in WINDOWED_STEMS:
            etype = TYPE_OF_STEM[stem]
            name = f"{stem}_{w}d"
            raw_counts[name] = (
                per_student(by_type[etype], 0) if etype in by_type else pd.Series(0.0, index=index)
            )
            out[name] = raw_counts[name] if etype in seen else np.nan
    out["events_total"] = per_student(past.groupby("student_id").size(), 0)

    # Trend: events per week over the last len(SLOPE_WEIGHTS) weeks (column 0 = oldest).
    week = pd.Timedelta(days=config.snapshots.step_days)
    n_weeks = len(SLOPE_WEIGHTS)
    recent = past[past.ts >= t - n_weeks * week]
    week_no = (recent.ts - (t - n_weeks * week)) // week
    weekly = by_student_id(
        recent.groupby([recent.student_id, week_no.rename("week")])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=range(n_weeks), fill_value=0)
    )
    weekly = weekly.reindex(index, fill_value=0).astype("float64")
    last, before = weekly[n_weeks - 1], weekly[n_weeks - 2]
    out["events_change_7d"] = ((last - before) / before).where(before > 0)
    out["events_slope_28d"] = sum(w * weekly[i] for i, w in enumerate(SLOPE_WEIGHTS)) / sum(
        w * w for w in SLOPE_WEIGHTS
    )
    for stem in CHANGE_TYPES:
        etype = TYPE_OF_STEM[stem]
        of_type = past[past.event_type == etype]
        last = per_student(of_type[of_type.ts >= t - week].groupby("student_id").size(), 0)
        earlier = of_type[(of_type.ts >= t - 2 * week) & (of_type.ts < t - week)]
        before = per_student(earlier.groupby("student_id").size(), 0)
        out[f"{stem}_change_7d"] = (
            ((last - before) / before).where(before > 0) if etype in seen else np.nan
        )

    # Deadlines: every assignment due before t, for every enrolment in the population.
    recent_span = pd.Timedelta(days=max(fc.windows_days))
    due = run.assignments[run.assignments.due_at < t]
    pairs = (
        pop[["student_id"]]
        .merge(due[["assignment_id", "due_at"]], how="cross")
        .merge(run.first_submit, on=["student_id", "assignment_id"], how="left")
    )
    pairs["due"] = 1
    pairs["on_time"] = pairs.submit_at <= pairs.due_at
    pairs["late"] = (pairs.submit_at > pairs.due_at) & (pairs.submit_at < t)
    pairs["due_recent"] = pairs.due_at >= t - recent_span
    pairs["missed_recent"] = pairs.due_recent & (pairs.submit_at.isna() | (pairs.submit_at >= t))
    counts = pairs.groupby("student_id")[
        ["due", "on_time", "late", "due_recent", "missed_recent"]
    ].sum()
    n_due = per_student(counts["due"], 0)
    n_on_time = per_student(counts["on_time"], 0)
    n_late = per_student(counts["late"], 0)
    out["deadlines_due"] = n_due
    out["deadlines_missed"] = n_due - n_on_time - n_late
    out["deadlines_late"] = n_late
    out["on_time_share"] = (n_on_time / n_due).where(n_due > 0)
    out[f"deadlines_due_{max(fc.windows_days)}d"] = per_student(counts["due_recent"], 0)
    out[f"deadlines_missed_{max(fc.windows_days)}d"] = per_student(counts["missed_recent"], 0)

    # Deadline position: the passed deadlines in (due time, id) order, the latest last.
    pairs["missed"] = pairs.submit_at.isna() | (pairs.submit_at >= t)
    ordered = pairs.sort_values(["student_id", "due_at", "assignment_id"], kind="stable")
    latest = ordered.groupby("student_id").tail(1).set_index("student_id")
    out["latest_deadline_missed"] = per_student(latest["missed"].astype("float64"))
    last_miss = ordered[ordered.missed].groupby("student_id").due_at.max()
    out["days_since_missed_deadline"] = per_student((t - last_miss) / DAY)
    for name, state in (("submission_streak", False), ("missed_streak", True)):
        streaks = {}
        for student, rows in ordered.groupby("student_id", sort=False):
            flags = rows["missed"].to_numpy()[::-1]
            broken = np.flatnonzero(flags != state)
            streaks[student] = float(broken[0] if len(broken) else len(flags))
        out[name] = per_student(pd.Series(streaks, dtype="float64"), 0.0)
    upcoming = run.assignments[run.assignments.due_at >= t].sort_values(
        ["due_at", "assignment_id"], kind="stable"
    )
    if len(upcoming):
        first = upcoming.iloc[0]
        out["days_to_next_deadline"] = (first.due_at - t) / DAY
        out["next_deadline_weight"] = first.weight
    else:
        out["days_to_next_deadline"] = np.nan
        out["next_deadline_weight"] = np.nan

    scored = submits[submits.value.notna()]
    out["score_mean"] = per_student(scored.groupby("student_id").value.mean())
    # The latest score; same-time submissions tie on ts: the higher score wins, as in the builder.
    out["score_last"] = per_student(
        scored.sort_values(["ts", "value"], kind="stable").groupby("student_id").value.last()
    )
    is_recent = scored.ts >= t - recent_span
    recent_mean = per_student(scored[is_recent].groupby("student_id").value.mean())
    older_mean = per_student(scored[~is_recent].groupby("student_id").value.mean())
    out["score_trend"] = recent_mean - older_mean

    s = fc.support_window_days
    support = past[past.ts >= t - pd.Timedelta(days=s)]
    for stem, name in (
        ("questions", f"questions_{s}d"),
        ("support_tickets", f"support_tickets_{s}d"),
    ):
        etype = TYPE_OF_STEM[stem]
        out[name] = (
            per_student(support[support.event_type == etype].groupby("student_id").size(), 0)
            if etype in seen
            else np.nan
        )
    rated = past[(past.event_type == EventType.FEEDBACK.value) & past.value.notna()]
    out["feedback_last"] = per_student(
        rated.sort_values(["ts", "value"], kind="stable").groupby("student_id").value.last()
    )

    length = run.end - run.start
    out["days_since_start"] = (t - run.start) / DAY
    out["course_elapsed_share"] = (t - run.start) / length if length > pd.Timedelta(0) else np.nan
    out["days_since_enrolment"] = (t - out["enrolled_at"]) / DAY
    out["course_length_days"] = length / DAY
    out["registration_lead_days"] = (run.start - out["enrolled_at"]) / DAY
    w_last = fc.windows_days[-1]
    # Percentiles rank the counts themselves, zeros included, even where the type is unknown.
    out[f"events_{w_last}d_pct_in_run"] = _percent_rank(out[f"events_{w_last}d"])
    out[f"submissions_{w_last}d_pct_in_run"] = _percent_rank(raw_counts[f"submissions_{w_last}d"])
    for score in PERCENTILE_SCORES:  # among the students with a score
        scored_values = out[score].dropna()
        out[f"{score}_pct_in_run"] = _percent_rank(scored_values).reindex(index)

    horizon = pd.Timedelta(days=config.snapshots.horizon_days)
    unenrolled = pop.set_index("student_id").unenrolled_at
    label = ((unenrolled >= t) & (unenrolled < t + horizon)).astype("float64")
    if config.snapshots.inactivity_is_dropout:
        future = run.events[(run.events.ts >= t) & (run.events.ts < t + horizon)]
        label[per_student(future.groupby("student_id").size(), 0) == 0] = 1.0
    out[LABEL_COLUMN] = label if t + horizon <= data_end else np.nan

    out["course_id"] = run.course_id
    out["as_of"] = t
    out["course_start"] = run.start
    out["course_end"] = run.end
    return out.reset_index()


def finish_frame(parts: list[pd.DataFrame], config: Config) -> pd.DataFrame:
    """Concatenate snapshot frames in the builder's column order and row order."""
    names = feature_names(config.features)
    ordered = [*KEY_COLUMNS, *META_COLUMNS, LABEL_COLUMN, *names]
    if not parts:
        return pd.DataFrame(columns=ordered)
    frame = pd.concat(parts, ignore_index=True)[ordered]
    for col in (LABEL_COLUMN, *names):
        frame[col] = frame[col].astype("float64")
    return frame.sort_values(["as_of", "course_id", "student_id"], kind="stable").reset_index(
        drop=True
    )


SnapshotHook = Callable[[str, pd.Timestamp, float], None]


def iter_snapshot_frames(
    prep: Prepared,
    config: Config,
    plan: Iterable[tuple[str, pd.Timestamp]],
    on_course: Callable[[str, float], None] | None = None,
    on_snapshot: SnapshotHook | None = None,
) -> Iterator[pd.DataFrame]:
    """Snapshot frames in `plan` order; hooks receive the seconds spent per course and snapshot."""
    runs: dict[str, CourseRun] = {}
    for course_id, t in plan:
        if course_id not in runs:
            started = time.perf_counter()
            runs[course_id] = course_run(prep, course_id, config)
            if on_course:
                on_course(course_id, time.perf_counter() - started)
        started = time.perf_counter()
        frame = snapshot_features(runs[course_id], t, config, prep.data_end)
        if on_snapshot:
            on_snapshot(course_id, t, time.perf_counter() - started)
        yield frame


def all_snapshots(prep: Prepared) -> list[tuple[str, pd.Timestamp]]:
    return [(course, t) for course, times in prep.snapshots.items() for t in times]


def pandas_feature_frame(source: str | Path, config: Config) -> pd.DataFrame:
    """All weekly snapshots with labels, computed the straightforward pandas way."""
    prep = prepare(read_source(source), config)
    return finish_frame(list(iter_snapshot_frames(prep, config, all_snapshots(prep))), config)
