"""Moodle -> the progress-log contract: pure mapping of Moodle rows onto courses, enrollments,
events and assignments (docs/moodle.md has the table). No IO: `pipelines/moodle_store.py` reads
the rows, `pipelines/moodle_steps.py` wires the steps.

Ids become strings of Moodle's numeric ids (`course.id`, `user.id`, the course-module id of an
assignment): they are stable where shortnames and usernames may be renamed. Times are Moodle's
Unix seconds, as UTC timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from configs.schema import MoodleConfig
from features.contract import EVENT_TYPES, EVENTS_SCHEMA, SCORE_RANGE, EventType
from features.errors import NotaloneError

SKIP_EVENT = "skip"  # an event_map value: rows of this eventname are dropped (counted elsewhere)
SITE_FORMAT = "site"  # course.format of the front page (course id 1), not a course run
CONTEXT_COURSE = 50  # context.contextlevel of a course
CONTEXT_MODULE = 70  # context.contextlevel of a course module (activity)
SUSPENDED = 1  # user_enrolments.status / enrol.status: 0 active, 1 suspended / disabled
SUBMITTED = "submitted"  # assign_submission.status of a handed-in submission (others: new, draft)
ASSIGN_MODULE = "assign"  # modules.name of the assignment activity
GRADE_ITEM_MOD = "mod"  # grade_items.itemtype of an activity's grade

# The Moodle columns read, by table, with the kind of value each must hold. Checked against the
# database before anything is read (pipelines/moodle_store.py), so a differing schema fails early.
INT, TEXT, NUMBER = "int", "text", "number"
COLUMNS: dict[str, dict[str, str]] = {
    "course": {
        "id": INT,
        "fullname": TEXT,
        "shortname": TEXT,
        "format": TEXT,
        "startdate": INT,
        "enddate": INT,
    },
    "user": {"id": INT, "firstname": TEXT, "lastname": TEXT, "deleted": INT},
    "enrol": {"id": INT, "enrol": TEXT, "status": INT, "courseid": INT, "timemodified": INT},
    "user_enrolments": {
        "id": INT,
        "status": INT,
        "enrolid": INT,
        "userid": INT,
        "timestart": INT,
        "timeend": INT,
        "timecreated": INT,
        "timemodified": INT,
    },
    "role": {"id": INT, "shortname": TEXT},
    "context": {"id": INT, "contextlevel": INT, "instanceid": INT},
    "role_assignments": {"id": INT, "roleid": INT, "contextid": INT, "userid": INT},
    "groups": {"id": INT, "courseid": INT},
    "groups_members": {"id": INT, "groupid": INT, "userid": INT},
    "modules": {"id": INT, "name": TEXT},
    "course_modules": {"id": INT, "course": INT, "module": INT, "instance": INT},
    "assign": {"id": INT, "course": INT, "name": TEXT, "duedate": INT, "grade": INT},
    "assign_submission": {
        "id": INT,
        "assignment": INT,
        "userid": INT,
        "timemodified": INT,
        "status": TEXT,
        "attemptnumber": INT,
        "latest": INT,
    },
    "assign_grades": {
        "id": INT,
        "assignment": INT,
        "userid": INT,
        "grade": NUMBER,
        "attemptnumber": INT,
    },
    "grade_items": {
        "id": INT,
        "courseid": INT,
        "itemtype": TEXT,
        "itemmodule": TEXT,
        "iteminstance": INT,
        "itemnumber": INT,
        "grademax": NUMBER,
        "grademin": NUMBER,
    },
    "grade_grades": {"id": INT, "itemid": INT, "userid": INT, "finalgrade": NUMBER},
}
LOG_TABLE = "logstore_standard_log"
LOG_COLUMNS: dict[str, str] = {
    "id": INT,
    "eventname": TEXT,
    "userid": INT,
    "courseid": INT,
    "contextlevel": INT,
    "contextinstanceid": INT,
    "timecreated": INT,
}
# Columns newer Moodle versions added: naming the version makes a "column missing" error useful.
ADDED_IN: dict[tuple[str, str], str] = {
    ("course", "enddate"): "3.2",
    (LOG_TABLE, "id"): "2.7 (the standard log store)",
}

# What one streamed batch of log rows holds (pipelines/moodle_store.py selects it): the ids the
# mapping needs, with the course-module id already chosen for rows in an activity's context, and
# the event either by name (`eventname`) or already coded by the server (`event_code`, from
# `event_codes`: sending a small integer instead of the name makes reading ~1.35x faster).
LOG_BATCH_COLUMNS = ("userid", "courseid", "cmid", "timecreated")
EVENT_NAME, EVENT_CODE = "eventname", "event_code"
SKIP_CODE = -1


class MoodleMappingError(NotaloneError):
    """Moodle rows that cannot be mapped onto the contract (bad config or inconsistent data)."""


@dataclass(frozen=True)
class MoodleTables:
    """The Moodle rows the mapping needs (one DataFrame per table of `COLUMNS`)."""

    frames: dict[str, pd.DataFrame]

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]


@dataclass
class Mapped:
    """The contract tables made from the re-read Moodle tables (all but the log events)."""

    courses: pd.DataFrame
    enrollments: pd.DataFrame
    assignments: pd.DataFrame
    submissions: pa.Table  # assignment_submit events, from assign_submission and the grades
    dropped: dict[str, int] = field(default_factory=dict)


def _utc(seconds: pd.Series) -> pd.Series:
    return pd.to_datetime(seconds.astype("int64"), unit="s", utc=True).astype("datetime64[us, UTC]")


def _ids(values: pd.Series) -> pd.Series:
    return values.astype("int64").astype(str)


def check_event_map(event_map: dict[str, str]) -> None:
    """Every mapped value must be an event type of the contract or `skip`."""
    bad = {name: kind for name, kind in event_map.items() if kind not in (*EVENT_TYPES, SKIP_EVENT)}
    if bad:
        examples = ", ".join(f"{k!r} -> {v!r}" for k, v in list(bad.items())[:5])
        raise MoodleMappingError(
            f"moodle.event_map maps {len(bad)} event name(s) onto unknown event types ({examples});"
            f" allowed: {', '.join(EVENT_TYPES)} or {SKIP_EVENT}"
        )


def map_courses(course: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Course runs: every course but the front page, with a start and an end date."""
    runs = course[course["format"] != SITE_FORMAT]
    dated = runs[(runs["startdate"] > 0) & (runs["enddate"] > runs["startdate"])]
    dropped = {"courses without a start or end date (startdate/enddate 0): skipped": len(runs)}
    dropped = {k: v - len(dated) for k, v in dropped.items() if v - len(dated)}
    out = pd.DataFrame(
        {
            "course_id": _ids(dated["id"]),
            "start_at": _utc(dated["startdate"]),
            "end_at": _utc(dated["enddate"]),
            "title": dated["fullname"].astype(str),
        }
    )
    return out.sort_values("course_id", kind="stable").reset_index(drop=True), dropped


def _course_roles(tables: MoodleTables, shortnames: tuple[str, ...]) -> pd.DataFrame:
    """(userid, courseid) of the role assignments in course contexts with one of these roles."""
    role = tables["role"]
    role_ids = role.loc[role["shortname"].isin(shortnames), "id"]
    ctx = tables["context"]
    course_ctx = ctx.loc[ctx["contextlevel"] == CONTEXT_COURSE, ["id", "instanceid"]]
    ra = tables["role_assignments"]
    ra = ra[ra["roleid"].isin(role_ids)].merge(
        course_ctx.rename(columns={"id": "contextid", "instanceid": "courseid"}), on="contextid"
    )
    return ra[["userid", "courseid"]].drop_duplicates()


def _staff_for(students: pd.DataFrame, staff: pd.DataFrame, tables: MoodleTables) -> pd.Series:
    """Per (userid, courseid) of `students`: the staff member sharing a group with the student in
    that course (lowest user id if several), else the course's staff member with the lowest id;
    NaN when the course has none."""
    if staff.empty:
        return pd.Series(np.nan, index=students.index, dtype=object)
    groups = tables["groups"][["id", "courseid"]].rename(columns={"id": "groupid"})
    members = tables["groups_members"][["groupid", "userid"]].merge(groups, on="groupid")
    staff_groups = members.merge(staff, on=["userid", "courseid"]).rename(
        columns={"userid": "staffid"}
    )
    shared = (
        members.merge(staff_groups, on=["groupid", "courseid"])
        .query("userid != staffid")
        .groupby(["userid", "courseid"], as_index=False)["staffid"]
        .min()
    )
    first = staff.groupby("courseid", as_index=False)["userid"].min()
    first = first.rename(columns={"userid": "first_staff"})
    keyed = students[["userid", "courseid"]].merge(shared, on=["userid", "courseid"], how="left")
    keyed = keyed.merge(first, on="courseid", how="left")
    chosen = keyed["staffid"].fillna(keyed["first_staff"])
    out = chosen.map(lambda v: str(int(v)) if pd.notna(v) else np.nan)
    out.index = students.index
    return out


def map_enrollments(
    tables: MoodleTables, courses: pd.DataFrame, config: MoodleConfig
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Student enrolments: `user_enrolments` with `enrol`, for users with a student role in the
    course. Several enrolment methods of one student in one course become one enrolment (the
    earliest start; still enrolled when any method is active)."""
    course_ids = courses["course_id"].astype("int64")
    ue = tables["user_enrolments"].merge(
        tables["enrol"][["id", "courseid", "status", "timemodified"]].rename(
            columns={"id": "enrolid", "status": "enrol_status", "timemodified": "enrol_modified"}
        ),
        on="enrolid",
    )
    ue = ue[ue["courseid"].isin(course_ids)]
    students = _course_roles(tables, config.student_roles)
    is_student = pd.MultiIndex.from_frame(ue[["userid", "courseid"]]).isin(
        pd.MultiIndex.from_frame(students)
    )
    users = tables["user"]
    deleted = ue["userid"].isin(users.loc[users["deleted"] != 0, "id"])
    dropped = {
        "enrolments of users without a student role in the course (staff)": int(
            (~is_student).sum()
        ),
        "enrolments of deleted users": int((is_student & deleted).sum()),
    }
    ue = ue[is_student & ~deleted].copy()
    if ue.empty:
        raise MoodleMappingError(
            "no student enrolments found: user_enrolments has no rows of users holding the role(s) "
            f"{', '.join(config.student_roles)} (role.shortname, moodle.student_roles) in a dated "
            "course"
        )
    end_at = courses.set_index(course_ids)["end_at"]
    course_end_s = ue["courseid"].map(end_at).astype("int64") // 10**6
    ue["start_s"] = ue["timestart"].where(ue["timestart"] > 0, ue["timecreated"])
    suspended = ue["status"] == SUSPENDED
    disabled = ue["enrol_status"] == SUSPENDED
    ended_early = (ue["timeend"] > 0) & (ue["timeend"] < course_end_s)
    ue["end_s"] = np.where(
        suspended,
        ue["timemodified"],
        np.where(disabled, ue["enrol_modified"], np.where(ended_early, ue["timeend"], -1)),
    )
    ue["open"] = ue["end_s"] < 0
    per = ue.groupby(["userid", "courseid"], as_index=False).agg(
        start_s=("start_s", "min"), end_s=("end_s", "max"), open=("open", "any")
    )
    per["end_s"] = per["end_s"].where(~per["open"])
    curators = _staff_for(per, _course_roles(tables, (config.curator_role,)), tables)
    mentors = (
        _staff_for(per, _course_roles(tables, (config.mentor_role,)), tables)
        if config.mentor_role
        else pd.Series(np.nan, index=per.index, dtype=object)
    )
    no_curator = int(curators.isna().sum())
    if no_curator:
        dropped[
            f"enrolments in courses without a {config.curator_role!r} (curator_id set to "
            f"{config.missing_curator_id!r})"
        ] = no_curator
    names = users.set_index("id")
    display = (names["firstname"].astype(str) + " " + names["lastname"].astype(str)).str.strip()
    out = pd.DataFrame(
        {
            "student_id": _ids(per["userid"]),
            "course_id": _ids(per["courseid"]),
            "enrolled_at": _utc(per["start_s"]),
            "unenrolled_at": pd.to_datetime(per["end_s"], unit="s", utc=True).astype(
                "datetime64[us, UTC]"
            ),
            "curator_id": curators.fillna(config.missing_curator_id).astype(str),
            "mentor_id": mentors.astype("str").where(mentors.notna()),
            "display_name": per["userid"].map(display),
        }
    )
    out = out.sort_values(["course_id", "student_id"], kind="stable").reset_index(drop=True)
    return out, {k: v for k, v in dropped.items() if v}


def carry_over_removed(
    previous: pd.DataFrame | None, current: pd.DataFrame, noticed_at: pd.Timestamp
) -> tuple[pd.DataFrame, int]:
    """Keep enrolments an earlier run saw but Moodle no longer has (a deleted `user_enrolments`
    row is how Moodle usually unenrols): unenrolled at the moment this run noticed, unless the
    earlier run already knew when. Returns the enrolments and how many were carried over."""
    if previous is None or previous.empty:
        return current, 0
    key = ["student_id", "course_id"]
    gone = previous.merge(current[key], on=key, how="left", indicator=True)
    gone = gone[gone["_merge"] == "left_only"].drop(columns="_merge")
    if gone.empty:
        return current, 0
    gone["unenrolled_at"] = gone["unenrolled_at"].fillna(noticed_at)
    gone = gone[[c for c in current.columns if c in gone.columns]]
    merged = pd.concat([current, gone], ignore_index=True)
    merged = merged.sort_values(key[::-1], kind="stable").reset_index(drop=True)
    return merged, len(gone)


def _assignment_modules(tables: MoodleTables) -> pd.DataFrame:
    """assign.id -> its course-module id (the id log rows of the activity carry)."""
    modules = tables["modules"]
    assign_module = modules.loc[modules["name"] == ASSIGN_MODULE, "id"]
    cm = tables["course_modules"]
    cm = cm[cm["module"].isin(assign_module)]
    return cm[["id", "instance"]].rename(columns={"id": "cmid", "instance": "assign"})


def map_assignments(
    tables: MoodleTables, courses: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Assignments with a due date (`assign.duedate`), identified by their course-module id."""
    assign = tables["assign"].merge(
        _assignment_modules(tables), left_on="id", right_on="assign", how="left"
    )
    in_course = assign["course"].isin(courses["course_id"].astype("int64"))
    assign = assign[in_course]
    keep = (assign["duedate"] > 0) & assign["cmid"].notna()
    dropped = {
        "assignments without a due date (duedate 0): skipped": int((assign["duedate"] <= 0).sum()),
        "assignments without a course module: skipped": int(assign["cmid"].isna().sum()),
    }
    assign = assign[keep]
    out = pd.DataFrame(
        {
            "assignment_id": _ids(assign["cmid"]),
            "course_id": _ids(assign["course"]),
            "due_at": _utc(assign["duedate"]),
        }
    )
    out = out.sort_values(["course_id", "assignment_id"], kind="stable").reset_index(drop=True)
    return out, {k: v for k, v in dropped.items() if v}


def scale_score(grade, grade_min, grade_max):
    """A grade on [grade_min, grade_max] as 0-100 (NaN when the range is empty or unknown)."""
    grade = np.asarray(grade, dtype="float64")
    lo = np.asarray(grade_min, dtype="float64")
    hi = np.asarray(grade_max, dtype="float64")
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(span > 0, (grade - lo) / span * SCORE_RANGE[1], np.nan)
    return np.clip(score, *SCORE_RANGE)


def map_submissions(
    tables: MoodleTables, assignments: pd.DataFrame, enrollments: pd.DataFrame
) -> tuple[pa.Table, dict[str, int]]:
    """assignment_submit events: the latest handed-in attempt of each `assign_submission`, at its
    `timemodified`, valued by the gradebook (`grade_grades.finalgrade` on the grade item's range)
    or, where the gradebook has no grade, by `assign_grades.grade` out of `assign.grade`."""
    sub = tables["assign_submission"]
    sub = sub[(sub["status"] == SUBMITTED) & (sub["latest"] == 1)]
    cm = _assignment_modules(tables)
    sub = sub.merge(cm, left_on="assignment", right_on="assign")
    sub = sub[_ids(sub["cmid"]).isin(assignments["assignment_id"])]
    student = pd.MultiIndex.from_arrays(
        [_ids(sub["userid"]), sub["assignment"].map(tables["assign"].set_index("id")["course"])]
    )
    enrolled = pd.MultiIndex.from_arrays(
        [enrollments["student_id"], enrollments["course_id"].astype("int64")]
    )
    not_enrolled = ~student.isin(enrolled)
    dropped = {"submissions of users without a student enrolment": int(not_enrolled.sum())}
    sub = sub[~not_enrolled]
    # Gradebook first: it is what the student sees, after overrides and scales.
    items = tables["grade_items"]
    items = items[
        (items["itemtype"] == GRADE_ITEM_MOD)
        & (items["itemmodule"] == ASSIGN_MODULE)
        & (items["itemnumber"] == 0)
    ]
    book = tables["grade_grades"].merge(
        items[["id", "iteminstance", "grademin", "grademax"]].rename(columns={"id": "itemid"}),
        on="itemid",
    )
    book = book.dropna(subset=["finalgrade"])
    book["book_score"] = scale_score(book["finalgrade"], book["grademin"], book["grademax"])
    sub = sub.merge(
        book[["iteminstance", "userid", "book_score"]].drop_duplicates(["iteminstance", "userid"]),
        left_on=["assignment", "userid"],
        right_on=["iteminstance", "userid"],
        how="left",
    )
    grades = tables["assign_grades"]
    grades = grades[grades["grade"].notna() & (grades["grade"] >= 0)]
    grades = grades.sort_values("attemptnumber").drop_duplicates(
        ["assignment", "userid"], keep="last"
    )
    grades = grades.merge(
        tables["assign"][["id", "grade"]].rename(columns={"id": "assignment", "grade": "max"}),
        on="assignment",
    )
    grades["assign_score"] = scale_score(grades["grade"], 0.0, grades["max"])
    sub = sub.merge(
        grades[["assignment", "userid", "assign_score"]], on=["assignment", "userid"], how="left"
    )
    value = sub["book_score"].fillna(sub["assign_score"])
    course = sub["assignment"].map(tables["assign"].set_index("id")["course"])
    n = len(sub)
    table = pa.table(
        {
            "student_id": pa.array(_ids(sub["userid"]).to_numpy(dtype=object), pa.string()),
            "course_id": pa.array(_ids(course).to_numpy(dtype=object), pa.string()),
            "ts": pa.array(
                sub["timemodified"].to_numpy(dtype="int64") * 1_000_000,
                pa.timestamp("us", tz="UTC"),
            ),
            "event_type": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype="int8")),
                pa.array([str(EventType.ASSIGNMENT_SUBMIT)]),
            ),
            "item_id": pa.array(_ids(sub["cmid"]).to_numpy(dtype=object), pa.string()),
            "value": pa.array(value.to_numpy(dtype="float64"), pa.float64(), from_pandas=True),
        }
    )
    return table.cast(EVENTS_SCHEMA), {k: v for k, v in dropped.items() if v}


def map_moodle(
    tables: MoodleTables,
    config: MoodleConfig,
    previous_enrollments: pd.DataFrame | None = None,
    noticed_at: pd.Timestamp | None = None,
) -> Mapped:
    """Courses, enrolments, assignments and submission events from the re-read tables; with an
    earlier run's enrolments, those gone from Moodle are kept as unenrolled at `noticed_at`."""
    courses, dropped = map_courses(tables["course"])
    if courses.empty:
        raise MoodleMappingError(
            "no course runs found: table course has no rows (other than the front page) with "
            "both startdate and enddate set"
        )
    enrollments, d2 = map_enrollments(tables, courses, config)
    if previous_enrollments is not None:
        if noticed_at is None:
            raise ValueError("noticed_at is required with previous_enrollments")
        enrollments, carried = carry_over_removed(previous_enrollments, enrollments, noticed_at)
        if carried:
            d2["enrolments gone from Moodle since an earlier run: kept, unenrolled"] = carried
    assignments, d3 = map_assignments(tables, courses)
    submissions, d4 = map_submissions(tables, assignments, enrollments)
    return Mapped(courses, enrollments, assignments, submissions, {**dropped, **d2, **d3, **d4})


def enrolment_keys(enrollments: pd.DataFrame) -> pa.Array:
    """One int64 per student enrolment (user id and course id packed), for filtering log rows."""
    return pa.array(
        _pack(
            enrollments["student_id"].astype("int64").to_numpy(),
            enrollments["course_id"].astype("int64").to_numpy(),
        )
    )


KEY_BITS = 32  # course ids below 2^32 and user ids below 2^31 pack into one int64


def _pack(userid, courseid):
    return (np.asarray(userid, dtype="int64") << KEY_BITS) | np.asarray(courseid, dtype="int64")


def _pack_arrow(userid: pa.Array, courseid: pa.Array) -> pa.Array:
    return pc.bit_wise_or(pc.shift_left(userid, KEY_BITS), courseid)


def event_code(kind: str) -> int:
    """The code of an event type (its index in EVENT_TYPES), SKIP_CODE for `skip`."""
    if kind == SKIP_EVENT:
        return SKIP_CODE
    if kind not in EVENT_TYPES:
        raise MoodleMappingError(
            f"{kind!r} is not an event type (allowed: {', '.join(EVENT_TYPES)} or {SKIP_EVENT})"
        )
    return EVENT_TYPES.index(kind)


def event_codes(event_map: dict[str, str], default_type: str) -> tuple[dict[str, int], int]:
    """The event map compiled to codes: {eventname: code} and the code of every other name."""
    check_event_map(event_map)
    return {name: event_code(kind) for name, kind in event_map.items()}, event_code(default_type)


def _dictionary_strings(values: pa.Array) -> pa.Array:
    """Integer ids as a dictionary of their decimal strings (a hash of ints, then a small cast:
    much cheaper than casting every row, and the Parquet file stores each id once per page)."""
    encoded = pc.dictionary_encode(values)
    return pa.DictionaryArray.from_arrays(
        pc.cast(encoded.indices, pa.int32()), pc.cast(encoded.dictionary, pa.string())
    )


def map_log_batch(
    batch: pa.RecordBatch | pa.Table,
    student_keys: pa.Array,
    event_map: dict[str, str],
    default_type: str = EventType.ACTIVITY,
) -> tuple[pa.Table, dict[str, int]]:
    """Rows of `logstore_standard_log` -> events of student enrolments.

    `batch` holds `LOG_BATCH_COLUMNS` (userid, courseid, timecreated and cmid: the course-module
    id when the row's context is an activity, else null) and `eventname` or `event_code`. Names
    map through `event_map` (unknown names: `default_type`; `skip`: dropped; codes were mapped
    the same way by the server); rows without a course or of users who are not students of that
    course are dropped and counted."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    by = EVENT_CODE if EVENT_CODE in table.column_names else EVENT_NAME
    missing = [c for c in (by, *LOG_BATCH_COLUMNS) if c not in table.column_names]
    if missing:
        raise MoodleMappingError(f"{LOG_TABLE} rows lack column(s) {', '.join(missing)}")
    table = table.combine_chunks()
    n_rows = table.num_rows
    if by == EVENT_CODE:
        codes = table[EVENT_CODE].chunk(0).to_numpy(zero_copy_only=False) if n_rows else []
        codes = np.asarray(codes, dtype="int8")
        bad = (codes != SKIP_CODE) & ((codes < 0) | (codes >= len(EVENT_TYPES)))
        if bad.any():
            raise MoodleMappingError(f"event_code {int(codes[bad][0])} is not an event type code")
    else:
        names = pc.dictionary_encode(
            table[EVENT_NAME].chunk(0) if n_rows else pa.array([], pa.string())
        )
        compiled, default_code = event_codes(event_map, default_type)
        codes_for_name = np.array(
            [compiled.get(name, default_code) for name in names.dictionary.to_pylist()],
            dtype="int8",
        )
        codes = codes_for_name[names.indices.to_numpy(zero_copy_only=False)]
    userid = table["userid"].chunk(0) if table.num_rows else pa.array([], pa.int64())
    courseid = pc.fill_null(
        table["courseid"].chunk(0) if table.num_rows else pa.array([], pa.int64()), 0
    )
    keys = _pack_arrow(userid, courseid)
    is_student = pc.is_in(keys, value_set=student_keys).to_numpy(zero_copy_only=False)
    skipped = codes == SKIP_CODE
    keep = is_student & ~skipped
    dropped = {
        f"log rows mapped to {SKIP_EVENT} (read from their own tables)": int(
            (skipped & is_student).sum()
        ),
        "log rows without a student enrolment (site-level, staff, guests, other courses)": int(
            (~is_student).sum()
        ),
    }
    # Only the numeric columns are filtered: the event names are already codes.
    kept = table.select(["userid", "courseid", "cmid", "timecreated"])
    if not keep.all():
        kept = kept.filter(pa.array(keep))
    n = kept.num_rows

    def column(name: str, kind: pa.DataType) -> pa.Array:
        return kept[name].chunk(0) if n else pa.array([], kind)

    events = pa.table(
        {
            "student_id": _dictionary_strings(column("userid", pa.int64())),
            "course_id": _dictionary_strings(column("courseid", pa.int64())),
            "ts": pc.multiply(column("timecreated", pa.int64()), 1_000_000).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "event_type": pa.DictionaryArray.from_arrays(
                pa.array(codes[keep], pa.int8()), pa.array(list(EVENT_TYPES))
            ),
            "item_id": _dictionary_strings(column("cmid", pa.int64())),
            "value": pa.nulls(n, pa.float64()),
        },
        schema=EVENTS_SCHEMA,
    )
    return events, dropped
