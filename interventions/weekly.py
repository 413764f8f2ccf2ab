"""The week's ranking and its words: who is listed, in which section and order, and why.

Plain functions over the week's feature frame and risk (no IO), called by the scorer and by the
backtest replaying weeks. `rank_week`: the win-back section (`interventions.winback`), rule
triggers that fire at onset and carry their state from the previous scoring
(`interventions.triggers`), the cooldown after a recent contact and the ranking under capacity
per curator and section. The caller reads the previous week's ranking and the contacts, and
stores the result (its `state_*` columns are next week's input). `explain_in_words` turns the
model's contributions for the explained rows into reasons, a support tier, a first action and a
suggested message.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from configs.schema import Config
from interventions.messages import choose_messages
from interventions.ranking import last_contact, rank_for_curators, risk_change
from interventions.reasons import (
    combine_reasons,
    entry_fields,
    group_features,
    pick_reasons,
    render_reasons,
    typical_values,
)
from interventions.routing import route
from interventions.texts import Texts, render_entry
from interventions.triggers import fire_onset_triggers
from interventions.winback import WIN_BACK, assign_sections, winback_inactive_days

# The columns that identify an enrollment in the week's tables.
ENROLLMENT_KEYS = KEYS = ["student_id", "course_id"]


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


def explain_in_words(
    frame: pd.DataFrame,
    ranking: pd.DataFrame,
    contributions: pd.DataFrame,
    titles: pd.Series,
    as_of: datetime,
    config: Config,
    texts: Texts,
) -> pd.DataFrame:
    """Reasons, tier, action and message for the explained rows (`contributions`' index); the
    full ranking back, sorted by curator and list order."""
    sc = config.scoring
    k = sc.reasons_per_student
    rows = contributions.index
    sub = frame.loc[rows]
    groups = group_features(list(contributions.columns), sc.reason_groups, sc.skip_reason_prefixes)
    picks = pick_reasons(contributions, groups, k, sc.min_reason_contribution)
    shown = pd.unique(
        np.concatenate([picks[f"reason_{i}_feature"].dropna().to_numpy() for i in range(1, k + 1)])
    )
    trigger_features = [t.feature for t in sc.triggers]
    typical = typical_values(frame, [*map(str, shown), *trigger_features])
    model_texts = render_reasons(picks, sub, texts, k, typical)

    trigger_reasons = []
    for trigger in sc.triggers:
        fired = ranking.loc[rows, f"trigger_{trigger.name}"].to_numpy(dtype=bool)
        text = np.full(len(rows), None, dtype=object)
        where = np.flatnonzero(fired)
        if len(where):
            entry = texts.triggers[trigger.name]
            _, window = texts.reason_entry(trigger.feature)
            values = sub[trigger.feature].to_numpy(dtype="float64", na_value=np.nan)[where]
            fields = entry_fields(entry, trigger.feature, window, sub, where, typical)
            text[where] = render_entry(entry, values, fields, texts)
        trigger_reasons.append((pd.Series(text, index=rows, dtype="str"), trigger.reason_group))
    combined = combine_reasons(pd.concat([picks, model_texts], axis=1), trigger_reasons, k)

    reason_matrix = np.column_stack(
        [picks[f"reason_{i}_group"].to_numpy(dtype=object, na_value=None) for i in range(1, k + 1)]
    )
    fired_sub = ranking.loc[rows, [f"trigger_{t.name}" for t in sc.triggers]]
    routing = route(sub, fired_sub, reason_matrix, sc, section=ranking.loc[rows, "section"])
    course_ids = ranking.loc[rows, "course_id"]
    messages = choose_messages(
        ranking.loc[rows, "student_id"],
        course_ids,
        as_of.date().isoformat(),
        routing["action"],
        combined["lead_group"],
        pd.Series(course_ids.map(titles).fillna(course_ids).to_numpy(), index=rows),
        texts,
    )
    words = pd.concat([picks.drop(columns="reasons_count"), model_texts], axis=1)
    ordered = [c for i in range(1, k + 1) for c in _slot_columns(i)]
    words = words[["reasons_fallback", *ordered]]
    words = pd.concat([words, combined, routing, messages], axis=1)
    full = ranking.join(words)
    full["reasons_fallback"] = full["reasons_fallback"].astype("boolean")
    full["reasons_count"] = full["reasons_count"].astype("Int64")
    return full.sort_values(["curator_id", "curator_order"], kind="stable").reset_index(drop=True)


def _slot_columns(i: int) -> list[str]:
    return [
        f"reason_{i}_group",
        f"reason_{i}_feature",
        f"reason_{i}_contribution",
        f"reason_{i}_text",
    ]


def summarise_week(ranking: pd.DataFrame) -> dict[str, int | float]:
    """The week's counts: students, curators, listed, triggers, held back, mean risk."""
    hold = ranking["hold_back"]
    return {
        "students": len(ranking),
        "curators": int(ranking["curator_id"].nunique()),
        "listed": int(ranking["listed"].sum()),
        "triggered": int(ranking["triggered"].sum()),
        "triggered_listed": int((ranking["triggered"] & ranking["listed"]).sum()),
        "held_back_cooldown": int((hold == "cooldown").sum()),
        "held_back_capacity": int((hold == "capacity").sum()),
        "mean_risk": float(ranking["risk"].mean()),
    }
