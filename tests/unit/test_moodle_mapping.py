"""The Moodle mapping on tiny frames: courses, enrolments (ends, staff, curators by group), log
rows (event map, skip, non-students, item ids), submissions and scores, carry-over, redaction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from configs.schema import MoodleConfig
from features.contract import EVENT_TYPES
from features.moodle import (
    COLUMNS,
    EVENT_CODE,
    MoodleMappingError,
    MoodleTables,
    carry_over_removed,
    check_event_map,
    enrolment_keys,
    event_codes,
    map_courses,
    map_log_batch,
    map_moodle,
    scale_score,
)
from pipelines.moodle_store import log_select, redact

DAY = 86_400
START, END = 1_000 * DAY, 1_100 * DAY
NEVER = 2_147_483_647  # Moodle's default user_enrolments.timeend
CONFIG = MoodleConfig(
    event_map={
        r"\core\event\course_viewed": "login",
        r"\mod_page\event\course_module_viewed": "lesson_view",
        r"\mod_assign\event\assessable_submitted": "skip",
    }
)


def frame(table: str, rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS[table]))


def school(**override) -> MoodleTables:
    """A site course, one course run (id 2), students 10-12, curators 20 and 21, mentor 30."""
    tables = {
        "course": frame(
            "course",
            [(1, "Front", "site", "site", 0, 0), (2, "Python", "PY", "topics", START, END)],
        ),
        "user": frame(
            "user",
            [(u, "First", f"L{u}", 0) for u in (10, 11, 12, 20, 21, 30)] + [(13, "Gone", "X", 1)],
        ),
        "enrol": frame("enrol", [(1, "manual", 0, 2, 0), (2, "self", 0, 2, 0)]),
        "user_enrolments": frame(
            "user_enrolments",
            [
                (1, 0, 1, 10, START - DAY, NEVER, START - 2 * DAY, START - 2 * DAY),
                (2, 1, 1, 11, START, 0, START, START + 5 * DAY),  # suspended on day 5
                (3, 0, 1, 12, START, START + 9 * DAY, START, START),  # ends on day 9
                (4, 0, 1, 20, START, 0, START, START),  # curator: enrolled, not a student
                (5, 0, 1, 13, START, 0, START, START),  # a deleted user
            ],
        ),
        "role": frame("role", [(4, "teacher"), (5, "student"), (9, "mentor")]),
        "context": frame("context", [(1, 10, 0), (5, 50, 2), (7, 70, 100)]),
        "role_assignments": frame(
            "role_assignments",
            [
                (1, 5, 5, 10),
                (2, 5, 5, 11),
                (3, 5, 5, 12),
                (4, 4, 5, 20),
                (5, 4, 5, 21),
                (6, 9, 5, 30),
                (7, 5, 5, 13),
            ],
        ),
        "groups": frame("groups", [(1, 2), (2, 2)]),
        "groups_members": frame("groups_members", [(1, 1, 21), (2, 1, 11), (3, 2, 30), (4, 2, 10)]),
        "modules": frame("modules", [(1, "assign"), (2, "page")]),
        "course_modules": frame("course_modules", [(100, 2, 1, 1), (101, 2, 1, 2)]),
        "assign": frame(
            "assign", [(1, 2, "Week 1", START + 7 * DAY, 10), (2, 2, "No date", 0, 100)]
        ),
        "assign_submission": frame(
            "assign_submission",
            [
                (1, 1, 10, START + 6 * DAY, "submitted", 1, 1),
                (2, 1, 10, START + 5 * DAY, "reopened", 0, 0),
                (3, 1, 11, START + 6 * DAY, "draft", 0, 1),
                (4, 1, 12, START + 8 * DAY, "submitted", 0, 1),
                (5, 1, 20, START + 8 * DAY, "submitted", 0, 1),  # staff: dropped
            ],
        ),
        "assign_grades": frame(
            "assign_grades", [(1, 1, 10, 5.0, 0), (2, 1, 10, 7.5, 1), (3, 1, 12, 4.0, 0)]
        ),
        "grade_items": frame(
            "grade_items",
            [(1, 2, "mod", "assign", 1, 0, 10.0, 0.0), (2, 2, "course", None, 2, 0, 100.0, 0.0)],
        ),
        "grade_grades": frame("grade_grades", [(1, 1, 10, 8.0)]),
    }
    tables.update(override)
    return MoodleTables(tables)


def test_courses_skip_the_front_page_and_undated_runs():
    course = frame(
        "course",
        [
            (1, "Front", "site", "site", 0, 0),
            (2, "A", "A", "topics", START, END),
            (3, "Open-ended", "B", "topics", START, 0),
        ],
    )
    courses, dropped = map_courses(course)
    assert courses["course_id"].tolist() == ["2"]
    assert courses["start_at"].iloc[0] == pd.Timestamp(START, unit="s", tz="UTC")
    assert courses["end_at"].iloc[0] == pd.Timestamp(END, unit="s", tz="UTC")
    assert sum(dropped.values()) == 1


def test_enrolments_ends_staff_and_deleted_users():
    mapped = map_moodle(school(), CONFIG)
    enr = mapped.enrollments.set_index("student_id")
    assert sorted(enr.index) == ["10", "11", "12"]  # not the curator 20, not the deleted 13
    ts = lambda s: pd.Timestamp(s, unit="s", tz="UTC")  # noqa: E731
    assert enr.loc["10", "enrolled_at"] == ts(START - DAY)
    assert pd.isna(enr.loc["10", "unenrolled_at"])  # timeend 2147483647: after the course end
    assert enr.loc["11", "unenrolled_at"] == ts(START + 5 * DAY)  # suspended: timemodified
    assert enr.loc["12", "unenrolled_at"] == ts(START + 9 * DAY)  # ended before the course
    assert mapped.dropped["enrolments of deleted users"] == 1
    assert mapped.dropped["enrolments of users without a student role in the course (staff)"] == 1
    assert enr.loc["10", "display_name"] == "First L10"


def test_curator_shares_a_group_else_the_lowest_id_teacher_and_mentor_by_group():
    enr = map_moodle(school(), CONFIG).enrollments.set_index("student_id")
    assert enr.loc["11", "curator_id"] == "21"  # in a group with teacher 21
    assert enr.loc["10", "curator_id"] == "20"  # no group with a teacher: the lowest id
    assert enr.loc["10", "mentor_id"] == "30"  # in the mentor's group
    assert enr.loc["12", "mentor_id"] == "30"  # no group: the course's only mentor
    no_teacher = school(
        role_assignments=frame("role_assignments", [(1, 5, 5, 10), (2, 5, 5, 11), (3, 5, 5, 12)])
    )
    enr = map_moodle(no_teacher, CONFIG).enrollments
    assert set(enr["curator_id"]) == {CONFIG.missing_curator_id}
    assert enr["mentor_id"].isna().all()


def test_two_methods_still_enrolled_when_either_is_active():
    ue = school()["user_enrolments"]
    extra = frame("user_enrolments", [(9, 0, 2, 11, START + 2 * DAY, 0, START, START)])
    enr = map_moodle(school(user_enrolments=pd.concat([ue, extra])), CONFIG).enrollments
    row = enr.set_index("student_id").loc["11"]
    assert pd.isna(row["unenrolled_at"])
    assert row["enrolled_at"] == pd.Timestamp(START, unit="s", tz="UTC")


def test_no_students_is_a_clear_error():
    roles = frame("role", [(4, "teacher"), (5, "learner")])
    with pytest.raises(MoodleMappingError, match="student_roles"):
        map_moodle(school(role=roles), CONFIG)


def test_assignments_by_course_module_with_due_dates_only():
    mapped = map_moodle(school(), CONFIG)
    assert mapped.assignments["assignment_id"].tolist() == ["100"]
    assert mapped.assignments["due_at"].iloc[0] == pd.Timestamp(START + 7 * DAY, unit="s", tz="UTC")
    assert mapped.dropped["assignments without a due date (duedate 0): skipped"] == 1


def test_submissions_latest_handed_in_scored_by_gradebook_then_assign_grades():
    subs = map_moodle(school(), CONFIG).submissions.to_pandas()
    subs = subs.set_index(subs["student_id"].astype(str))
    assert sorted(subs.index) == ["10", "12"]  # not the draft, not the reopened one, not staff
    assert subs.loc["10", "value"] == pytest.approx(80.0)  # gradebook 8 of 10
    assert subs.loc["12", "value"] == pytest.approx(40.0)  # assign_grades 4 of assign.grade 10
    assert subs.loc["10", "ts"] == pd.Timestamp(START + 6 * DAY, unit="s", tz="UTC")
    assert set(subs["item_id"].astype(str)) == {"100"}
    assert set(subs["event_type"].astype(str)) == {"assignment_submit"}


@pytest.mark.parametrize(
    ("grade", "low", "high", "want"),
    [
        (5.0, 0.0, 10.0, 50.0),
        (62.0, 0.0, 100.0, 62.0),
        (3.0, 1.0, 5.0, 50.0),  # a scale of 1..5
        (120.0, 0.0, 100.0, 100.0),  # clipped
        (-1.0, 0.0, 10.0, 0.0),
        (1.0, 1.0, 1.0, math.nan),  # an empty range has no score
    ],
)
def test_scale_score(grade, low, high, want):
    got = float(scale_score([grade], [low], [high])[0])
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def log_batch(rows: list[tuple], by_code: bool = False) -> pa.Table:
    """rows: (eventname, userid, courseid, cmid, timecreated)."""
    names, users, courses, cms, times = zip(*rows, strict=True)
    data = {
        "userid": pa.array(users, pa.int64()),
        "courseid": pa.array(courses, pa.int64()),
        "cmid": pa.array(cms, pa.int64()),
        "timecreated": pa.array(times, pa.int64()),
    }
    if by_code:
        compiled, default = event_codes(CONFIG.event_map, CONFIG.default_event_type)
        data[EVENT_CODE] = pa.array([compiled.get(n, default) for n in names], pa.int16())
    else:
        data["eventname"] = pa.array(names, pa.string())
    return pa.table(data)


LOG_ROWS = [
    (r"\core\event\course_viewed", 10, 2, None, START + 10),
    (r"\mod_page\event\course_module_viewed", 10, 2, 100, START + 20),
    (r"\mod_unknown\event\thing_done", 11, 2, 101, START + 30),
    (r"\mod_assign\event\assessable_submitted", 10, 2, 100, START + 40),  # skip
    (r"\core\event\user_loggedin", 10, 0, None, START + 50),  # no course
    (r"\core\event\course_viewed", 20, 2, None, START + 60),  # staff
    (r"\core\event\course_viewed", 10, None, None, START + 70),  # null course
]


@pytest.mark.parametrize("by_code", [False, True], ids=["by-name", "by-server-code"])
def test_log_rows_map_through_the_event_map(by_code):
    keys = enrolment_keys(pd.DataFrame({"student_id": ["10", "11"], "course_id": ["2", "2"]}))
    events, dropped = map_log_batch(log_batch(LOG_ROWS, by_code), keys, CONFIG.event_map)
    got = events.to_pandas()
    assert got["event_type"].astype(str).tolist() == ["login", "lesson_view", "activity"]
    assert got["student_id"].astype(str).tolist() == ["10", "10", "11"]
    assert got["course_id"].astype(str).tolist() == ["2", "2", "2"]
    items = got["item_id"].astype(object).where(got["item_id"].notna(), None).tolist()
    assert items == [None, "100", "101"]
    assert got["ts"].tolist() == [pd.Timestamp(START + s, unit="s", tz="UTC") for s in (10, 20, 30)]
    assert got["value"].isna().all()
    assert sum(v for k, v in dropped.items() if "without a student" in k) == 3
    assert sum(v for k, v in dropped.items() if "skip" in k) == 1


def test_an_empty_batch_maps_to_no_events():
    keys = enrolment_keys(pd.DataFrame({"student_id": ["10"], "course_id": ["2"]}))
    empty = log_batch(LOG_ROWS).slice(0, 0)
    events, dropped = map_log_batch(empty, keys, CONFIG.event_map)
    assert events.num_rows == 0 and sum(dropped.values()) == 0


@pytest.mark.parametrize(
    ("event_map", "default"),
    [({r"\x\event\y": "clicks"}, "activity"), ({}, "browsing")],
    ids=["bad-map-value", "bad-default"],
)
def test_unknown_event_types_in_the_config_are_errors(event_map, default):
    with pytest.raises(MoodleMappingError, match="not an event type|unknown event types"):
        event_codes(event_map, default)


def test_check_event_map_names_the_bad_entries():
    with pytest.raises(MoodleMappingError, match=r"'\\\\a' -> 'clicks'"):
        check_event_map({"\\a": "clicks", "\\b": "login"})
    check_event_map({name: name for name in EVENT_TYPES})


def test_log_select_applies_the_map_and_escapes_names():
    sql = log_select("mdl_", 5, 9, {"it's": 3}, 8)
    assert "'it''s'::text, 3::smallint" in sql
    assert "coalesce(m.code, 8::smallint)" in sql
    assert "l.id > 5 AND l.id <= 9" in sql
    assert "JOIN" not in log_select("mdl_", 0, 1, {}, 8)


def test_carry_over_keeps_vanished_enrolments_unenrolled_when_noticed():
    noticed = pd.Timestamp("2026-03-01", tz="UTC")
    earlier = pd.Timestamp("2026-02-01", tz="UTC")
    cols = ["student_id", "course_id", "enrolled_at", "unenrolled_at", "curator_id"]
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    previous = pd.DataFrame(
        [("1", "2", t0, pd.NaT, "c"), ("3", "2", t0, pd.NaT, "c"), ("4", "2", t0, earlier, "c")],
        columns=cols,
    )
    current = previous.iloc[:1].copy()
    merged, carried = carry_over_removed(previous, current, noticed)
    assert carried == 2
    got = merged.set_index("student_id")["unenrolled_at"]
    assert pd.isna(got["1"]) and got["3"] == noticed and got["4"] == earlier
    same, none = carry_over_removed(None, current, noticed)
    assert none == 0 and same is current


@pytest.mark.parametrize(
    ("dsn", "want"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("host=h user=u password=pw dbname=db", "host=h user=u password=*** dbname=db"),
    ],
)
def test_redact_hides_the_password(dsn, want):
    assert redact(dsn) == want
    assert "pw" not in redact(dsn).replace("password", "")


def test_keys_pack_user_and_course():
    keys = enrolment_keys(pd.DataFrame({"student_id": ["10", "10"], "course_id": ["2", "3"]}))
    assert keys.to_pylist() == [(10 << 32) | 2, (10 << 32) | 3]
    assert np.unique(keys.to_numpy()).size == 2
