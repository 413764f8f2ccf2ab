"""Deadline position features on a hand-written course: values checked against the definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from features.build import build_feature_frame
from features.deadlines import DEADLINE_FEATURES, DueList, deadline_features
from tests.sources import ts, write_source

CONFIG = load_config()
START = ts("2025-01-06")  # a Monday; weekly snapshots at START + 7, 14, ... days


def school() -> dict[str, pd.DataFrame]:
    """One course of 6 weeks, deadlines on days 3, 10, 17 and 24 (weights 1, 2, 3, 4).

    s1 submits a1 on time, a2 two days late (day 12), never a3 or a4.
    s2 submits nothing. s3 submits all four on time.
    """
    courses = pd.DataFrame(
        {"course_id": ["c"], "start_at": [START], "end_at": [START + pd.Timedelta(weeks=6)]}
    )
    enrollments = pd.DataFrame(
        {
            "student_id": ["s1", "s2", "s3"],
            "course_id": ["c"] * 3,
            "enrolled_at": [START - pd.Timedelta(days=d) for d in (10, 0, 3)],
            "unenrolled_at": pd.to_datetime([None, None, None], utc=True),
            "curator_id": ["k"] * 3,
        }
    )
    due_days = (3, 10, 17, 24)
    assignments = pd.DataFrame(
        {
            "assignment_id": [f"a{i + 1}" for i in range(4)],
            "course_id": ["c"] * 4,
            "due_at": [START + pd.Timedelta(days=d, hours=12) for d in due_days],
            "weight": [1.0, 2.0, 3.0, 4.0],
        }
    )
    rows = [("s1", "a1", 2), ("s1", "a2", 12)] + [
        ("s3", f"a{i + 1}", d - 1) for i, d in enumerate(due_days)
    ]
    events = pd.DataFrame(
        {
            "student_id": [r[0] for r in rows],
            "course_id": ["c"] * len(rows),
            "ts": [START + pd.Timedelta(days=r[2], hours=9) for r in rows],
            "event_type": ["assignment_submit"] * len(rows),
            "item_id": [r[1] for r in rows],
            "value": [70.0] * len(rows),
        }
    )
    return {
        "courses": courses,
        "enrollments": enrollments,
        "assignments": assignments,
        "events": events,
    }


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> pd.DataFrame:
    source = write_source(tmp_path_factory.mktemp("deadlines"), school())
    return build_feature_frame(source, CONFIG).set_index(["student_id", "as_of"])


def at(frame: pd.DataFrame, student: str, day: int) -> pd.Series:
    return frame.loc[(student, START + pd.Timedelta(days=day))]


@pytest.mark.parametrize(
    ("student", "day", "expected"),
    [
        # day 7: a1 (day 3.5) passed; next a2 at day 10.5 (3.5 days, weight 2)
        ("s1", 7, dict(latest=0.0, since=None, sub=1, miss=0, nxt=3.5, weight=2.0)),
        ("s2", 7, dict(latest=1.0, since=3.5, sub=0, miss=1, nxt=3.5, weight=2.0)),
        # day 14: s1 submitted a2 late on day 12 (before t): no longer a miss
        ("s1", 14, dict(latest=0.0, since=None, sub=2, miss=0, nxt=3.5, weight=3.0)),
        ("s2", 14, dict(latest=1.0, since=3.5, sub=0, miss=2, nxt=3.5, weight=3.0)),
        # day 28: all four passed; s1 missed a3 and a4, the latest miss was a4 (day 24.5)
        ("s1", 28, dict(latest=1.0, since=3.5, sub=0, miss=2, nxt=None, weight=None)),
        ("s3", 28, dict(latest=0.0, since=None, sub=4, miss=0, nxt=None, weight=None)),
    ],
)
def test_deadline_position(frame, student, day, expected):
    row = at(frame, student, day)

    def same(value, want):
        return np.isnan(value) if want is None else value == pytest.approx(want)

    assert same(row["latest_deadline_missed"], expected["latest"])
    assert same(row["days_since_missed_deadline"], expected["since"])
    assert row["submission_streak"] == expected["sub"]
    assert row["missed_streak"] == expected["miss"]
    assert same(row["days_to_next_deadline"], expected["nxt"])
    assert same(row["next_deadline_weight"], expected["weight"])


def test_registration_lead_days(frame):
    assert at(frame, "s1", 7)["registration_lead_days"] == pytest.approx(10.0)
    assert at(frame, "s2", 7)["registration_lead_days"] == pytest.approx(0.0)


def test_score_percentile_ranks_only_scored_students(frame):
    week = frame.xs(START + pd.Timedelta(days=7), level="as_of")
    assert np.isnan(week.loc["s2", "score_mean_pct_in_run"])  # no score, no percentile
    assert sorted(week["score_mean_pct_in_run"].dropna()) == [0.0, 0.0]  # two equal scores


def test_no_deadline_passed_yet():
    due = DueList.from_columns(
        {
            "eid": np.array([1, 1]),
            "due_s": np.array([100.0, 200.0]),
            "due_bin": np.array([3.0, 5.0]),
            "submit_bin": np.array([np.nan, 2.0]),
            "weight": np.array([np.nan, 7.0]),
        }
    )
    out = deadline_features(due, np.array([1, 2]), np.array([2, 2]), np.array([50.0, 50.0]))
    assert set(out) == set(DEADLINE_FEATURES)
    assert np.isnan(out["latest_deadline_missed"]).all()
    assert np.isnan(out["days_since_missed_deadline"]).all()
    assert list(out["submission_streak"]) == [0, 0] and list(out["missed_streak"]) == [0, 0]
    # eid 1: next deadline at 100 s; eid 2 has no deadlines at all
    assert out["days_to_next_deadline"][0] == pytest.approx(50 / 86_400)
    assert np.isnan(out["days_to_next_deadline"][1])
