"""OULAD (Open University Learning Analytics Dataset) reader and its mapping into the contract.

OULAD dates are integer days relative to the start of a module presentation. Every such day d is
mapped to `start + d days + event_hour_utc`, so an event of day d lies strictly after midnight of d
and strictly before the weekly snapshot at midnight of d + 1. `final_result` (the outcome at the end
of a presentation) is never read: it would leak the label. docs/oulad.md documents every choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from configs.schema import OuladConfig
from features.contract import ATTR_PREFIX, EVENT_TYPES, VALUE_RANGES, EventType
from features.errors import NotaloneError
from features.sources import SourceInfo

TS_DTYPE = "datetime64[us, UTC]"
PRESENTATION_KEYS = ["code_module", "code_presentation"]
ENROLMENT_KEYS = ["code_module", "code_presentation", "id_student"]
LEAKING_COLUMNS = ("final_result",)  # outcome at the end of a presentation: never read

# The columns each file must hold and how they are typed when read (nullable ints for dates).
FILE_COLUMNS: dict[str, dict[str, str]] = {
    "courses": {
        "code_module": "str",
        "code_presentation": "str",
        "module_presentation_length": "int64",
    },
    "assessments": {
        "code_module": "str",
        "code_presentation": "str",
        "id_assessment": "int64",
        "assessment_type": "str",
        "date": "Int64",
        "weight": "float64",
    },
    "vle": {
        "id_site": "int64",
        "code_module": "str",
        "code_presentation": "str",
        "activity_type": "str",
    },
    "studentInfo": {"code_module": "str", "code_presentation": "str", "id_student": "int64"},
    "studentRegistration": {
        "code_module": "str",
        "code_presentation": "str",
        "id_student": "int64",
        "date_registration": "Int64",
        "date_unregistration": "Int64",
    },
    "studentAssessment": {
        "id_assessment": "int64",
        "id_student": "int64",
        "date_submitted": "Int64",
        "is_banked": "int64",
        "score": "float64",
    },
    "studentVle": {
        "code_module": "str",
        "code_presentation": "str",
        "id_student": "int64",
        "id_site": "int64",
        "date": "Int64",
        "sum_click": "float64",
    },
    "pre_course": {
        "code_module": "str",
        "code_presentation": "str",
        "id_student": "int64",
        "pre_course_clicks": "int64",
    },
}
# studentInfo columns that are numbers; every other non-key column is a string attribute.
NUMERIC_INFO_COLUMNS = {"num_of_prev_attempts": "Int64", "studied_credits": "Int64"}
PRE_COURSE_ATTR = f"{ATTR_PREFIX}pre_course_clicks"


class OuladError(NotaloneError):
    """The OULAD folder, one of its files or one of their columns is missing or unusable."""


@dataclass(frozen=True)
class OuladRaw:
    """The OULAD tables as read from disk (only the columns the mapping uses)."""

    courses: pd.DataFrame
    assessments: pd.DataFrame
    vle: pd.DataFrame
    student_info: pd.DataFrame
    registrations: pd.DataFrame
    submissions: pd.DataFrame
    clicks: pd.DataFrame
    pre_course: pd.DataFrame | None  # None when no pre-course file is configured or present


@dataclass(frozen=True)
class OuladContract:
    """The four contract tables plus an account of every dropped and every noteworthy kept row."""

    courses: pd.DataFrame
    enrollments: pd.DataFrame
    assignments: pd.DataFrame
    events: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows left out
    notes: dict[str, int] = field(default_factory=dict)  # fact -> rows kept but worth knowing
    click_courses: tuple[str, ...] = ()  # course runs whose events include clicks

    @property
    def exported_at(self) -> datetime:
        """The export time written to source.yaml: the midnight after the last OULAD day.

        OULAD covers every presentation to its last day (day `length`, whose rows sit at 12:00
        after `end_at`), so nothing can have happened unrecorded before the midnight after the
        latest course end or the latest observed row, whichever is later.
        """
        observed = [
            self.courses["end_at"].max(),
            self.events["ts"].max(),
            self.enrollments["enrolled_at"].max(),
            self.enrollments["unenrolled_at"].max(),
        ]
        latest = max(pd.Timestamp(t) for t in observed if pd.notna(t))
        return (latest.floor("D") + pd.Timedelta(days=1)).to_pydatetime()

    def source_info(self) -> SourceInfo:
        """What `source.yaml` beside the tables says (the export time)."""
        return SourceInfo(exported_at=self.exported_at)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "courses": self.courses,
            "enrollments": self.enrollments,
            "assignments": self.assignments,
            "events": self.events,
        }


# ---------------------------------------------------------------------------------------- reading


def find_oulad_files(folder: Path, config: OuladConfig) -> dict[str, Path | None]:
    """Locate each OULAD file (`NAME.csv` or `NAME.csv.gz`); raise naming the first missing one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OuladError(f"OULAD folder not found: {folder}")
    found: dict[str, Path | None] = {}
    for stem in (
        "courses",
        "assessments",
        "vle",
        "studentInfo",
        "studentRegistration",
        "studentAssessment",
    ):
        found[stem] = _one_file(folder, [f"{stem}.csv", f"{stem}.csv.gz"], stem)
    found["studentVle"] = _one_file(folder, [config.click_file_pattern], "studentVle")
    pre = folder / config.pre_course_file if config.pre_course_file else None
    found["pre_course"] = pre if pre is not None and pre.is_file() else None
    return found


def _one_file(folder: Path, patterns: list[str], what: str) -> Path:
    matches = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    if not matches:
        raise OuladError(
            f"OULAD file missing: {what} (looked for {', '.join(patterns)} in {folder})"
        )
    if len(matches) > 1:
        raise OuladError(
            f"more than one OULAD {what} file in {folder}: {', '.join(p.name for p in matches)}"
        )
    return matches[0]


def read_csv_checked(path: Path, name: str, extra_columns: bool = False) -> pd.DataFrame:
    """Read an OULAD CSV (plain or gzip) with typed columns; missing columns raise OuladError.

    With `extra_columns`, columns beyond the typed ones are kept as strings (studentInfo's
    attributes), except the leaking ones, which are never read.
    """
    wanted = FILE_COLUMNS[name]
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (OSError, ValueError, EOFError) as exc:
        raise OuladError(f"cannot read OULAD file {path}: {exc}") from exc
    missing = [c for c in wanted if c not in header]
    if missing:
        raise OuladError(f"OULAD file {path} lacks column(s): {', '.join(missing)}")
    if extra_columns:
        columns = [c for c in header if c not in LEAKING_COLUMNS]
        dtypes = {c: wanted.get(c, NUMERIC_INFO_COLUMNS.get(c, "str")) for c in columns}
    else:
        columns, dtypes = list(wanted), wanted
    try:
        return pd.read_csv(path, usecols=columns, dtype=dtypes)
    except (OSError, ValueError, EOFError) as exc:
        raise OuladError(f"cannot read OULAD file {path}: {exc}") from exc


def read_oulad(folder: Path, config: OuladConfig) -> OuladRaw:
    """Read every OULAD file the mapping needs from `folder`."""
    files = find_oulad_files(folder, config)
    pre_path = files["pre_course"]
    return OuladRaw(
        courses=read_csv_checked(files["courses"], "courses"),
        assessments=read_csv_checked(files["assessments"], "assessments"),
        vle=read_csv_checked(files["vle"], "vle"),
        student_info=read_csv_checked(files["studentInfo"], "studentInfo", extra_columns=True),
        registrations=read_csv_checked(files["studentRegistration"], "studentRegistration"),
        submissions=read_csv_checked(files["studentAssessment"], "studentAssessment"),
        clicks=read_csv_checked(files["studentVle"], "studentVle"),
        pre_course=read_csv_checked(pre_path, "pre_course") if pre_path is not None else None,
    )


# ---------------------------------------------------------------------------------------- mapping


def course_ids(frame: pd.DataFrame) -> pd.Series:
    """`AAA` + `2013J` -> `AAA-2013J`."""
    return frame["code_module"].astype(str) + "-" + frame["code_presentation"].astype(str)


def presentation_start(code_presentation: str, config: OuladConfig) -> pd.Timestamp:
    """Start of a presentation: `2013B` -> 1 Feb 2013, `2013J` -> 1 Oct 2013 (UTC midnight)."""
    code = str(code_presentation)
    months = {"B": config.b_start_month, "J": config.j_start_month}
    if len(code) != 5 or not code[:4].isdigit() or code[4] not in months:
        raise OuladError(
            f"unknown presentation code {code!r}: expected a year and B or J, like 2013J"
        )
    return pd.Timestamp(year=int(code[:4]), month=months[code[4]], day=config.start_day, tz="UTC")


def day_to_timestamp(start: pd.Series, day: pd.Series, config: OuladConfig) -> pd.Series:
    """OULAD day d (relative to `start`) -> start + d days + event_hour_utc; null stays null."""
    days = pd.to_timedelta(pd.Series(day, dtype="Int64"), unit="D")
    hour = pd.Timedelta(hours=config.event_hour_utc)
    return (pd.Series(start).astype(TS_DTYPE) + days.to_numpy() + hour).astype(TS_DTYPE)


def map_courses(courses: pd.DataFrame, config: OuladConfig) -> pd.DataFrame:
    """Presentations -> course runs: id `AAA-2013J`, start by B/J, end = start + length days."""
    starts = courses["code_presentation"].map(lambda c: presentation_start(c, config))
    start_at = pd.Series(starts, index=courses.index).astype(TS_DTYPE)
    length = pd.to_timedelta(courses["module_presentation_length"], unit="D")
    out = pd.DataFrame(
        {
            "course_id": course_ids(courses).astype("str"),
            "start_at": start_at,
            "end_at": (start_at + length).astype(TS_DTYPE),
            "title": (courses["code_module"] + " " + courses["code_presentation"]).astype("str"),
        }
    )
    duplicated = out["course_id"].duplicated()
    if duplicated.any():
        raise OuladError(
            "courses.csv lists a presentation more than once: "
            + ", ".join(out.loc[duplicated, "course_id"].head(5))
        )
    return out.sort_values("course_id", ignore_index=True)


def assign_curators(course_id: pd.Series, id_student: pd.Series, group_size: int) -> pd.Series:
    """Deterministic curator groups: per course, students sorted by id, cut into near-equal groups.

    A course of n students gets ceil(n / group_size) groups whose sizes differ by at most one;
    ids look like `AAA-2013J-c01` (numbered from 1, zero-padded to at least two digits).
    """
    frame = pd.DataFrame({"course_id": course_id, "id_student": id_student})
    order = frame.sort_values(["course_id", "id_student"], kind="stable")
    position = order.groupby("course_id", sort=False).cumcount().to_numpy()
    size = order.groupby("course_id", sort=False)["id_student"].transform("size").to_numpy()
    n_groups = np.ceil(size / group_size).astype(np.int64)
    group = position * n_groups // size + 1  # near-equal split of positions 0..n-1
    width = max(2, len(str(int(n_groups.max())))) if len(order) else 2
    labels = [f"{c}-c{g:0{width}d}" for c, g in zip(order["course_id"], group, strict=True)]
    return pd.Series(labels, index=order.index, dtype="str").reindex(frame.index)


def map_enrollments(
    raw: OuladRaw, courses: pd.DataFrame, config: OuladConfig
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """Registrations (+ studentInfo attributes, + pre-course clicks) -> enrollments."""
    dropped: dict[str, int] = {}
    notes: dict[str, int] = {}
    reg = raw.registrations.copy()
    reg["course_id"] = course_ids(reg)
    known = reg["course_id"].isin(courses["course_id"])
    if (~known).any():
        dropped["registrations of a presentation missing from courses.csv"] = int((~known).sum())
        reg = reg[known]
    duplicated = reg.duplicated(ENROLMENT_KEYS)
    if duplicated.any():
        dropped["duplicate registrations (first kept)"] = int(duplicated.sum())
        reg = reg[~duplicated]
    info = raw.student_info.drop_duplicates(ENROLMENT_KEYS)
    attr_columns = [c for c in info.columns if c not in ENROLMENT_KEYS]
    reg = reg.merge(info, on=ENROLMENT_KEYS, how="left", validate="one_to_one", indicator=True)
    no_info = int((reg.pop("_merge") == "left_only").sum())
    if no_info:
        notes["registrations without a studentInfo row (attributes null)"] = no_info
    start = reg["course_id"].map(courses.set_index("course_id")["start_at"])

    # No registration date: enrolled on day 0, or on the unregistration day when that is earlier.
    no_date = reg["date_registration"].isna()
    notes["registrations without date_registration (enrolled_at = day 0 or unregistration)"] = int(
        no_date.sum()
    )
    fallback = reg["date_unregistration"].clip(upper=0).fillna(0).astype("Int64")
    reg_day = reg["date_registration"].where(~no_date, fallback)

    out = pd.DataFrame(
        {
            "student_id": reg["id_student"].astype("str"),
            "course_id": reg["course_id"].astype("str"),
            "enrolled_at": day_to_timestamp(start, reg_day, config),
            "unenrolled_at": day_to_timestamp(start, reg["date_unregistration"], config),
            "curator_id": assign_curators(
                reg["course_id"], reg["id_student"], config.curator_group_size
            ),
            "mentor_id": pd.Series(pd.NA, index=reg.index, dtype="str"),  # OULAD has no mentors
        }
    )
    for column in attr_columns:
        out[f"{ATTR_PREFIX}{column}"] = reg[column]

    if raw.pre_course is not None:
        pre = raw.pre_course.drop_duplicates(ENROLMENT_KEYS)
        joined = reg[ENROLMENT_KEYS].merge(pre, on=ENROLMENT_KEYS, how="left", validate="1:1")
        missing = joined["pre_course_clicks"].isna()
        unmatched = len(pre) - int((~missing).sum())
        if unmatched:
            dropped["pre-course rows matching no registration (ignored)"] = unmatched
        # The file lists only enrolments with at least one pre-course click: absent means zero.
        notes["enrollments absent from the pre-course file (attr_pre_course_clicks = 0)"] = int(
            missing.sum()
        )
        out[PRE_COURSE_ATTR] = joined["pre_course_clicks"].fillna(0).astype("int64")

    return out.sort_values(["course_id", "student_id"], ignore_index=True), dropped, notes


def map_assignments(
    assessments: pd.DataFrame, courses: pd.DataFrame, config: OuladConfig
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """Assessments -> assignments; an undated exam is due on the presentation's last day."""
    dropped: dict[str, int] = {}
    frame = assessments.copy()
    frame["course_id"] = course_ids(frame)
    known = frame["course_id"].isin(courses["course_id"])
    if (~known).any():
        dropped["assessments of a presentation missing from courses.csv"] = int((~known).sum())
        frame = frame[known]
    indexed = courses.set_index("course_id")
    start = frame["course_id"].map(indexed["start_at"])
    length_days = (frame["course_id"].map(indexed["end_at"]) - start).dt.days.astype("Int64")
    undated = frame["date"].isna()
    due_day = frame["date"].where(~undated, length_days)
    notes = {"assessments without a date (due on the last day, day = length)": int(undated.sum())}
    out = pd.DataFrame(
        {
            "assignment_id": frame["id_assessment"].astype("str"),
            "course_id": frame["course_id"].astype("str"),
            "due_at": day_to_timestamp(start, due_day, config),
            "weight": frame["weight"].astype("float64"),
        }
    )
    return (
        out.sort_values(["course_id", "due_at", "assignment_id"], ignore_index=True),
        dropped,
        notes,
    )


def _registered(frame: pd.DataFrame, registrations: pd.DataFrame) -> pd.Series:
    """True where (code_module, code_presentation, id_student) has a registration."""
    keys = pd.MultiIndex.from_frame(registrations[ENROLMENT_KEYS])
    return pd.Series(pd.MultiIndex.from_frame(frame[ENROLMENT_KEYS]).isin(keys), index=frame.index)


def map_submissions(
    raw: OuladRaw, courses: pd.DataFrame, config: OuladConfig
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """studentAssessment -> `assignment_submit` events: ts from date_submitted, value = score."""
    dropped: dict[str, int] = {}
    notes: dict[str, int] = {}
    sub = raw.submissions.merge(
        raw.assessments[["id_assessment", *PRESENTATION_KEYS]],
        on="id_assessment",
        how="left",
        validate="many_to_one",
    )
    unknown = sub["code_module"].isna()
    if unknown.any():
        dropped["submissions of an assessment missing from assessments.csv"] = int(unknown.sum())
        sub = sub[~unknown]
    sub = sub.assign(course_id=course_ids(sub))
    not_registered = ~_registered(sub, raw.registrations)
    if not_registered.any():
        dropped["submissions of a student not registered in that presentation"] = int(
            not_registered.sum()
        )
        sub = sub[~not_registered]
    undated = sub["date_submitted"].isna()
    if undated.any():
        dropped["submissions without date_submitted"] = int(undated.sum())
        sub = sub[~undated]
    banked = sub["is_banked"] == 1
    if config.keep_banked:
        notes["banked results kept as submissions (dated day -1)"] = int(banked.sum())
    elif banked.any():
        dropped["banked results (oulad.keep_banked = false)"] = int(banked.sum())
        sub = sub[~banked]
    notes["submissions without a score (value null)"] = int(sub["score"].isna().sum())

    start = sub["course_id"].map(courses.set_index("course_id")["start_at"])
    events = pd.DataFrame(
        {
            "student_id": sub["id_student"].astype("str"),
            "course_id": sub["course_id"].astype("str"),
            "ts": day_to_timestamp(start, sub["date_submitted"], config),
            "event_type": pd.Series(
                EventType.ASSIGNMENT_SUBMIT.value, index=sub.index, dtype="str"
            ),
            "item_id": sub["id_assessment"].astype("str"),
            "value": sub["score"].astype("float64"),
        }
    )
    return events.reset_index(drop=True), dropped, notes


def check_activity_map(activity_map: dict[str, str], used_types: set[str]) -> None:
    """Every clicked activity type must map to a contract event type; raise naming the gaps."""
    bad = {k: v for k, v in activity_map.items() if v not in EVENT_TYPES}
    if bad:
        raise OuladError(
            "oulad.activity_map maps to unknown event types: "
            + ", ".join(f"{k} -> {v}" for k, v in sorted(bad.items()))
            + f" (allowed: {', '.join(EVENT_TYPES)})"
        )
    unmapped = sorted(t for t in used_types if t not in activity_map)
    if unmapped:
        raise OuladError(
            "oulad.activity_map has no entry for VLE activity type(s): " + ", ".join(unmapped)
        )


def merge_same_day_clicks(
    clicks: pd.DataFrame, course_id: pd.Series
) -> tuple[pd.DataFrame, pd.Series]:
    """Sum the studentVle rows of one student, site and day into one row.

    OULAD writes several rows for the same student, site and day (separate sessions); those with
    equal click counts would be exact duplicate events, which validation flags and feature
    building drops, so one site-day becomes one event carrying all its clicks.
    """
    keys = pd.DataFrame(
        {
            "course": pd.factorize(course_id)[0],
            "id_student": clicks["id_student"].to_numpy(),
            "id_site": clicks["id_site"].to_numpy(),
            "date": clicks["date"].astype("int64").to_numpy(),
        }
    )
    group = keys.groupby(list(keys.columns), sort=False).ngroup().to_numpy()
    first = ~pd.Series(group).duplicated().to_numpy()
    summed = clicks["sum_click"].groupby(group).sum(min_count=1)
    merged = clicks.loc[first].copy()
    merged["sum_click"] = summed.loc[group[first]].to_numpy()
    return merged, course_id.loc[first]


def map_clicks(
    raw: OuladRaw, courses: pd.DataFrame, config: OuladConfig
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """studentVle -> click events typed by vle.activity_type through oulad.activity_map.

    One event per student, site and day (rows of the same site-day are summed) when
    `merge_same_day_clicks`, else one event per studentVle row.

    value = sum_click, except for event types whose value is a score in the contract (a click
    count is not a score), where it stays null. Presentations listed in
    `partial_click_presentations` are dropped whole.
    """
    dropped: dict[str, int] = {}
    clicks = raw.clicks
    course_id = course_ids(clicks)
    partial = course_id.isin(config.partial_click_presentations)
    for cid, n in course_id[partial].value_counts().sort_index().items():
        dropped[f"clicks of partial presentation {cid} (oulad.partial_click_presentations)"] = int(
            n
        )
    keep = ~partial
    unknown_course = ~course_id.isin(courses["course_id"])
    if (keep & unknown_course).any():
        dropped["clicks of a presentation missing from courses.csv"] = int(
            (keep & unknown_course).sum()
        )
        keep &= ~unknown_course
    sites = raw.vle.drop_duplicates("id_site").set_index("id_site")["activity_type"]
    activity = clicks["id_site"].map(sites)
    if (keep & activity.isna()).any():
        dropped["clicks on a site missing from vle.csv"] = int((keep & activity.isna()).sum())
        keep &= activity.notna()
    not_registered = ~_registered(clicks, raw.registrations)
    if (keep & not_registered).any():
        dropped["clicks of a student not registered in that presentation"] = int(
            (keep & not_registered).sum()
        )
        keep &= ~not_registered
    if (keep & clicks["date"].isna()).any():
        dropped["clicks without a date"] = int((keep & clicks["date"].isna()).sum())
        keep &= clicks["date"].notna()

    check_activity_map(config.activity_map, set(activity[keep].unique()))
    clicks, course_id = clicks[keep], course_id[keep]
    notes: dict[str, int] = {}
    if config.merge_same_day_clicks:
        n_rows = len(clicks)
        clicks, course_id = merge_same_day_clicks(clicks, course_id)
        notes["click rows merged into one event per student, site and day (clicks summed)"] = (
            n_rows - len(clicks)
        )
    activity = clicks["id_site"].map(sites)
    event_type = activity.map(config.activity_map).astype("str")
    start = course_id.map(courses.set_index("course_id")["start_at"])
    value = clicks["sum_click"].astype("float64").where(~event_type.isin(list(VALUE_RANGES)))
    events = pd.DataFrame(
        {
            "student_id": clicks["id_student"].astype("str"),
            "course_id": course_id.astype("str"),
            "ts": day_to_timestamp(start, clicks["date"], config),
            "event_type": event_type,
            "item_id": clicks["id_site"].astype("str"),
            "value": value,
        }
    )
    return events, dropped, notes


def oulad_to_contract(raw: OuladRaw, config: OuladConfig) -> OuladContract:
    """Map the OULAD tables into the four contract tables, accounting for every dropped row."""
    courses = map_courses(raw.courses, config)
    dropped: dict[str, int] = {}
    notes: dict[str, int] = {}
    enrollments, d, n = map_enrollments(raw, courses, config)
    dropped |= d
    notes |= n
    assignments, d, n = map_assignments(raw.assessments, courses, config)
    dropped |= d
    notes |= n
    submissions, d, n = map_submissions(raw, courses, config)
    dropped |= d
    notes |= n
    clicks, d, n = map_clicks(raw, courses, config)
    dropped |= d
    notes |= n
    events = pd.concat([submissions, clicks], ignore_index=True)
    events = events.sort_values(["course_id", "student_id", "ts"], kind="stable", ignore_index=True)
    for column in ("student_id", "course_id", "event_type", "item_id"):
        events[column] = events[column].astype("str")
    events["ts"] = events["ts"].astype(TS_DTYPE)
    notes |= enrolment_window_notes(events, enrollments, courses)
    return OuladContract(
        courses=courses,
        enrollments=enrollments,
        assignments=assignments,
        events=events,
        dropped=dropped,
        notes=notes,
        click_courses=tuple(sorted(clicks["course_id"].unique())),
    )


def enrolment_window_notes(
    events: pd.DataFrame, enrollments: pd.DataFrame, courses: pd.DataFrame
) -> dict[str, int]:
    """Counts of kept rows that fall outside their enrolment or course (OULAD keeps them too)."""
    window = events[["student_id", "course_id", "ts", "event_type"]].merge(
        enrollments[["student_id", "course_id", "enrolled_at", "unenrolled_at"]],
        on=["student_id", "course_id"],
        how="left",
        validate="many_to_one",
    )
    submit = window["event_type"] == EventType.ASSIGNMENT_SUBMIT
    before = window["ts"] < window["enrolled_at"]
    after = window["ts"] > window["unenrolled_at"]
    end = enrollments["course_id"].map(courses.set_index("course_id")["end_at"])
    return {
        "submissions dated before the enrolment (kept)": int((submit & before).sum()),
        "submissions dated after the unenrolment (kept)": int((submit & after).sum()),
        "click events dated before the enrolment (kept)": int((~submit & before).sum()),
        "click events dated after the unenrolment (kept)": int((~submit & after).sum()),
        "unenrolments dated after the course end (kept)": int(
            (enrollments["unenrolled_at"] > end).sum()
        ),
    }


def withdrawal_rate(enrollments: pd.DataFrame) -> float:
    """Share of enrollments with an unenrolment date (any time, including before the start)."""
    if enrollments.empty:
        return math.nan
    return float(enrollments["unenrolled_at"].notna().mean())
