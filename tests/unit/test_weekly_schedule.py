"""Which week the weekly job scores, and the artifact keys it publishes under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from configs import load_config
from features.errors import NotaloneError
from pipelines.mlflow_store import ChampionInfo
from pipelines.prefect_store import artifact_key
from pipelines.schedule import latest_week, retrain_reason, week_start
from tests.sources import random_school, write_source


@pytest.mark.parametrize(
    ("moment", "weekday", "expected"),
    [
        ("2026-05-11T00:00:00", 0, "2026-05-11"),  # a Monday midnight is its own week start
        ("2026-05-10T23:59:59", 0, "2026-05-04"),
        ("2026-05-13T12:00:00", 0, "2026-05-11"),
        ("2026-05-13T12:00:00", 2, "2026-05-13"),
        ("2026-05-12T12:00:00", 2, "2026-05-06"),
    ],
)
def test_week_start(moment, weekday, expected):
    start = week_start(datetime.fromisoformat(moment).replace(tzinfo=UTC), weekday)
    assert start == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_latest_week_is_the_last_week_start_with_active_enrollments(tmp_path):
    tables = random_school(seed=3)
    source = write_source(tmp_path / "school", tables)
    week = latest_week(source, load_config())
    assert week.weekday() == 0 and (week.hour, week.minute) == (0, 0)
    courses = tables["courses"]
    running = (courses["start_at"] <= week) & (week <= courses["end_at"])
    assert running.any()
    # A week later no course runs any more (the events go on past the courses' end).
    later = pd.Timestamp(week) + pd.Timedelta(days=7)
    assert not ((courses["start_at"] <= later) & (later <= courses["end_at"])).any()


def test_latest_week_never_passes_now(tmp_path):
    source = write_source(tmp_path / "school", random_school(seed=3))
    now = datetime(2025, 2, 5, 9, tzinfo=UTC)  # a Wednesday, mid-course
    assert latest_week(source, load_config(), now=now) == datetime(2025, 2, 3, tzinfo=UTC)


def test_latest_week_without_active_enrollments_is_an_error(tmp_path):
    source = write_source(tmp_path / "school", random_school(seed=3))
    with pytest.raises(NotaloneError, match="no week"):
        latest_week(source, load_config(), now=datetime(2024, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("parts", "expected"),
    [(("curator", "cur-005"), "curator-cur-005"), (("weekly", "summary"), "weekly-summary")],
)
def test_artifact_key_keeps_valid_ids(parts, expected):
    assert artifact_key(*parts) == expected


def test_artifact_keys_are_valid_and_distinct_for_awkward_ids():
    ids = ["C_1", "c-1", "C 1", "Анна", "", "x" * 300]
    keys = [artifact_key("curator", cid) for cid in ids]
    assert len(set(keys)) == len(ids)
    assert all(k and set(k) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for k in keys)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2025-01-08", None),  # the run is 2 days old on 01-06 .. nobody can be scored yet
        ("2025-01-14", "2025-01-13"),  # its first weekly snapshot
    ],
)
def test_latest_week_starts_at_a_runs_first_snapshot(tmp_path, now, expected):
    start = pd.Timestamp("2025-01-06", tz="UTC")  # a Monday
    tables = {
        "courses": pd.DataFrame(
            {"course_id": ["c1"], "start_at": [start], "end_at": [start + pd.Timedelta(weeks=8)]}
        ),
        "enrollments": pd.DataFrame(
            {
                "student_id": ["s1"],
                "course_id": ["c1"],
                "enrolled_at": [start - pd.Timedelta(days=3)],
                "unenrolled_at": pd.to_datetime([pd.NaT], utc=True),
                "curator_id": ["k1"],
            }
        ),
        "events": pd.DataFrame(
            {
                "student_id": ["s1"],
                "course_id": ["c1"],
                "ts": [pd.Timestamp(now, tz="UTC") - pd.Timedelta(hours=1)],
                "event_type": ["login"],
            }
        ),
        "assignments": pd.DataFrame(
            {
                "assignment_id": ["a1"],
                "course_id": ["c1"],
                "due_at": [start + pd.Timedelta(days=6)],
            }
        ),
    }
    source = write_source(tmp_path / "school", tables)
    when = datetime.fromisoformat(now).replace(tzinfo=UTC)
    if expected is None:
        with pytest.raises(NotaloneError, match="no week"):
            latest_week(source, load_config(), now=when)
    else:
        week = latest_week(source, load_config(), now=when)
        assert week == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("age_days", "force", "expected"),
    [
        (None, False, "no champion"),
        (3, False, None),
        (40, False, "40 days old"),
        (3, True, "requested"),
    ],
)
def test_retrain_reason(age_days, force, expected):
    now = datetime(2026, 5, 11, 6, tzinfo=UTC)
    champion = None
    if age_days is not None:
        champion = ChampionInfo("3", now - timedelta(days=age_days), None, None, None)
    reason = retrain_reason(champion, load_config(), now, force)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason
