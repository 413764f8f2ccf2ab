"""Hand-checked feature values, labels and population on a tiny school."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from configs import load_config
from features.build import (
    FeatureError,
    build_feature_frame,
    iter_feature_chunks,
    open_source,
    write_feature_file,
)
from features.catalog import KEY_COLUMNS, LABEL_COLUMN, META_COLUMNS, feature_names
from features.sources import SourceError
from tests.sources import ts, write_source

CONFIG = load_config()
START = ts("2025-01-06")  # a Monday; weekly snapshots at 13th, 20th, 27th ...


def tiny_school() -> dict[str, pd.DataFrame]:
    courses = pd.DataFrame(
        {"course_id": ["c1"], "start_at": [START], "end_at": [START + pd.Timedelta(weeks=10)]}
    )
    enrollments = pd.DataFrame(
        {
            "student_id": ["stay", "drop", "late"],
            "course_id": ["c1"] * 3,
            "enrolled_at": [ts("2025-01-01"), ts("2025-01-01"), ts("2025-01-21")],
            "unenrolled_at": pd.to_datetime([pd.NaT, ts("2025-02-05"), pd.NaT], utc=True),
            "curator_id": ["k1", "k1", "k2"],
            "attr_band": ["a", "b", None],
        }
    )
    assignments = pd.DataFrame(
        {
            "assignment_id": ["a1", "a2"],
            "course_id": ["c1", "c1"],
            "due_at": [ts("2025-01-15 23:00"), ts("2025-01-22 23:00")],
        }
    )
    ev = [
        ("stay", "2025-01-07 10:00", "login", None, None),
        ("stay", "2025-01-08 10:00", "lesson_view", None, None),
        ("stay", "2025-01-08 11:00", "lesson_view", None, None),
        ("stay", "2025-01-15 09:00", "assignment_submit", "a1", 80.0),  # on time
        ("stay", "2025-01-24 09:00", "assignment_submit", "a2", 60.0),  # late
        ("stay", "2025-01-25 09:00", "question", None, None),
        ("stay", "2025-01-25 10:00", "feedback", None, 4.0),
        ("drop", "2025-01-07 12:00", "login", None, None),
        ("drop", "2025-01-07 12:00", "login", None, None),  # exact duplicate: dropped
        ("drop", "2025-01-09 12:00", "support_ticket", None, None),
        ("drop", "2025-01-30 12:00", "login", None, None),
        ("late", "2025-03-01 12:00", "login", None, None),  # the last event: the data end
    ]
    events = pd.DataFrame(ev, columns=["student_id", "ts", "event_type", "item_id", "value"])
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    events.insert(1, "course_id", "c1")
    return {
        "courses": courses,
        "enrollments": enrollments,
        "assignments": assignments,
        "events": events,
    }


@pytest.fixture
def weekly(tmp_path) -> pd.DataFrame:
    return build_feature_frame(write_source(tmp_path / "src", tiny_school()), CONFIG)


def row(frame: pd.DataFrame, student: str, day: str) -> pd.Series:
    hit = frame[(frame.student_id == student) & (frame.as_of == ts(day))]
    assert len(hit) == 1, f"expected one row for {student} at {day}, got {len(hit)}"
    return hit.iloc[0]


def test_columns_follow_the_agreed_frame(weekly):
    expected = [*KEY_COLUMNS, *META_COLUMNS, LABEL_COLUMN, *feature_names(CONFIG.features)]
    assert list(weekly.columns) == [*expected, "attr_band"]
    assert weekly["attr_band"].dtype == "category"
    assert str(weekly["as_of"].dtype).startswith("datetime64") and weekly["as_of"].dt.tz is not None


def test_population_follows_enrolment_and_unenrolment(weekly):
    times = {s: set(weekly[weekly.student_id == s].as_of) for s in ("stay", "drop", "late")}
    assert ts("2025-01-13") not in times["late"]  # enrolled on the 21st
    assert ts("2025-01-27") in times["late"]
    assert max(times["drop"]) == ts("2025-02-03")  # unenrolled on 5 February
    assert len(times["stay"]) == 10  # weeks 1..10 of a 10-week run


@pytest.mark.parametrize(
    ("student", "day", "label"),
    [
        ("drop", "2025-01-13", 1.0),  # unenrols on 5 Feb, within 28 days
        ("drop", "2025-01-06", None),  # not a snapshot (course start)
        ("stay", "2025-01-13", 0.0),
    ],
)
def test_labels(weekly, student, day, label):
    hit = weekly[(weekly.student_id == student) & (weekly.as_of == ts(day))]
    if label is None:
        assert hit.empty
    else:
        assert hit[LABEL_COLUMN].iloc[0] == label


def test_horizon_past_the_data_is_unlabelled(weekly):
    data_end = ts("2025-03-01 12:00")
    late_rows = weekly[weekly.as_of + pd.Timedelta(days=28) > data_end]
    assert late_rows[LABEL_COLUMN].isna().all() and len(late_rows) > 0
    early = weekly[weekly.as_of + pd.Timedelta(days=28) <= data_end]
    assert early[LABEL_COLUMN].notna().all()


def test_recency_and_windows(weekly):
    r = row(weekly, "stay", "2025-01-20")
    assert r.days_since_last_submission == pytest.approx(5 - 9 / 24 + 1 - 1)  # 15th 09:00 -> 20th
    assert r.lesson_views_14d == 2 and r.lesson_views_7d == 0
    assert r.events_7d == 1 and r.events_14d == 4
    assert r.active_days_14d == 3


def test_exact_duplicate_events_are_counted_once(weekly):
    assert row(weekly, "drop", "2025-01-13").logins_7d == 1


def test_deadlines_on_time_late_and_missed(weekly):
    before_late = row(weekly, "stay", "2025-01-20")  # a1 on time, a2 not yet due
    assert (before_late.deadlines_due, before_late.deadlines_missed) == (1, 0)
    assert before_late.on_time_share == 1.0
    missing = row(weekly, "stay", "2025-01-27")  # a2 submitted late on the 24th
    assert (missing.deadlines_due, missing.deadlines_late, missing.deadlines_missed) == (2, 1, 0)
    assert missing.on_time_share == 0.5
    drop = row(weekly, "drop", "2025-01-27")
    assert (drop.deadlines_missed, drop.deadlines_missed_28d, drop.deadlines_due_28d) == (2, 2, 2)


def test_scores_and_feedback(weekly):
    r = row(weekly, "stay", "2025-01-27")
    assert r.score_mean == 70 and r.score_last == 60
    assert r.feedback_last == 4
    assert math.isnan(row(weekly, "stay", "2025-01-20").feedback_last)


def test_support_signals_and_missing_stays_missing(weekly):
    assert row(weekly, "drop", "2025-01-13").support_tickets_14d == 1
    assert math.isnan(row(weekly, "stay", "2025-01-13").days_since_last_submission)
    # No lesson_complete event ever happened in this course run: unknown, not zero.
    assert weekly.lesson_completions_28d.isna().all()


def test_progress_features(weekly):
    r = row(weekly, "late", "2025-01-27")
    assert r.days_since_start == 21 and r.days_since_enrolment == 6
    assert r.course_length_days == 70 and r.course_elapsed_share == pytest.approx(0.3)


def test_as_of_gives_one_row_per_active_enrollment(tmp_path):
    source = write_source(tmp_path / "src", tiny_school())
    frame = build_feature_frame(source, CONFIG, as_of=ts("2025-02-10 08:00").to_pydatetime())
    assert set(frame.student_id) == {"stay", "late"}  # "drop" left on 5 February
    assert frame[LABEL_COLUMN].isna().all()


def test_attrs_can_be_switched_off(tmp_path):
    config = load_config(overrides={"features": {"include_attrs": False}})
    frame = build_feature_frame(write_source(tmp_path / "src", tiny_school()), config)
    assert not [c for c in frame.columns if c.startswith("attr_")]


def test_inactivity_label_is_optional(tmp_path):
    config = load_config(overrides={"snapshots": {"inactivity_is_dropout": True}})
    frame = build_feature_frame(write_source(tmp_path / "src", tiny_school()), config)
    # "late" enrolled on the 21st and was silent until 1 March: dropout by inactivity.
    assert row(frame, "late", "2025-01-27")[LABEL_COLUMN] == 1.0


def test_feature_file_matches_frame(tmp_path, weekly):
    out = tmp_path / "f.parquet"
    rows = write_feature_file(write_source(tmp_path / "src", tiny_school()), out, CONFIG)
    written = pd.read_parquet(out)
    assert rows == len(weekly) == len(written)
    assert written[LABEL_COLUMN].sum() == weekly[LABEL_COLUMN].sum()


def two_runs_school() -> dict[str, pd.DataFrame]:
    """The tiny school twice: run c2 starts three days after c1, so their as-of times interleave."""
    one = tiny_school()
    shift = pd.Timedelta(days=3)
    other = {name: table.copy() for name, table in one.items()}
    for table in other.values():
        table["course_id"] = "c2"
    for name, cols in {
        "courses": ["start_at", "end_at"],
        "enrollments": ["enrolled_at", "unenrolled_at"],
        "assignments": ["due_at"],
        "events": ["ts"],
    }.items():
        for col in cols:
            other[name][col] = other[name][col] + shift
    return {name: pd.concat([one[name], other[name]], ignore_index=True) for name in one}


def test_chunks_come_in_output_order_and_the_file_holds_the_frame(tmp_path):
    """Each chunk is built in (as_of, course_id, student_id) order (the writer does not sort it);
    the file, chunk by chunk, holds the frame's rows with the same values."""
    config = load_config(overrides={"features": {"chunk_grid_rows": 1}})  # a chunk per run
    source = write_source(tmp_path / "src", two_runs_school())
    con = open_source(source, config)
    try:
        chunks = list(iter_feature_chunks(con, config))
    finally:
        con.close()
    assert len(chunks) == 2
    keys = ["as_of", "course_id", "student_id"]
    for chunk in chunks:
        assert chunk[keys].equals(chunk[keys].sort_values(keys).reset_index(drop=True))
    frame = build_feature_frame(source, config)
    assert frame[keys].equals(frame[keys].sort_values(keys).reset_index(drop=True))
    out = tmp_path / "f.parquet"
    assert write_feature_file(source, out, config) == len(frame)
    written = pd.read_parquet(out).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(written, frame, check_categorical=False)


def test_missing_table_is_a_clear_error(tmp_path):
    tables = tiny_school()
    del tables["assignments"]
    with pytest.raises(SourceError, match="assignments"):
        build_feature_frame(write_source(tmp_path / "src", tables), CONFIG)


def test_windows_must_be_whole_steps(tmp_path):
    config = load_config(overrides={"features": {"windows_days": [7, 10]}})
    with pytest.raises(FeatureError, match="multiple of step_days"):
        build_feature_frame(write_source(tmp_path / "src", tiny_school()), config)


@pytest.mark.parametrize("duplicates", [None, True])
def test_duplicate_events_are_dropped_when_checked_or_known(tmp_path, duplicates):
    frame = build_feature_frame(
        write_source(tmp_path / "src", tiny_school()), CONFIG, duplicate_events=duplicates
    )
    row = frame[(frame.student_id == "drop") & (frame.as_of == ts("2025-01-13"))].iloc[0]
    assert row["logins_7d"] == 1


def test_a_source_declared_clean_is_not_searched_for_duplicates(tmp_path):
    # `--no-validate` path: the caller vouches for the source; the duplicate then counts twice.
    frame = build_feature_frame(
        write_source(tmp_path / "src", tiny_school()), CONFIG, duplicate_events=False
    )
    row = frame[(frame.student_id == "drop") & (frame.as_of == ts("2025-01-13"))].iloc[0]
    assert row["logins_7d"] == 2


@pytest.mark.parametrize("step_days", [7, 14])
def test_active_days_by_bit_mask_equal_distinct_days(tmp_path, monkeypatch, step_days):
    import features.build as build

    overrides = {
        "snapshots": {"step_days": step_days, "first_offset_days": step_days, "horizon_days": 28},
        "features": {"windows_days": [step_days, 28], "support_window_days": 28},
    }
    config = load_config(overrides=overrides)
    source = write_source(tmp_path / "src", tiny_school())
    masked = build_feature_frame(source, config)
    monkeypatch.setattr(build, "BITMASK_DAYS", 0)  # force count(DISTINCT day)
    distinct = build_feature_frame(source, config)
    pd.testing.assert_frame_equal(masked, distinct)
    assert masked[f"active_days_{step_days}d"].max() >= 2  # some bin has several active days
