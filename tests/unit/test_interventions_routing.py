"""Routing rules and playbook triggers, evaluated on features and reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from configs.schema import ConfigError, ScoringCondition
from interventions.routing import (
    RoutingError,
    check_rule_features,
    evaluate,
    fire_triggers,
    route,
)

CONFIG = load_config()
SC = CONFIG.scoring


def students(**columns) -> pd.DataFrame:
    base = {
        "days_since_last_submission": 2.0,
        "deadlines_missed_28d": 0.0,
        "deadlines_missed": 0.0,
        "submissions_14d": 1.0,
        "deadlines_due": 3.0,
        "days_since_enrolment": 40.0,
        "days_since_start": 40.0,
        "questions_14d": 0.0,
        "support_tickets_14d": 0.0,
        "logins_7d": 2.0,
        "lesson_views_7d": 5.0,
        "course_length_days": 56.0,
        "score_trend": 0.0,
    }
    n = max((len(v) for v in columns.values()), default=1)
    return pd.DataFrame({k: columns.get(k, [v] * n) for k, v in base.items()}, dtype="float64")


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (">=", 2, [False, True, True, False]),
        (">", 2, [False, False, True, False]),
        ("<=", 2, [True, True, False, False]),
        ("<", 2, [True, False, False, False]),
        ("==", 2, [False, True, False, False]),
        ("!=", 2, [True, False, True, False]),
        ("missing", None, [False, False, False, True]),
        ("present", None, [True, True, True, False]),
    ],
)
def test_comparisons_and_missing_values(op, value, expected):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, np.nan]})
    cond = ScoringCondition(feature="x", op=op, value=value)
    assert evaluate(cond, frame).tolist() == expected


def test_nested_conditions_and_reason_conditions():
    frame = pd.DataFrame({"x": [1.0, 5.0, 5.0]})
    cond = ScoringCondition(
        all_of=(
            ScoringCondition(feature="x", op=">=", value=5),
            ScoringCondition(
                any_of=(ScoringCondition(reason="questions"), ScoringCondition(reason="scores"))
            ),
        )
    )
    reasons = np.array([["questions", None], ["activity", "scores"], ["activity", None]], object)
    assert evaluate(cond, frame, reasons).tolist() == [False, True, False]
    assert evaluate(cond, frame, None).tolist() == [False, False, False]


def test_a_condition_needs_exactly_one_kind():
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(
            overrides={
                "scoring": {
                    "rules": [
                        {
                            "name": "x",
                            "tier": "curator",
                            "action": "write_first",
                            "when": {
                                "feature": "events_7d",
                                "op": ">=",
                                "value": 1,
                                "reason": "activity",
                            },
                        }
                    ]
                }
            }
        )
    with pytest.raises(ConfigError, match="needs a value"):
        load_config(
            overrides={
                "scoring": {
                    "rules": [
                        {
                            "name": "x",
                            "tier": "curator",
                            "action": "write_first",
                            "when": {"feature": "events_7d", "op": ">="},
                        }
                    ]
                }
            }
        )


def test_stopped_submitting_fires_for_work_due_and_not_submitted_not_for_quiet_days():
    frame = students(
        deadlines_missed_28d=[0, 1, 1, 0, 2, 1],
        submissions_14d=[0, 0, 1, 0, 0, 0],
        days_since_last_submission=[40, 20, 3, 60, np.nan, np.nan],  # quiet days never fire
        days_since_enrolment=[40, 40, 40, 40, 40, 10],  # 10 days in: a late first submission
    )
    fired = fire_triggers(frame, SC)
    assert fired["trigger_stopped_submitting"].tolist() == [False, True, False, False, True, False]


def test_many_questions_fires_at_m_and_both_triggers_are_named():
    frame = students(
        questions_14d=[4, 5, 9], deadlines_missed_28d=[0, 0, 1], submissions_14d=[1, 1, 0]
    )
    fired = fire_triggers(frame, SC)
    assert fired["trigger_many_questions"].tolist() == [False, True, True]
    assert fired["triggered"].tolist() == [False, True, True]
    assert fired["triggers"].iloc[2] == "stopped_submitting,many_questions"
    assert pd.isna(fired["triggers"].iloc[0])


def test_triggers_decide_before_rules_then_first_rule_then_default():
    frame = students(
        deadlines_missed_28d=[1, 0, 0, 0, 0, 0],
        submissions_14d=[0, 1, 1, 1, 1, 1],
        support_tickets_14d=[3, 3, 0, 0, 0, 0],
        course_length_days=[56, 56, 140, 56, 56, 56],
        logins_7d=[2, 2, 2, 2, 4, 2],
        lesson_views_7d=[5, 5, 5, 5, 0, 5],
    )
    reasons = np.array(
        [["activity"], ["activity"], ["scores"], ["deadlines"], ["activity"], ["activity"]], object
    )
    fired = fire_triggers(frame, SC)
    routed = route(frame, fired, reasons, SC)
    assert routed["routed_by"].tolist() == [
        "stopped_submitting",  # trigger beats the technical rule
        "technical_problem",  # 3 tickets
        "mentor_consultation",  # long course, low scores
        "missed_deadlines",
        "technical_problem",  # logs in, never opens a lesson
        "default",
    ]
    assert routed["tier"].tolist() == [
        "curator",
        "technical_support",
        "mentor",
        "curator",
        "technical_support",
        "curator",
    ]
    assert routed["action"].iloc[3] == "plan_deadlines"


def test_rules_naming_unknown_features_are_refused_by_name():
    with pytest.raises(RoutingError, match="questions_14d"):
        check_rule_features(SC, ["days_since_last_submission", "deadlines_due"])
