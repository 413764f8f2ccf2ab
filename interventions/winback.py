"""Which students belong in the win-back section of a curator's list instead of early warning.

Early-warning slots are for students who can still be reached before they leave. A student with no
activity at all for the whole horizon (`scoring.winback_inactive_days`, by default the label
horizon) has, as far as the data can tell, already gone; so has one who was active only in their
first weeks (`winback_first_weeks_days`) and silent for as long since, or never active at all.
They get a separate, capped section of each list (`scoring.winback_capacity`) with a win-back
message, and never take an early-warning slot. Within it, the most recently lost come first: the
shorter the silence, the better the chance of a reply.

"Activity" is whatever the source records (`days_since_last_activity`): on a source that only
records submissions (most OULAD presentations), silence means no submission.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from configs.schema import Config
from interventions.routing import RoutingError

EARLY_WARNING = "early_warning"
WIN_BACK = "win_back"
SECTIONS = (EARLY_WARNING, WIN_BACK)  # list order
REQUIRED = ("days_since_last_activity", "days_since_enrolment")


def winback_inactive_days(config: Config) -> int:
    """Silence (days) that puts a student in win-back: the configured value or the horizon."""
    days = config.scoring.winback_inactive_days
    return config.snapshots.horizon_days if days is None else days


def check_winback_features(columns: Sequence[str]) -> None:
    missing = [c for c in REQUIRED if c not in set(columns)]
    if missing:
        raise RoutingError(
            "the win-back section needs features the feature frame does not have: "
            + ", ".join(missing)
        )


def days_in_course(frame: pd.DataFrame) -> np.ndarray:
    """Days the student could have been active: since enrolment, or since the course start when
    they enrolled before it (registrations months ahead are common)."""
    enrolled = frame["days_since_enrolment"].to_numpy(dtype="float64", na_value=np.nan)
    if "days_since_start" in frame.columns:
        started = frame["days_since_start"].to_numpy(dtype="float64", na_value=np.nan)
        return np.fmin(enrolled, started)
    return enrolled


def assign_sections(frame: pd.DataFrame, inactive_days: int, first_weeks_days: int) -> pd.DataFrame:
    """Per row: `section` (early_warning | win_back), `winback_reason` (silent | faded_early |
    never_active, missing in early warning) and `section_priority` (the sort key within the
    section, smaller first: days of silence in win-back, 0 in early warning)."""
    check_winback_features(list(frame.columns))
    silence = frame["days_since_last_activity"].to_numpy(dtype="float64", na_value=np.nan)
    tenure = days_in_course(frame)
    never = np.isnan(silence)
    with np.errstate(invalid="ignore"):
        silent = ~never & (silence >= inactive_days)
        never_active = never & (tenure >= first_weeks_days)
        last_active_day = tenure - silence  # day of the course run it was last active on
        faded = (
            ~never & ~silent & (silence >= first_weeks_days) & (last_active_day <= first_weeks_days)
        )
    reason = np.where(
        silent,
        "silent",
        np.where(faded, "faded_early", np.where(never_active, "never_active", None)),
    )
    win_back = silent | faded | never_active
    # Never active: as long in silence as in the course.
    priority = np.where(win_back, np.where(never, tenure, silence), 0.0)
    return pd.DataFrame(
        {
            "section": pd.Series(
                np.where(win_back, WIN_BACK, EARLY_WARNING), index=frame.index, dtype="str"
            ),
            "winback_reason": pd.Series(reason, index=frame.index, dtype="str"),
            "section_priority": pd.Series(np.nan_to_num(priority, nan=np.inf), index=frame.index),
        },
        index=frame.index,
    )
