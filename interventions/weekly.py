"""The week's ranking skeleton in one pure function: sections, onset triggers, cooldown, capacity.

`rank_week` is what the scorer's rank step (and a backtest replaying weeks) calls: the win-back
section (`interventions.winback`), rule triggers that fire at onset and carry their state from the
previous scoring (`interventions.triggers`), and the ranking under capacity per curator and
section (`interventions.ranking.rank_for_curators`). No IO: the caller reads the previous week's
ranking and the contacts, and stores the result (its `state_*` columns are next week's input).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from configs.schema import Config
from interventions.ranking import last_contact, rank_for_curators, risk_change
from interventions.triggers import fire_onset_triggers
from interventions.winback import WIN_BACK, assign_sections, winback_inactive_days

KEYS = ["student_id", "course_id"]


def rank_week(
    frame: pd.DataFrame,
    risk: np.ndarray,
    as_of: datetime,
    config: Config,
    previous_risk: pd.DataFrame | None = None,
    previous_state: pd.DataFrame | None = None,
    contacts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every active enrollment with: keys, curator/mentor, as_of, risk, previous_risk, change,
    section, winback_reason, section_priority, trigger_<name> (fired this week), triggered,
    triggers, state_<name>_* (to persist), last_contact_at, in_cooldown, cooldown_lifted,
    eligible, listed, rank (within the section), hold_back, curator_order, explained.

    `previous_risk`: student_id, course_id, risk of the previous scoring (None: first scoring).
    `previous_state`: the trigger state of the previous scoring (`triggers.state_from_ranking`).
    `contacts`: student_id, course_id, ts of recent curator contacts (None: none recorded).
    Index = frame's.
    """
    sc = config.scoring
    keys = frame[KEYS].astype("str")
    prev_risk, change = risk_change(keys, risk, previous_risk)
    sections = assign_sections(frame, winback_inactive_days(config), sc.winback_first_weeks_days)
    win_back = sections["section"].to_numpy(dtype=object) == WIN_BACK
    fired = fire_onset_triggers(frame, as_of, previous_state, sc, suppress=win_back)
    table = pd.DataFrame(
        {
            "student_id": keys["student_id"],
            "course_id": keys["course_id"],
            "curator_id": frame["curator_id"].astype("str"),
            "mentor_id": frame["mentor_id"].astype("str")
            if "mentor_id" in frame.columns
            else pd.Series(None, index=frame.index, dtype="str"),
            "as_of": frame["as_of"],
            "risk": np.asarray(risk, dtype="float64"),
            "previous_risk": prev_risk,
            "change": change,
        },
        index=frame.index,
    )
    table = pd.concat([table, sections, fired], axis=1)
    table["last_contact_at"] = pd.to_datetime(last_contact(keys, contacts), utc=True)
    table = pd.concat([table, rank_for_curators(table, as_of, sc)], axis=1)
    table["explained"] = True if sc.explain == "all" else table["listed"].to_numpy(dtype=bool)
    return table
