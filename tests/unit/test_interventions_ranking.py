"""Capacity, triggers, cooldown and list order per curator; the change column; CSV formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from interventions.messages import choose_messages
from interventions.ranking import (
    HOLD_CAPACITY,
    HOLD_COOLDOWN,
    curator_lists,
    format_risk,
    rank_for_curators,
    risk_change,
)
from pipelines.texts import load_texts

T = datetime(2026, 3, 2, tzinfo=UTC)


def config(**scoring):
    return load_config(overrides={"scoring": scoring}).scoring


def table(risk, curator=None, triggered=None, change=None, contact_days_ago=None, ids=None):
    n = len(risk)
    contact = [
        pd.NaT if d is None else T - timedelta(days=d) for d in (contact_days_ago or [None] * n)
    ]
    return pd.DataFrame(
        {
            "curator_id": curator or ["c1"] * n,
            "student_id": ids or [f"s{i:03d}" for i in range(n)],
            "course_id": ["C"] * n,
            "risk": np.asarray(risk, dtype=float),
            "change": np.asarray(change if change is not None else [np.nan] * n, dtype=float),
            "triggered": np.asarray(triggered or [False] * n, dtype=bool),
            "last_contact_at": pd.to_datetime(pd.Series(contact), utc=True),
        }
    )


def test_each_curator_gets_at_most_capacity_highest_risk_first():
    rng = np.random.default_rng(0)
    t = table(rng.random(40), curator=[f"c{i % 3}" for i in range(40)])
    out = rank_for_curators(t, T, config(capacity=5))
    merged = pd.concat([t, out], axis=1)
    for _, group in merged.groupby("curator_id"):
        listed = group[group["listed"]].sort_values("rank")
        assert len(listed) == 5 and listed["rank"].tolist() == [1, 2, 3, 4, 5]
        assert listed["risk"].is_monotonic_decreasing
        assert listed["risk"].min() >= group.loc[~group["listed"], "risk"].max()
        assert (group.loc[~group["listed"], "hold_back"] == HOLD_CAPACITY).all()
        assert group.loc[group["listed"], "hold_back"].isna().all()


def test_triggers_are_always_listed_before_higher_risks():
    t = table([0.9, 0.8, 0.05, 0.01, 0.7], triggered=[False, False, True, True, False])
    out = rank_for_curators(t, T, config(capacity=3))
    assert out["listed"].tolist() == [True, False, True, True, False]
    assert out["rank"].tolist()[:4] == [3, pd.NA, 1, 2]


def test_when_triggers_alone_exceed_capacity_the_highest_risk_triggers_are_listed():
    t = table([0.9, 0.2, 0.3, 0.1], triggered=[False, True, True, True])
    out = rank_for_curators(t, T, config(capacity=2))
    assert out["listed"].tolist() == [False, True, True, False]
    assert out.loc[2, "rank"] == 1


def test_ties_break_by_student_id_so_lists_are_stable():
    t = table([0.5, 0.5, 0.5], ids=["s3", "s1", "s2"])
    out = rank_for_curators(t, T, config(capacity=2))
    assert out["rank"].tolist() == [pd.NA, 1, 2]


@pytest.mark.parametrize(
    ("days_ago", "change", "listed", "hold"),
    [
        (3, np.nan, False, HOLD_COOLDOWN),  # contacted recently, no earlier scoring
        (3, 0.05, False, HOLD_COOLDOWN),  # contacted recently, risk barely moved
        (3, 0.20, True, None),  # contacted recently but the risk jumped
        (14, np.nan, False, HOLD_COOLDOWN),  # exactly cooldown_days ago still counts
        (15, np.nan, True, None),  # longer ago: no cooldown
        (None, np.nan, True, None),
    ],
)
def test_cooldown_holds_back_recent_contacts_unless_risk_jumped(days_ago, change, listed, hold):
    t = table([0.9, 0.1], change=[change, np.nan], contact_days_ago=[days_ago, None])
    out = rank_for_curators(t, T, config(capacity=5, cooldown_days=14, risk_jump=0.15))
    assert bool(out.loc[0, "listed"]) is listed
    assert pd.isna(out.loc[0, "hold_back"]) if hold is None else out.loc[0, "hold_back"] == hold
    assert bool(out.loc[0, "cooldown_lifted"]) is (days_ago == 3 and change == 0.20)


def test_cooldown_of_a_trigger_is_configurable():
    t = table([0.4], triggered=[True], contact_days_ago=[2])
    assert not rank_for_curators(t, T, config())["listed"].iloc[0]
    lifted = rank_for_curators(t, T, config(cooldown_applies_to_triggers=False))
    assert lifted["listed"].iloc[0]


def test_per_curator_capacity_overrides_the_default():
    t = table([0.9, 0.8, 0.7, 0.6], curator=["a", "a", "b", "b"])
    out = rank_for_curators(t, T, config(capacity=2, curator_capacity={"a": 1}))
    assert out["listed"].tolist() == [True, False, True, True]


def test_change_is_risk_minus_the_previous_scoring():
    keys = pd.DataFrame({"student_id": ["s1", "s2", "s3"], "course_id": ["C", "C", "D"]})
    previous = pd.DataFrame(
        {"student_id": ["s1", "s3"], "course_id": ["C", "C"], "risk": [0.2, 0.9]}
    )
    prev, change = risk_change(keys, np.array([0.5, 0.5, 0.5]), previous)
    assert prev[0] == 0.2 and change[0] == pytest.approx(0.3)
    assert np.isnan(change[1]) and np.isnan(change[2])  # s3 was scored in another course
    _, none = risk_change(keys, np.array([0.5, 0.5, 0.5]), None)
    assert np.isnan(none).all()


def test_risk_text_has_fixed_precision():
    values = pd.Series([0.12345, -0.00001, np.nan, 0.5])
    assert format_risk(values, 3).tolist() == ["0.123", "0.000", "", "0.500"]
    assert format_risk(values, 3, signed=True).tolist() == ["+0.123", "+0.000", "", "+0.500"]


def test_curator_lists_hold_labels_and_list_order():
    texts = load_texts("en")
    ranking = pd.DataFrame(
        {
            "curator_id": ["b", "a", "a", "a"],
            "student_id": ["s1", "s2", "s3", "s4"],
            "course_id": ["C"] * 4,
            "risk": [0.3, 0.2, 0.9, 0.1],
            "change": [np.nan, 0.1, -0.2, np.nan],
            "listed": [True, True, True, False],
            "rank": pd.array([1, 2, 1, pd.NA], dtype="Int64"),
            "reasons": ["r1", "r2", "r3", None],
            "tier": ["curator", "mentor", "technical_support", None],
            "action": ["write_first", "offer_consultation", "fix_technical_problem", None],
            "message": ["m1", "m2", "m3", None],
        }
    )
    lists = curator_lists(ranking, texts.tiers, texts.actions, 3)
    assert lists["student"].tolist() == ["s3", "s2", "s1"]
    assert lists.loc[0, "tier"] == "Technical support"
    assert lists.loc[1, "action"] == "Offer a consultation with a mentor"
    assert lists.loc[1, "change"] == "+0.100" and lists.loc[2, "change"] == ""


def test_messages_are_deterministic_varied_and_keep_the_name_placeholder():
    texts = load_texts("en")
    n = 60
    idx = pd.RangeIndex(n)
    students = pd.Series([f"s{i}" for i in range(n)], index=idx)
    course = pd.Series(["C1"] * n, index=idx)
    action = pd.Series(["write_first"] * (n - 1) + [None], index=idx, dtype="str")
    lead = pd.Series(["submissions"] * 30 + ["course_stage"] * 30, index=idx, dtype="str")
    titles = pd.Series(["Python for beginners"] * n, index=idx)
    first = choose_messages(students, course, "2026-03-02", action, lead, titles, texts)
    again = choose_messages(students, course, "2026-03-02", action, lead, titles, texts)
    pd.testing.assert_frame_equal(first, again)
    assert pd.isna(first.loc[n - 1, "message"])
    sent = first["message"].dropna()
    assert sent.str.contains("{first_name}", regex=False).all()
    assert sent.str.contains("Python for beginners", regex=False).all()
    assert set(first.loc[:29, "message"]) <= set(
        m.replace("{course}", "Python for beginners")
        for m in texts.messages["write_first"]["submissions"]
    )
    # no reason-specific list for course_stage: the action's default variants
    assert first.loc[30:58, "message_variant"].str.startswith("write_first/default/").all()
    assert first["message_variant"].nunique() >= 4  # variants spread over students
