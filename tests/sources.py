"""Tiny in-memory sources for tests: a hand-written school and a random one for property tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import EVENT_TYPES


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


def write_source(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def random_school(seed: int, n_students: int = 8, n_events: int = 160) -> dict[str, pd.DataFrame]:
    """A small random school: two course runs, assignments, every event type, some unenrolments."""
    rng = np.random.default_rng(seed)
    starts = [ts("2025-01-06"), ts("2025-01-06") + pd.Timedelta(days=int(rng.integers(1, 30)))]
    courses = pd.DataFrame(
        {
            "course_id": ["c1", "c2"],
            "start_at": starts,
            "end_at": [s + pd.Timedelta(weeks=int(rng.integers(6, 12))) for s in starts],
        }
    )
    rows = []
    for i in range(n_students):
        course = int(rng.integers(0, 2))
        start = courses.start_at[course]
        enrolled = start + pd.Timedelta(
            days=int(rng.integers(-10, 15)), hours=int(rng.integers(24))
        )
        unenrolled = (
            enrolled + pd.Timedelta(days=int(rng.integers(1, 60)), hours=int(rng.integers(24)))
            if rng.random() < 0.4
            else pd.NaT
        )
        rows.append(
            {
                "student_id": f"s{i}",
                "course_id": courses.course_id[course],
                "enrolled_at": enrolled,
                "unenrolled_at": unenrolled,
                "curator_id": f"k{i % 2}",
                "attr_band": ["a", "b", "c"][i % 3],
            }
        )
    enrollments = pd.DataFrame(rows)
    enrollments["unenrolled_at"] = pd.to_datetime(enrollments["unenrolled_at"], utc=True)
    assignments = pd.DataFrame(
        {
            "assignment_id": [f"a{j}" for j in range(6)],
            "course_id": ["c1", "c1", "c1", "c2", "c2", "c2"],
            "due_at": [
                courses.start_at[j // 3] + pd.Timedelta(days=int(rng.integers(3, 60)), hours=23)
                for j in range(6)
            ],
        }
    )
    pick = rng.integers(0, n_students, n_events)
    chosen = enrollments.iloc[pick].reset_index(drop=True)
    offsets = pd.to_timedelta(rng.integers(-5 * 86400, 80 * 86400, n_events), unit="s")
    starts_of = chosen.course_id.map(dict(zip(courses.course_id, courses.start_at, strict=True)))
    types = rng.choice(np.array(EVENT_TYPES), n_events)
    item = np.where(
        types == "assignment_submit",
        np.where(chosen.course_id == "c1", "a", "a") + rng.integers(0, 3, n_events).astype(str),
        None,
    )
    item = np.where(
        (types == "assignment_submit") & (chosen.course_id == "c2"),
        "a" + (3 + rng.integers(0, 3, n_events)).astype(str),
        item,
    )
    value = np.where(
        np.isin(types, ["assignment_submit", "quiz_attempt"]),
        rng.integers(0, 101, n_events).astype(float),
        np.where(types == "feedback", rng.integers(1, 6, n_events).astype(float), np.nan),
    )
    events = pd.DataFrame(
        {
            "student_id": chosen.student_id,
            "course_id": chosen.course_id,
            "ts": (starts_of + offsets).dt.floor("min"),
            "event_type": types,
            "item_id": item,
            "value": value,
        }
    )
    return {
        "courses": courses,
        "enrollments": enrollments,
        "assignments": assignments,
        "events": events,
    }


def truncate_at(tables: dict[str, pd.DataFrame], cut: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Remove every event and unenrolment at or after `cut` (what was unknowable at `cut`)."""
    out = dict(tables)
    out["events"] = tables["events"][tables["events"].ts < cut].reset_index(drop=True)
    enr = tables["enrollments"].copy()
    enr.loc[enr.unenrolled_at >= cut, "unenrolled_at"] = pd.NaT
    out["enrollments"] = enr
    return out
