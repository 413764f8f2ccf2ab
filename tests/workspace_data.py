"""Tiny published weeks for the workspace tests: a ranking shaped like the scorer's."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandas as pd

WEEK = datetime(2026, 5, 11, tzinfo=UTC)
NEXT_WEEK = datetime(2026, 5, 18, tzinfo=UTC)


def tiny_ranking(
    students: dict[str, list[str]] | None = None, course: str = "PY101-2026A", seed: float = 0.0
) -> pd.DataFrame:
    """Per curator, its students (listed in that order) plus one unlisted student each."""
    students = students or {"cur-a": ["s1", "s2", "s3"], "cur-b": ["s4", "s5"]}
    rows = []
    for curator, ids in students.items():
        for rank, sid in enumerate(ids, start=1):
            rows.append(
                {
                    "student_id": sid,
                    "course_id": course,
                    "curator_id": curator,
                    "listed": True,
                    "rank": rank,
                    "risk": round(0.9 - 0.1 * rank + seed, 3),
                    "change": 0.05 if rank == 1 else float("nan"),
                    "reasons": "no submissions for 20 days; last active 9 days ago",
                    "lead_group": "submissions" if rank % 2 else "inactivity",
                    "tier": "curator",
                    "action": "write_first",
                    "message": "Hi {first_name}! How is it going?",
                    "triggered": rank == 1,
                    "triggers": "stopped_submitting" if rank == 1 else "",
                }
            )
        rows.append(
            {
                "student_id": f"{curator}-quiet",
                "course_id": course,
                "curator_id": curator,
                "listed": False,
                "rank": pd.NA,
                "risk": 0.01,
                "change": 0.0,
                "reasons": "",
                "lead_group": "",
                "tier": "curator",
                "action": "write_first",
                "message": "",
                "triggered": False,
                "triggers": "",
            }
        )
    frame = pd.DataFrame(rows)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "page has no CSRF token"
    return found.group(1)
