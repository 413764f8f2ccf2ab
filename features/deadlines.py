"""Where a student stands relative to the course's deadlines at snapshot time t (numpy only).

The counts in `features.build` (due, missed, late) say how much work went missing; these say
*when*: the next deadline and its weight, whether the latest one was missed, how long ago the last
miss was, and the streaks of submitted / missed assignments counted back from the latest one.

Point in time: a deadline has passed at t when it is due before t (its bin < k, as every event
rule in the builder), and it is *missed* at t when no submission of it came before t (a late
submission turns a miss into a submission from the snapshot after it on). The schedule itself
(due dates, weights) is known in advance, so the next deadline may lie after t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_SECONDS = 86_400
DEADLINE_FEATURES = (
    "days_to_next_deadline",
    "next_deadline_weight",
    "latest_deadline_missed",
    "days_since_missed_deadline",
    "submission_streak",
    "missed_streak",
)


@dataclass(frozen=True)
class DueList:
    """Every (enrollment, assignment) deadline, sorted by (eid, due time, assignment id).

    `submit_bin` is the bin of the first submission (NaN: none); `due_bin` the bin the
    deadline falls in (clamped into the enrollment's grid, which keeps the order).
    """

    eid: np.ndarray
    due_s: np.ndarray
    due_bin: np.ndarray
    submit_bin: np.ndarray
    weight: np.ndarray

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray]) -> DueList:
        def floats(name: str) -> np.ndarray:
            return np.ma.filled(np.ma.asarray(cols[name], dtype=float), np.nan)

        return cls(
            eid=np.asarray(cols["eid"], dtype=np.int64),
            due_s=floats("due_s"),
            due_bin=floats("due_bin"),
            submit_bin=floats("submit_bin"),
            weight=floats("weight"),
        )


def deadline_features(
    due: DueList, eid: np.ndarray, k: np.ndarray, t_s: np.ndarray
) -> dict[str, np.ndarray]:
    """The `DEADLINE_FEATURES` at snapshot rows (eid, bin k, time t_s)."""
    n = len(eid)
    if n == 0 or len(due.eid) == 0:
        return _without_deadlines(n)
    k = k.astype(float)
    # Each enrollment's deadlines are one block [first, end) of the sorted list; `passed` counts
    # the block's deadlines due before t (due_bin < k), so they are first .. first + passed - 1.
    first = np.searchsorted(due.eid, eid, side="left")
    end = np.searchsorted(due.eid, eid, side="right")
    # A (eid, bin) key sorts like the list (bins ascend with due time inside a block).
    span = float(np.nanmax(np.abs(due.due_bin))) + float(np.nanmax(np.abs(k))) + 2
    key = due.eid * 2 * span + due.due_bin
    passed = np.searchsorted(key, eid * 2 * span + k, side="left") - first

    has_next = first + passed < end
    nxt = np.minimum(first + passed, max(len(due.eid) - 1, 0))
    out = {
        "days_to_next_deadline": np.where(
            has_next, (_take(due.due_s, nxt) - t_s) / DAY_SECONDS, np.nan
        ),
        "next_deadline_weight": np.where(has_next, _take(due.weight, nxt), np.nan),
    }
    latest_missed = np.full(n, np.nan)
    since_missed = np.full(n, np.nan)
    submitted_run = np.zeros(n)
    missed_run = np.zeros(n)
    submitted_open = np.ones(n, dtype=bool)  # the streak of submissions is still unbroken
    missed_open = np.ones(n, dtype=bool)
    depth_max = int(passed.max()) if n else 0
    for depth in range(depth_max):
        # The deadline `depth` places before the latest passed one, for rows that have it.
        valid = passed > depth
        idx = np.where(valid, first + passed - 1 - depth, 0)
        sub = _take(due.submit_bin, idx)
        missed = valid & ~(sub < k)  # NaN (never submitted) is a miss
        submitted = valid & (sub < k)
        if depth == 0:
            latest_missed = np.where(valid, missed.astype(float), np.nan)
        found = missed & np.isnan(since_missed)
        since_missed[found] = (t_s[found] - _take(due.due_s, idx)[found]) / DAY_SECONDS
        submitted_open &= submitted
        missed_open &= missed
        submitted_run += submitted_open
        missed_run += missed_open
    out["latest_deadline_missed"] = latest_missed
    out["days_since_missed_deadline"] = since_missed
    out["submission_streak"] = submitted_run  # 0 before the first deadline
    out["missed_streak"] = missed_run
    return out


def _without_deadlines(n: int) -> dict[str, np.ndarray]:
    """No deadline at all (or no rows): nothing to come, nothing passed, streaks 0."""
    out = {name: np.full(n, np.nan) for name in DEADLINE_FEATURES}
    out["submission_streak"] = np.zeros(n)
    out["missed_streak"] = np.zeros(n)
    return out


def _take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return np.full(len(idx), np.nan)
    return values[idx]
