"""`exported_at` (source.yaml or a parameter): read, validated against, used for labels."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from features.build import build_feature_frame, data_end, open_source, source_data_end
from features.sources import (
    SOURCE_INFO_FILE,
    SourceError,
    SourceInfo,
    read_source_info,
    write_source_info,
)
from features.validate import validate_source
from tests.sources import ts, write_source

CONFIG = load_config()
START = ts("2025-01-06")
LAST_EVENT = START + pd.Timedelta(days=20, hours=10)


def school() -> dict[str, pd.DataFrame]:
    """One 10-week course; the log's last event is on day 20, s2 goes quiet after day 8."""
    courses = pd.DataFrame(
        {"course_id": ["c"], "start_at": [START], "end_at": [START + pd.Timedelta(weeks=10)]}
    )
    enrollments = pd.DataFrame(
        {
            "student_id": ["s1", "s2"],
            "course_id": ["c", "c"],
            "enrolled_at": [START - pd.Timedelta(days=2)] * 2,
            "unenrolled_at": pd.to_datetime([None, None], utc=True),
            "curator_id": ["k", "k"],
        }
    )
    assignments = pd.DataFrame(
        {"assignment_id": ["a1"], "course_id": ["c"], "due_at": [START + pd.Timedelta(days=30)]}
    )
    times = [START + pd.Timedelta(days=d, hours=10) for d in (1, 5, 8, 12, 16, 20)]
    who = ["s1", "s2", "s2", "s1", "s1", "s1"]
    events = pd.DataFrame(
        {
            "student_id": who,
            "course_id": ["c"] * len(who),
            "ts": times,
            "event_type": ["login"] * len(who),
        }
    )
    return {
        "courses": courses,
        "enrollments": enrollments,
        "assignments": assignments,
        "events": events,
    }


def test_source_info_round_trips(tmp_path):
    when = datetime(2025, 3, 1, 6, 30, tzinfo=UTC)
    write_source_info(tmp_path, SourceInfo(exported_at=when))
    assert read_source_info(tmp_path).exported_at == when
    assert read_source_info(tmp_path / "nowhere").exported_at is None  # no file: no export time


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exported_at: yesterday-ish\n", "not a timestamp"),
        ("exported: 2025-01-01\n", "unknown keys exported"),
        ("- 1\n- 2\n", "must hold a mapping"),
    ],
)
def test_bad_source_info_is_a_clear_error(tmp_path, text, message):
    (tmp_path / SOURCE_INFO_FILE).write_text(text)
    with pytest.raises(SourceError, match=message):
        read_source_info(tmp_path)


def test_naive_exported_at_is_utc(tmp_path):
    (tmp_path / SOURCE_INFO_FILE).write_text("exported_at: 2025-03-01 06:30:00\n")
    assert read_source_info(tmp_path).exported_at == datetime(2025, 3, 1, 6, 30, tzinfo=UTC)


def test_validate_flags_timestamps_after_exported_at(tmp_path):
    source = write_source(tmp_path / "s", school())
    write_source_info(source, SourceInfo(exported_at=(START + pd.Timedelta(days=10))))
    report = validate_source(source, CONFIG.validation)
    problems = [p for p in report.errors if p.check == "after_exported_at"]
    assert [(p.table, p.column) for p in problems] == [("events", "ts")]
    assert problems[0].count == 3  # the events of days 12, 16 and 20
    assert all(pd.Timestamp(e["ts"]) > START + pd.Timedelta(days=10) for e in problems[0].examples)
    assert "exported_at" in problems[0].message


def test_validate_accepts_a_late_enough_export_and_the_parameter_overrides_it(tmp_path):
    source = write_source(tmp_path / "s", school())
    write_source_info(source, SourceInfo(exported_at=START + pd.Timedelta(days=60)))
    assert not [p for p in validate_source(source, CONFIG.validation).errors]
    early = (START + pd.Timedelta(days=15)).to_pydatetime()
    report = validate_source(source, CONFIG.validation, exported_at=early)
    assert [p.check for p in report.errors] == ["after_exported_at"]


def test_validate_reports_an_unreadable_source_info(tmp_path):
    source = write_source(tmp_path / "s", school())
    (source / SOURCE_INFO_FILE).write_text("exported_at: soon\n")
    report = validate_source(source, CONFIG.validation)
    assert [(p.table, p.column) for p in report.errors] == [("source", "exported_at")]


def labels(source, config=CONFIG, **kwargs) -> pd.Series:
    frame = build_feature_frame(source, config, **kwargs)
    return frame.set_index(["student_id", "as_of"])["label"]


def test_without_exported_at_the_last_timestamp_ends_the_data(tmp_path):
    source = write_source(tmp_path / "s", school())
    assert source_data_end(source) == LAST_EVENT.to_pydatetime()
    con = open_source(source, CONFIG)
    try:
        assert data_end(con) == LAST_EVENT.timestamp()
    finally:
        con.close()


@pytest.mark.parametrize("how", ["file", "parameter"])
def test_exported_at_labels_the_quiet_end_of_the_log(tmp_path, how):
    """The log ends on day 20; exported on day 60, the weeks after day 20 are known to be quiet:
    more snapshots are labelled, and "no activity in the horizon" becomes a dropout label."""
    source = write_source(tmp_path / "s", school())
    exported = (START + pd.Timedelta(days=60)).to_pydatetime()
    kwargs = {}
    if how == "file":
        write_source_info(source, SourceInfo(exported_at=exported))
    else:
        kwargs["exported_at"] = exported
    assert source_data_end(source, **kwargs) == exported
    inactivity = load_config(overrides={"snapshots": {"inactivity_is_dropout": True}})
    plain = source_without_info(tmp_path, source)
    before = labels(plain, inactivity)
    after = labels(source, inactivity, **kwargs)
    horizon = pd.Timedelta(days=CONFIG.snapshots.horizon_days)
    as_of = after.index.get_level_values("as_of")
    assert before.notna().sum() < after.notna().sum()
    # Labelled exactly while the horizon closes by the end of the data.
    assert (after.notna().to_numpy() == np.asarray(as_of + horizon <= exported)).all()
    assert (before.dropna().index.get_level_values("as_of") + horizon <= LAST_EVENT).all()
    # s2's last event is on day 8: at day 14 nothing follows in 28 days -> inactive dropout.
    assert after.loc[("s2", START + pd.Timedelta(days=14))] == 1.0
    assert np.isnan(before.loc[("s2", START + pd.Timedelta(days=14))])


def source_without_info(tmp_path, source):
    plain = write_source(tmp_path / "plain", school())
    assert not (plain / SOURCE_INFO_FILE).exists()
    return plain
