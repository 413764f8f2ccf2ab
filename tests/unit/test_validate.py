"""The contract check: one corruption per check, each found with the right severity and place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from configs.schema import ValidationConfig
from features.sources import SourceError
from features.validate import (
    ERROR,
    WARNING,
    ValidationFailed,
    require_valid,
    validate_source,
)

Frames = dict[str, pd.DataFrame]
CONFIG = ValidationConfig()


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def clean_frames() -> Frames:
    """A tiny school that meets the contract: two course runs, three students, a few events."""
    courses = pd.DataFrame(
        {
            "course_id": ["c1", "c2"],
            "start_at": [ts("2025-01-06"), ts("2025-02-03")],
            "end_at": [ts("2025-04-06"), ts("2025-06-01")],
            "title": ["Python", "SQL"],
        }
    )
    enrollments = pd.DataFrame(
        {
            "student_id": ["s1", "s2", "s3"],
            "course_id": ["c1", "c1", "c2"],
            "enrolled_at": [ts("2025-01-06")] * 3,
            "unenrolled_at": [pd.NaT, ts("2025-02-10"), pd.NaT],
            "curator_id": ["k1", "k1", "k2"],
            "mentor_id": ["m1", None, "m1"],
            "attr_age": [21, 34, 45],
        }
    )
    assignments = pd.DataFrame(
        {
            "assignment_id": ["a1", "a2", "a3"],
            "course_id": ["c1", "c1", "c2"],
            "due_at": [ts("2025-01-20"), ts("2025-02-03"), ts("2025-03-01")],
            "weight": [1.0, 2.0, 1.0],
        }
    )
    events = pd.DataFrame(
        {
            "student_id": ["s1", "s1", "s1", "s2", "s3", "s3"],
            "course_id": ["c1", "c1", "c1", "c1", "c2", "c2"],
            "ts": [
                ts("2025-01-07 09:00"),
                ts("2025-01-19 20:00"),
                ts("2025-01-25 10:00"),
                ts("2025-01-08 12:00"),
                ts("2025-02-04 08:00"),
                ts("2025-02-05 08:00"),
            ],
            "event_type": [
                "login",
                "assignment_submit",
                "quiz_attempt",
                "lesson_view",
                "feedback",
                "question",
            ],
            "item_id": [None, "a1", "q1", "l1", None, None],
            "value": [None, 85.0, 60.0, None, 4.0, None],
        }
    )
    return {
        "courses": courses,
        "enrollments": enrollments,
        "assignments": assignments,
        "events": events,
    }


def write_source(root: Path, frames: Frames, fmt: str = "parquet") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        if fmt == "csv":
            frame.to_csv(root / f"{name}.csv", index=False)
        else:
            frame.to_parquet(root / f"{name}.parquet", index=False)
    return root


def find(report, severity: str, table: str, column: str | None, check: str):
    matches = [
        p
        for p in report.problems
        if (p.severity, p.table, p.column, p.check) == (severity, table, column, check)
    ]
    assert matches, f"no {severity} {table}.{column} {check} in:\n" + "\n".join(
        f"  {p.severity} {p.where} {p.check}: {p.message}" for p in report.problems
    )
    return matches[0]


# -- corruptions: each changes the clean frames in one way -----------------------------------


def drop_table(name: str) -> Callable[[Frames], None]:
    def corrupt(f: Frames) -> None:
        del f[name]

    return corrupt


def set_cell(table: str, row: int, column: str, value) -> Callable[[Frames], None]:
    def corrupt(f: Frames) -> None:
        frame = f[table].copy()
        if not isinstance(value, type(frame[column].iloc[0])) and value is not None:
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        f[table] = frame

    return corrupt


def replace_column(table: str, column: str, values: list) -> Callable[[Frames], None]:
    def corrupt(f: Frames) -> None:
        f[table] = f[table].assign(**{column: values})

    return corrupt


def rename_column(table: str, old: str, new: str) -> Callable[[Frames], None]:
    def corrupt(f: Frames) -> None:
        f[table] = f[table].rename(columns={old: new})

    return corrupt


def drop_column(table: str, column: str) -> Callable[[Frames], None]:
    def corrupt(f: Frames) -> None:
        f[table] = f[table].drop(columns=[column])

    return corrupt


def duplicate_row(table: str, row: int, **changes) -> Callable[[Frames], None]:
    def corrupt(f: Frames) -> None:
        copy = f[table].iloc[[row]].assign(**changes)
        f[table] = pd.concat([f[table], copy], ignore_index=True)

    return corrupt


def empty(table: str) -> Callable[[Frames], None]:
    def corrupt(f: Frames) -> None:
        f[table] = f[table].iloc[0:0]

    return corrupt


N_EVENTS = 6
CASES = [
    # (id, corruption, severity, table, column, check)
    ("missing events", drop_table("events"), ERROR, "events", None, "missing_table"),
    ("missing courses", drop_table("courses"), ERROR, "courses", None, "missing_table"),
    (
        "missing column",
        drop_column("enrollments", "curator_id"),
        ERROR,
        "enrollments",
        "curator_id",
        "missing_column",
    ),
    (
        "renamed column",
        rename_column("events", "ts", "timestamp"),
        ERROR,
        "events",
        "ts",
        "missing_column",
    ),
    (
        "unknown column",
        replace_column("courses", "teacher", ["x", "y"]),
        WARNING,
        "courses",
        "teacher",
        "unknown_column",
    ),
    (
        "attribute without prefix",
        rename_column("enrollments", "attr_age", "age"),
        WARNING,
        "enrollments",
        "age",
        "unknown_column",
    ),
    (
        "timestamp column of booleans",
        replace_column("events", "ts", [True] * N_EVENTS),
        ERROR,
        "events",
        "ts",
        "wrong_type",
    ),
    (
        "timestamp as unreadable text",
        replace_column("events", "ts", ["2025-01-07"] * (N_EVENTS - 1) + ["yesterday"]),
        ERROR,
        "events",
        "ts",
        "wrong_type",
    ),
    (
        "score as text",
        replace_column("events", "value", ["1", "85", "sixty", None, "4", None]),
        ERROR,
        "events",
        "value",
        "wrong_type",
    ),
    (
        "float ids",
        replace_column("enrollments", "student_id", [1.0, 2.0, 3.0]),
        ERROR,
        "enrollments",
        "student_id",
        "wrong_type",
    ),
    (
        "null in key",
        set_cell("enrollments", 1, "curator_id", None),
        ERROR,
        "enrollments",
        "curator_id",
        "null",
    ),
    ("blank id", set_cell("events", 2, "student_id", " "), ERROR, "events", "student_id", "null"),
    ("null timestamp", set_cell("events", 2, "ts", pd.NaT), ERROR, "events", "ts", "null"),
    (
        "conflicting course",
        duplicate_row("courses", 0, end_at=ts("2025-05-01")),
        ERROR,
        "courses",
        "course_id",
        "duplicate_key",
    ),
    (
        "conflicting enrollment",
        duplicate_row("enrollments", 0, curator_id="k9"),
        ERROR,
        "enrollments",
        "student_id, course_id",
        "duplicate_key",
    ),
    (
        "conflicting assignment",
        duplicate_row("assignments", 0, course_id="c2"),
        ERROR,
        "assignments",
        "assignment_id",
        "duplicate_key",
    ),
    (
        "exact duplicate course",
        duplicate_row("courses", 1),
        WARNING,
        "courses",
        None,
        "duplicate_row",
    ),
    (
        "exact duplicate event",
        duplicate_row("events", 3),
        WARNING,
        "events",
        None,
        "duplicate_row",
    ),
    (
        "unknown event type",
        set_cell("events", 0, "event_type", "Login"),
        ERROR,
        "events",
        "event_type",
        "unknown_event_type",
    ),
    (
        "enrollment of unknown course",
        set_cell("enrollments", 2, "course_id", "c9"),
        ERROR,
        "enrollments",
        "course_id",
        "unknown_course",
    ),
    (
        "many events of unknown enrollments",
        set_cell("events", 3, "student_id", "s9"),
        ERROR,  # 1 of 6 events: far above the tolerated share
        "events",
        "student_id, course_id",
        "unknown_enrollment",
    ),
    (
        "assignment of unknown course",
        set_cell("assignments", 2, "course_id", "c9"),
        WARNING,
        "assignments",
        "course_id",
        "unknown_course",
    ),
    (
        "submission of unknown assignment",
        set_cell("events", 1, "item_id", "a3"),  # a3 belongs to c2, the event to c1
        WARNING,
        "events",
        "item_id",
        "unknown_assignment",
    ),
    (
        "course ends before it starts",
        set_cell("courses", 1, "end_at", ts("2025-01-01")),
        ERROR,
        "courses",
        "end_at",
        "course_end_before_start",
    ),
    (
        "unenrolled before enrolled",
        set_cell("enrollments", 1, "unenrolled_at", ts("2024-12-01")),
        ERROR,
        "enrollments",
        "unenrolled_at",
        "unenrolled_before_enrolled",
    ),
    (
        "event years after its course",
        set_cell("events", 4, "ts", ts("2028-01-01")),
        ERROR,
        "events",
        "ts",
        "outside_course",
    ),
    (
        "deadline years before its course",
        set_cell("assignments", 0, "due_at", ts("2022-01-01")),
        ERROR,
        "assignments",
        "due_at",
        "outside_course",
    ),
    (
        "event in 1970",
        set_cell("events", 0, "ts", ts("1970-01-01")),
        ERROR,
        "events",
        "ts",
        "implausible_timestamp",
    ),
    (
        "enrolment in 2100",
        set_cell("enrollments", 0, "enrolled_at", ts("2100-03-01")),
        ERROR,
        "enrollments",
        "enrolled_at",
        "implausible_timestamp",
    ),
    (
        "negative score",
        set_cell("events", 1, "value", -5.0),
        ERROR,
        "events",
        "value",
        "value_out_of_range",
    ),
    (
        "huge quiz score",
        set_cell("events", 2, "value", 1e9),
        ERROR,
        "events",
        "value",
        "value_out_of_range",
    ),
    (
        "feedback rating 7",
        set_cell("events", 4, "value", 7.0),
        ERROR,
        "events",
        "value",
        "value_out_of_range",
    ),
    ("empty courses", empty("courses"), ERROR, "courses", None, "empty_table"),
    ("empty enrollments", empty("enrollments"), ERROR, "enrollments", None, "empty_table"),
    ("empty events", empty("events"), ERROR, "events", None, "empty_table"),
    ("empty assignments", empty("assignments"), WARNING, "assignments", None, "empty_table"),
]


@pytest.mark.parametrize(
    ("corrupt", "severity", "table", "column", "check"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_corruption_is_reported_where_it_is(tmp_path, corrupt, severity, table, column, check):
    frames = clean_frames()
    corrupt(frames)
    report = validate_source(write_source(tmp_path / "src", frames), CONFIG)
    problem = find(report, severity, table, column, check)
    assert problem.count >= 1 or check in ("empty_table",)
    assert len(problem.examples) <= CONFIG.example_rows
    if severity == WARNING:
        assert report.ok, report.summary()
    else:
        assert not report.ok


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_clean_source_passes_without_problems(tmp_path, fmt):
    report = validate_source(write_source(tmp_path / "src", clean_frames(), fmt), CONFIG)
    assert report.ok
    assert report.problems == ()
    assert report.rows == {"courses": 2, "enrollments": 3, "assignments": 3, "events": 6}


def test_integer_ids_in_csv_are_accepted(tmp_path):
    frames = clean_frames()
    frames["enrollments"]["student_id"] = [1, 2, 3]
    frames["events"]["student_id"] = [1, 1, 1, 2, 3, 3]
    report = validate_source(write_source(tmp_path / "src", frames, "csv"), CONFIG)
    assert report.ok, report.summary()
    assert report.problems == ()


def test_events_as_folder_of_parquet_parts(tmp_path):
    frames = clean_frames()
    events = frames.pop("events")
    root = write_source(tmp_path / "src", frames)
    (root / "events").mkdir()
    events.iloc[:3].to_parquet(root / "events" / "part-0.parquet")
    events.iloc[3:].to_parquet(root / "events" / "part-1.parquet")
    report = validate_source(root, CONFIG)
    assert report.ok and report.rows["events"] == len(events)


def test_few_events_of_unknown_enrollments_are_a_warning(tmp_path):
    frames = clean_frames()
    frames["events"].loc[3, "student_id"] = "s9"
    config = ValidationConfig(max_unknown_enrollment_share=0.5)
    report = validate_source(write_source(tmp_path / "src", frames), config)
    problem = find(report, WARNING, "events", "student_id, course_id", "unknown_enrollment")
    assert problem.count == 1
    assert problem.examples[0]["student_id"] == "s9"
    assert report.ok


def test_exact_duplicates_count_the_surplus_copies(tmp_path):
    frames = clean_frames()
    events = frames["events"]
    frames["events"] = pd.concat([events, events.iloc[[0, 0, 4]]], ignore_index=True)
    report = validate_source(write_source(tmp_path / "src", frames), CONFIG)
    problem = find(report, WARNING, "events", None, "duplicate_row")
    assert problem.count == 3
    copies = sorted(row["copies"] for row in problem.examples)
    assert copies == [2, 3]
    assert report.ok


def test_conflicting_key_examples_show_both_rows(tmp_path):
    frames = clean_frames()
    duplicate_row("courses", 0, end_at=ts("2025-05-01"))(frames)
    report = validate_source(write_source(tmp_path / "src", frames), CONFIG)
    problem = find(report, ERROR, "courses", "course_id", "duplicate_key")
    assert problem.count == 2
    assert [row["course_id"] for row in problem.examples] == ["c1", "c1"]
    assert {row["end_at"][:10] for row in problem.examples} == {"2025-04-06", "2025-05-01"}


def test_examples_are_capped_and_hide_attributes(tmp_path):
    frames = clean_frames()
    frames["enrollments"]["curator_id"] = None
    config = ValidationConfig(example_rows=2)
    report = validate_source(write_source(tmp_path / "src", frames), config)
    problem = find(report, ERROR, "enrollments", "curator_id", "null")
    assert problem.count == 3
    assert len(problem.examples) == 2
    assert all("attr_age" not in row for row in problem.examples)


def test_unknown_event_type_examples_show_each_type(tmp_path):
    frames = clean_frames()
    frames["events"]["event_type"] = ["click", "click", "click", "view", "view", "login"]
    report = validate_source(write_source(tmp_path / "src", frames), CONFIG)
    problem = find(report, ERROR, "events", "event_type", "unknown_event_type")
    assert problem.count == 5
    assert sorted(row["event_type"] for row in problem.examples) == ["click", "view"]


def test_implausible_timestamp_is_not_also_outside_course(tmp_path):
    frames = clean_frames()
    frames["events"].loc[0, "ts"] = ts("1970-01-01")
    report = validate_source(write_source(tmp_path / "src", frames), CONFIG)
    checks = [p.check for p in report.problems if p.where == "events.ts"]
    assert checks == ["implausible_timestamp"]


def test_truncated_parquet_is_an_unreadable_table(tmp_path):
    root = write_source(tmp_path / "src", clean_frames())
    data = (root / "events.parquet").read_bytes()
    (root / "events.parquet").write_bytes(data[: len(data) // 2])
    report = validate_source(root, CONFIG)
    problem = find(report, ERROR, "events", None, "unreadable")
    assert "events.parquet" in problem.message
    assert report.rows.keys() == {"courses", "enrollments", "assignments"}


def test_csv_with_bad_encoding_is_an_unreadable_table(tmp_path):
    root = write_source(tmp_path / "src", clean_frames(), "csv")
    with open(root / "courses.csv", "ab") as fh:
        fh.write("c3,2025-01-01,2025-03-01,Fran\xe7ais\n".encode("latin-1"))
    report = validate_source(root, CONFIG)
    problem = find(report, ERROR, "courses", None, "unreadable")
    assert "courses.csv" in problem.message


def test_csv_with_stray_delimiter_is_an_unreadable_table(tmp_path):
    root = write_source(tmp_path / "src", clean_frames(), "csv")
    lines = (root / "events.csv").read_text().splitlines()
    lines[2] = lines[2].replace("login", "log,in").replace("assignment_submit", "assign,ment")
    (root / "events.csv").write_text("\n".join(lines) + "\n")
    report = validate_source(root, CONFIG)
    problem = find(report, ERROR, "events", None, "unreadable")
    assert problem.count == 1
    assert "assign,ment" in problem.examples[0]["line"]


@pytest.mark.parametrize(
    ("table", "severity"), [("events", ERROR), ("assignments", ERROR), ("interventions", WARNING)]
)
def test_zero_byte_csv_is_an_empty_table(tmp_path, table, severity):
    """No header line means no columns: an error for a required table, a warning otherwise."""
    root = write_source(tmp_path / "src", clean_frames(), "csv")
    (root / f"{table}.csv").write_bytes(b"")
    report = validate_source(root, CONFIG)
    problem = find(report, severity, table, None, "empty_table")
    assert "empty" in problem.message
    assert [p.where for p in report.problems] == [table]


def test_table_present_twice_is_reported(tmp_path):
    frames = clean_frames()
    root = write_source(tmp_path / "src", frames)
    frames["events"].to_csv(root / "events.csv", index=False)
    report = validate_source(root, CONFIG)
    find(report, ERROR, "events", None, "unreadable")


def test_missing_source_folder_raises_a_user_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        validate_source(tmp_path / "nowhere", CONFIG)


def test_require_valid_raises_with_the_report(tmp_path):
    frames = clean_frames()
    frames["events"].loc[0, "event_type"] = "Login"
    root = write_source(tmp_path / "src", frames)
    with pytest.raises(ValidationFailed, match="events.event_type") as info:
        require_valid(root, CONFIG)
    assert info.value.exit_code == 2
    assert info.value.report.errors[0].check == "unknown_event_type"


def test_require_valid_passes_warnings(tmp_path):
    frames = clean_frames()
    duplicate_row("events", 3)(frames)
    report = require_valid(write_source(tmp_path / "src", frames), CONFIG)
    assert report.ok and len(report.warnings) == 1
