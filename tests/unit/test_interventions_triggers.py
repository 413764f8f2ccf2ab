"""Rule triggers with onset semantics: fire when the condition starts, again only after the
cooldown and only when the situation got worse; the state carried through the ranking frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from interventions.triggers import (
    STATE_COLUMNS,
    fire_onset_triggers,
    state_columns,
    state_frame,
    state_from_ranking,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)
WEEK = timedelta(days=7)
# The deadline trigger of issue 12, on the deadline features (tiny frames carry the columns).
DEADLINE_TRIGGER = {
    "name": "stopped_submitting",
    "feature": "missed_streak",
    "reason_group": "deadlines",
    "tier": "curator",
    "action": "write_first",
    "when": {"feature": "latest_deadline_missed", "op": "==", "value": 1},
    "severity": "missed_streak",
    "worse_by": 1,
}
QUESTIONS = {
    "name": "many_questions",
    "feature": "questions_14d",
    "tier": "mentor",
    "action": "offer_consultation",
    "when": {"feature": "questions_14d", "op": ">=", "value": 5},
    "severity": "questions_14d",
}


def scoring(cooldown=14, **trigger_overrides):
    trigger = {**DEADLINE_TRIGGER, **trigger_overrides}
    overrides = {"triggers": [trigger, QUESTIONS], "trigger_cooldown_days": cooldown}
    return load_config(overrides={"scoring": overrides}).scoring


def week(latest_missed, streak, questions=None, ids=None):
    n = len(latest_missed)
    return pd.DataFrame(
        {
            "student_id": ids or [f"s{i}" for i in range(n)],
            "course_id": ["C"] * n,
            "latest_deadline_missed": np.asarray(latest_missed, dtype="float64"),
            "missed_streak": np.asarray(streak, dtype="float64"),
            "questions_14d": np.asarray(questions or [0] * n, dtype="float64"),
        }
    )


def replay(weeks, sc, suppress=None):
    """Fire week by week, carrying the state through the ranking columns; fired per week."""
    previous, fired_by_week = None, []
    for k, frame in enumerate(weeks):
        state = state_from_ranking(previous, sc)
        fired = fire_onset_triggers(frame, T0 + k * WEEK, state, sc, suppress)
        previous = pd.concat([frame[["student_id", "course_id"]], fired], axis=1)
        fired_by_week.append(fired)
    return fired_by_week


def test_fires_in_the_week_a_deadline_is_missed_not_every_week_after():
    sc = scoring()
    weeks = [
        week([0], [0]),
        week([1], [1]),  # missed: onset
        week([1], [1]),  # still the same missed deadline: no
        week([1], [1]),
        week([1], [1]),
    ]
    fired = [f["trigger_stopped_submitting"].iloc[0] for f in replay(weeks, sc)]
    assert fired == [False, True, False, False, False]


def test_fires_again_only_after_the_cooldown_and_when_worse():
    sc = scoring(cooldown=14)
    weeks = [
        week([1], [1]),  # onset
        week([1], [2]),  # worse, but within the cooldown (7 days)
        week([1], [2]),  # cooled (14 days) and worse than when it fired (2 >= 1 + 1)
        week([1], [2]),  # not worse than at the last firing
        week([1], [3]),  # worse again (3 >= 2 + 1), 14 days after the last firing
    ]
    fired = [f["trigger_stopped_submitting"].iloc[0] for f in replay(weeks, sc)]
    assert fired == [True, False, True, False, True]


def test_a_student_who_stopped_long_ago_is_not_fired_for_every_cooldown():
    sc = scoring(cooldown=14)
    weeks = [week([1], [1])] + [week([1], [1]) for _ in range(12)]
    fired = [f["trigger_stopped_submitting"].iloc[0] for f in replay(weeks, sc)]
    assert fired == [True] + [False] * 12


def test_a_new_case_after_catching_up_fires_again():
    sc = scoring(cooldown=14)
    weeks = [week([1], [1]), week([0], [0]), week([0], [0]), week([1], [1])]
    fired = [f["trigger_stopped_submitting"].iloc[0] for f in replay(weeks, sc)]
    assert fired == [True, False, False, True]


def test_first_scoring_without_state_fires_where_the_condition_holds():
    sc = scoring()
    fired = fire_onset_triggers(week([1, 0, np.nan], [1, 0, 0]), T0, None, sc)
    assert fired["trigger_stopped_submitting"].tolist() == [True, False, False]
    assert fired["triggered"].tolist() == [True, False, False]


def test_suppressed_rows_never_fire_but_their_state_is_kept():
    sc = scoring()
    weeks = [week([1, 1], [1, 1]), week([1, 1], [1, 1])]
    fired = replay(weeks, sc, suppress=np.array([True, False]))
    assert fired[0]["trigger_stopped_submitting"].tolist() == [False, True]
    assert fired[0][state_columns(sc)[0]].tolist() == [True, True]  # holds
    assert fired[1]["trigger_stopped_submitting"].tolist() == [False, False]  # no onset


def test_many_questions_has_the_same_onset_and_worse_semantics():
    sc = scoring(cooldown=14)
    qs = [2, 6, 6, 6, 9, 9]
    weeks = [week([0], [0], questions=[q]) for q in qs]
    fired = [f["trigger_many_questions"].iloc[0] for f in replay(weeks, sc)]
    assert fired == [False, True, False, False, True, False]


def test_onset_false_keeps_the_old_fire_whenever_it_holds():
    sc = scoring(onset=False)
    weeks = [week([1], [1]) for _ in range(3)]
    fired = [f["trigger_stopped_submitting"].iloc[0] for f in replay(weeks, sc)]
    assert fired == [True, True, True]


def test_trigger_without_severity_fires_on_a_new_onset_after_the_cooldown():
    sc = scoring(cooldown=14, severity=None)
    weeks = [week([1], [1]), week([0], [0]), week([1], [5]), week([0], [0]), week([0], [0])]
    weeks.append(week([1], [1]))
    fired = [f["trigger_stopped_submitting"].iloc[0] for f in replay(weeks, sc)]
    # week 2: a new onset only 14 days after the firing: fires (cooldown is "at least").
    assert fired == [True, False, True, False, False, True]


def test_state_round_trips_through_the_ranking_columns():
    sc = scoring()
    frame = week([1, 0], [2, 0], questions=[0, 7])
    fired = fire_onset_triggers(frame, T0, None, sc)
    assert set(state_columns(sc)) <= set(fired.columns)
    state = state_frame(fired, frame, sc)
    assert list(state.columns) == STATE_COLUMNS
    s0 = state[(state["student_id"] == "s0") & (state["trigger"] == "stopped_submitting")].iloc[0]
    assert bool(s0["holds"]) and s0["severity"] == 2 and s0["fired_severity"] == 2
    assert s0["fired_at"] == pd.Timestamp(T0)
    s1 = state[(state["student_id"] == "s1") & (state["trigger"] == "stopped_submitting")].iloc[0]
    assert not s1["holds"] and pd.isna(s1["fired_at"])


def test_state_of_a_ranking_without_state_columns_is_empty():
    sc = scoring()
    old = pd.DataFrame({"student_id": ["s0"], "course_id": ["C"], "risk": [0.3]})
    assert state_from_ranking(old, sc).empty
    assert state_from_ranking(None, sc).empty


def test_students_new_this_week_start_without_state():
    sc = scoring()
    weeks = [week([1], [1], ids=["old"]), week([1, 1], [1, 1], ids=["old", "new"])]
    fired = replay(weeks, sc)
    assert fired[1]["trigger_stopped_submitting"].tolist() == [False, True]


@pytest.mark.parametrize("missing", ["latest_deadline_missed", "missed_streak"])
def test_missing_feature_is_a_clear_error(missing):
    from interventions.routing import RoutingError, check_rule_features

    sc = scoring()
    columns = [c for c in week([0], [0]).columns if c != missing]
    with pytest.raises(RoutingError, match=missing):
        check_rule_features(sc, columns)


def test_worse_ratio_fires_again_only_when_the_severity_doubled():
    """A student who keeps missing weekly work is fired for at 1, 3 and 6 missed deadlines
    (each at least double the last firing's, after the cooldown), not at every cooldown."""
    sc = scoring(cooldown=14, worse_ratio=2)
    weeks = [week([1], [k]) for k in range(1, 10)]
    fired = [f["trigger_stopped_submitting"].iloc[0] for f in replay(weeks, sc)]
    # 2 missed comes 7 days after the first firing (cooling); 3 >= max(1 + 1, 1 * 2); 6 >= 3 * 2
    assert fired == [True, False, True, False, False, True, False, False, False]
