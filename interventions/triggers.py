"""Rule triggers with onset semantics: a trigger fires in the week its condition starts.

A curator needs "stopped submitting" in the week it happens, not every fortnight for a student who
stopped three months ago. So a trigger of the school's playbook (`scoring.triggers`) fires for a
student when

- its condition holds now and did not hold at the student's previous scoring (onset), and it has
  never fired for them, or
- it fired before, at least `scoring.trigger_cooldown_days` ago, and the situation got worse: its
  `severity` feature grew by `worse_by` since then (one more missed deadline) and by the factor
  `worse_ratio` (2: doubled, so 1, 2, 4, 8 missed deadlines; a student who keeps missing weekly
  work is not written to every cooldown). A trigger without `severity` fires again on a new
  onset after the cooldown.

While the condition does not hold, the bar for "worse" follows the severity down (a student who
caught up and then misses again is a new case). Students in `suppress` (the win-back section) are
never fired for; their state is still tracked.

The state is one row per (student, course, trigger): whether the condition held, the severity,
when the trigger last fired and the severity then. It is carried from week to week as columns of
the ranking frame (`state_<trigger>_holds`, `_severity`, `_fired_at`, `_fired_severity`):
`state_from_ranking` reads it back from the previous week's ranking. Plain functions, no IO.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from configs.schema import ScoringConfig
from interventions.routing import evaluate

KEYS = ["student_id", "course_id"]
STATE_COLUMNS = [
    "student_id",
    "course_id",
    "trigger",
    "holds",
    "severity",
    "fired_at",
    "fired_severity",
]
STATE_FIELDS = ("holds", "severity", "fired_at", "fired_severity")
TIMESTAMP = "datetime64[us, UTC]"


def state_column(trigger: str, field: str) -> str:
    """The ranking column holding one field of a trigger's state."""
    return f"state_{trigger}_{field}"


def state_columns(config: ScoringConfig) -> list[str]:
    """Every state column of the configured triggers (what the scorer reads from last week)."""
    return [state_column(t.name, f) for t in config.triggers for f in STATE_FIELDS]


def empty_state() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "student_id": pd.Series(dtype="str"),
            "course_id": pd.Series(dtype="str"),
            "trigger": pd.Series(dtype="str"),
            "holds": pd.Series(dtype="bool"),
            "severity": pd.Series(dtype="float64"),
            "fired_at": pd.Series(dtype=TIMESTAMP),
            "fired_severity": pd.Series(dtype="float64"),
        }
    )


def state_from_ranking(ranking: pd.DataFrame | None, config: ScoringConfig) -> pd.DataFrame:
    """The long state frame (STATE_COLUMNS) from a previous week's ranking; triggers whose
    columns the ranking lacks (an older week, a new trigger) have no state."""
    if ranking is None or ranking.empty:
        return empty_state()
    parts = []
    for trigger in config.triggers:
        cols = [state_column(trigger.name, f) for f in STATE_FIELDS]
        if not set(cols) <= set(ranking.columns):
            continue
        part = ranking[KEYS].astype("str").copy()
        part["trigger"] = trigger.name
        for field, col in zip(STATE_FIELDS, cols, strict=True):
            part[field] = ranking[col].to_numpy()
        parts.append(part)
    if not parts:
        return empty_state()
    state = pd.concat(parts, ignore_index=True)
    return _typed(state)


def _typed(state: pd.DataFrame) -> pd.DataFrame:
    holds = state["holds"].astype("boolean").fillna(False).astype(bool)
    return pd.DataFrame(
        {
            "student_id": state["student_id"].astype("str"),
            "course_id": state["course_id"].astype("str"),
            "trigger": state["trigger"].astype("str"),
            "holds": holds,
            "severity": pd.to_numeric(state["severity"], errors="coerce").astype("float64"),
            "fired_at": pd.to_datetime(state["fired_at"], utc=True).astype(TIMESTAMP),
            "fired_severity": pd.to_numeric(state["fired_severity"], errors="coerce").astype(
                "float64"
            ),
        }
    )


def _previous(state: pd.DataFrame, keys: pd.DataFrame, trigger: str) -> pd.DataFrame:
    """The previous state of `trigger` aligned to `keys` (missing rows: never seen)."""
    mine = state[state["trigger"] == trigger].drop_duplicates(KEYS, keep="last")
    index = pd.MultiIndex.from_arrays([keys[k].astype("str") for k in KEYS])
    aligned = mine.set_index(KEYS).reindex(index)
    return aligned.reset_index(drop=True)


def fire_onset_triggers(
    frame: pd.DataFrame,
    as_of: datetime,
    previous: pd.DataFrame | None,
    config: ScoringConfig,
    suppress: np.ndarray | None = None,
) -> pd.DataFrame:
    """This week's firing and the new state, per row of `frame` (same index).

    `frame`: features at T with student_id, course_id and every feature the triggers read.
    `previous`: the state frame of the previous scoring (STATE_COLUMNS; `state_from_ranking`),
    None or empty when there is none. `suppress`: rows that must not fire (win-back).

    Returns the columns of `routing.fire_triggers` (`trigger_<name>` = fired this week,
    `triggered`, `triggers`) plus, per trigger, `trigger_<name>_holds`-style state columns named
    by `state_column` (holds, severity, fired_at, fired_severity): store them in the ranking.
    """
    n = len(frame)
    keys = frame[KEYS].astype("str").reset_index(drop=True)
    prev_state = empty_state() if previous is None or previous.empty else _typed(previous)
    blocked = np.zeros(n, dtype=bool) if suppress is None else np.asarray(suppress, dtype=bool)
    cooldown = config.trigger_cooldown_days
    cooldown = config.cooldown_days if cooldown is None else cooldown
    now = pd.Timestamp(as_of)
    if now.tzinfo is None:
        now = now.tz_localize("UTC")
    cooled_before = now - timedelta(days=cooldown)

    out: dict[str, object] = {}
    names = np.full(n, "", dtype=object)
    any_fired = np.zeros(n, dtype=bool)
    for trigger in config.triggers:
        holds = evaluate(trigger.when, frame)
        if trigger.severity is not None:
            severity = frame[trigger.severity].to_numpy(dtype="float64", na_value=np.nan)
        else:
            severity = np.full(n, np.nan)
        prev = _previous(prev_state, keys, trigger.name)
        prev_holds = prev["holds"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        fired_at = pd.to_datetime(prev["fired_at"], utc=True).astype(TIMESTAMP)
        fired_sev = prev["fired_severity"].to_numpy(dtype="float64", na_value=np.nan)
        ever_fired = fired_at.notna().to_numpy()
        cooled = ~ever_fired | (fired_at <= cooled_before).fillna(True).to_numpy()
        onset = holds & ~prev_holds
        if not trigger.onset:
            fires = holds.copy()
        elif trigger.severity is not None:
            with np.errstate(invalid="ignore"):
                bar = np.maximum(fired_sev + trigger.worse_by, fired_sev * trigger.worse_ratio)
                worse = severity >= bar
            fires = holds & np.where(ever_fired, cooled & worse, onset)
        else:
            fires = holds & onset & cooled
        fires &= ~blocked

        # The bar for "worse" follows the severity down while the condition does not hold.
        with np.errstate(invalid="ignore"):
            lowered = ~holds & ~np.isnan(severity) & (severity < fired_sev)
        new_fired_sev = np.where(fires, severity, np.where(lowered, severity, fired_sev))
        new_fired_at = fired_at.copy()
        new_fired_at[fires] = now
        index = frame.index
        out[f"trigger_{trigger.name}"] = pd.Series(fires, index=index)
        out[state_column(trigger.name, "holds")] = pd.Series(holds, index=index)
        out[state_column(trigger.name, "severity")] = pd.Series(severity, index=index)
        out[state_column(trigger.name, "fired_at")] = pd.Series(
            new_fired_at.to_numpy(), index=index, dtype=TIMESTAMP
        )
        out[state_column(trigger.name, "fired_severity")] = pd.Series(new_fired_sev, index=index)
        names = np.where(
            fires, np.where(any_fired, names + "," + trigger.name, trigger.name), names
        )
        any_fired |= fires
    out["triggered"] = pd.Series(any_fired, index=frame.index)
    out["triggers"] = pd.Series(np.where(any_fired, names, None), index=frame.index, dtype="str")
    fired_cols = [f"trigger_{t.name}" for t in config.triggers]
    state_cols = [c for c in out if c.startswith("state_")]
    return pd.DataFrame(out, index=frame.index)[[*fired_cols, "triggered", "triggers", *state_cols]]


def state_frame(fired: pd.DataFrame, keys: pd.DataFrame, config: ScoringConfig) -> pd.DataFrame:
    """The long state frame (STATE_COLUMNS) of a `fire_onset_triggers` result (for tests and
    for callers that keep the state outside the ranking)."""
    ranking = pd.concat([keys[KEYS].astype("str"), fired], axis=1)
    return state_from_ranking(ranking, config)
