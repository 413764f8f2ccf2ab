"""The progress-log contract: the tables a source holds, their columns and the event vocabulary.

Every source (a school export, the OULAD ingest, the synthetic school) is a folder of these tables.
This module is the single place that says what they look like; validation, ingest, the generator
and feature building all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa


class Kind(StrEnum):
    """Logical column types; validation maps physical types onto these."""

    STRING = "string"
    TIMESTAMP = "timestamp"
    NUMBER = "number"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = True  # column must exist
    nullable: bool = False  # null values allowed


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # columns that identify a row; duplicates of a key are errors
    optional: bool = False  # the whole table may be absent
    attr_prefix: str | None = None  # extra columns with this prefix are allowed (static attributes)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


ATTR_PREFIX = "attr_"

COURSES = TableSpec(
    name="courses",
    columns=(
        Column("course_id", Kind.STRING),
        Column("start_at", Kind.TIMESTAMP),
        Column("end_at", Kind.TIMESTAMP),
        Column("title", Kind.STRING, required=False, nullable=True),
    ),
    key=("course_id",),
)

ENROLLMENTS = TableSpec(
    name="enrollments",
    columns=(
        Column("student_id", Kind.STRING),
        Column("course_id", Kind.STRING),
        Column("enrolled_at", Kind.TIMESTAMP),
        Column("unenrolled_at", Kind.TIMESTAMP, nullable=True),
        Column("curator_id", Kind.STRING),
        Column("mentor_id", Kind.STRING, required=False, nullable=True),
        # Curator-facing pages and files only (the messages' {first_name}); never MLflow.
        Column("display_name", Kind.STRING, required=False, nullable=True),
    ),
    key=("student_id", "course_id"),
    attr_prefix=ATTR_PREFIX,
)

EVENTS = TableSpec(
    name="events",
    columns=(
        Column("student_id", Kind.STRING),
        Column("course_id", Kind.STRING),
        Column("ts", Kind.TIMESTAMP),
        Column("event_type", Kind.STRING),
        Column("item_id", Kind.STRING, required=False, nullable=True),
        Column("value", Kind.NUMBER, required=False, nullable=True),
    ),
    key=(),  # events have no natural key; exact duplicates are dropped with a warning
)

ASSIGNMENTS = TableSpec(
    name="assignments",
    columns=(
        Column("assignment_id", Kind.STRING),
        Column("course_id", Kind.STRING),
        Column("due_at", Kind.TIMESTAMP),
        Column("weight", Kind.NUMBER, required=False, nullable=True),
    ),
    key=("assignment_id",),
)

INTERVENTIONS = TableSpec(
    name="interventions",
    columns=(
        Column("student_id", Kind.STRING),
        Column("course_id", Kind.STRING),
        Column("ts", Kind.TIMESTAMP),
        Column("curator_id", Kind.STRING),
        Column("action", Kind.STRING),
        Column("outcome", Kind.STRING, required=False, nullable=True),
    ),
    key=(),
    optional=True,
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (COURSES, ENROLLMENTS, EVENTS, ASSIGNMENTS, INTERVENTIONS)
}
REQUIRED_TABLES = tuple(name for name, spec in TABLES.items() if not spec.optional)


class EventType(StrEnum):
    LOGIN = "login"
    LESSON_VIEW = "lesson_view"
    LESSON_COMPLETE = "lesson_complete"
    ASSIGNMENT_SUBMIT = "assignment_submit"  # item_id = assignment_id, value = score 0-100
    QUIZ_ATTEMPT = "quiz_attempt"  # value = score 0-100
    QUESTION = "question"  # a question to curator, mentor or chat
    SUPPORT_TICKET = "support_ticket"  # a technical problem
    FEEDBACK = "feedback"  # value = rating 1-5
    ACTIVITY = "activity"  # any other activity; value = count


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)

# Value ranges per event type, where the value has a meaning.
SCORE_RANGE = (0.0, 100.0)
FEEDBACK_RANGE = (1.0, 5.0)
VALUE_RANGES: dict[str, tuple[float, float]] = {
    EventType.ASSIGNMENT_SUBMIT: SCORE_RANGE,
    EventType.QUIZ_ATTEMPT: SCORE_RANGE,
    EventType.FEEDBACK: FEEDBACK_RANGE,
}


# The events table as writers of this project store it (synthetic school, Moodle ingest): ids
# and types dictionary-encoded, times in microseconds UTC.
EVENTS_SCHEMA = pa.schema(
    [
        ("student_id", pa.dictionary(pa.int32(), pa.string())),
        ("course_id", pa.dictionary(pa.int32(), pa.string())),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("event_type", pa.dictionary(pa.int8(), pa.string())),
        ("item_id", pa.dictionary(pa.int32(), pa.string())),
        ("value", pa.float64()),
    ]
)
