"""The win-back section: who is in it, its own capacity, that it never takes early-warning
slots, and how it shows in the ranking, the routing, the curator CSV and the report."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pipelines.texts import load_texts

from configs import load_config
from interventions.ranking import curator_lists, rank_for_curators
from interventions.report import ReportContext, build_report
from interventions.routing import RoutingError, route
from interventions.weekly import rank_week
from interventions.winback import EARLY_WARNING, WIN_BACK, assign_sections

T = datetime(2026, 3, 2, tzinfo=UTC)


def students(silence, enrolled=None, started=None):
    n = len(silence)
    return pd.DataFrame(
        {
            "days_since_last_activity": np.asarray(silence, dtype="float64"),
            "days_since_enrolment": np.asarray(enrolled or [60] * n, dtype="float64"),
            "days_since_start": np.asarray(started or [60] * n, dtype="float64"),
        }
    )


@pytest.mark.parametrize(
    ("silence", "enrolled", "started", "section", "reason"),
    [
        (3, 60, 60, EARLY_WARNING, None),
        (27.9, 60, 60, EARLY_WARNING, None),
        (28, 60, 60, WIN_BACK, "silent"),  # inactive for the whole horizon
        (116, 130, 130, WIN_BACK, "silent"),
        (20, 30, 30, WIN_BACK, "faded_early"),  # active only in the first 10 days
        (10, 30, 30, EARLY_WARNING, None),  # last active on day 20
        (np.nan, 20, 20, WIN_BACK, "never_active"),
        (np.nan, 10, 10, EARLY_WARNING, None),  # first weeks: not yet
        (np.nan, 90, 10, EARLY_WARNING, None),  # enrolled long before the course started
    ],
)
def test_sections(silence, enrolled, started, section, reason):
    out = assign_sections(students([silence], [enrolled], [started]), 28, 14)
    assert out["section"].iloc[0] == section
    assert (pd.isna(out["winback_reason"].iloc[0]) and reason is None) or out[
        "winback_reason"
    ].iloc[0] == reason


def test_sections_need_the_activity_features():
    with pytest.raises(RoutingError, match="days_since_last_activity"):
        assign_sections(pd.DataFrame({"days_since_enrolment": [1.0]}), 28, 14)


def ranking_table(risk, section, priority=None, triggered=None, curator=None):
    n = len(risk)
    return pd.DataFrame(
        {
            "curator_id": curator or ["c1"] * n,
            "student_id": [f"s{i:02d}" for i in range(n)],
            "course_id": ["C"] * n,
            "risk": np.asarray(risk, dtype=float),
            "change": np.full(n, np.nan),
            "triggered": np.asarray(triggered or [False] * n, dtype=bool),
            "last_contact_at": pd.to_datetime(pd.Series([pd.NaT] * n), utc=True),
            "section": section,
            "section_priority": np.asarray(priority or [0.0] * n, dtype=float),
        }
    )


def config(**scoring):
    return load_config(overrides={"scoring": scoring})


def test_win_back_never_takes_early_warning_slots_and_has_its_own_capacity():
    # The silent students have the highest risks: without sections they would fill the list.
    risk = [0.9, 0.95, 0.97, 0.99, 0.2, 0.3, 0.1, 0.4]
    section = [WIN_BACK] * 4 + [EARLY_WARNING] * 4
    priority = [30, 60, 40, 100, 0, 0, 0, 0]
    sc = config(capacity=3, winback_capacity=2).scoring
    out = rank_for_curators(ranking_table(risk, section, priority), T, sc)
    early = out[np.array(section) == EARLY_WARNING]
    back = out[np.array(section) == WIN_BACK]
    assert early["listed"].sum() == 3 and back["listed"].sum() == 2
    assert early.loc[early["listed"], "rank"].tolist() == [3, 2, 1]  # 0.2, 0.3, 0.4; not 0.1
    # win-back: the most recently lost first (30, then 40 days of silence), whatever the risk
    assert back.loc[back["listed"], "rank"].tolist() == [1, 2]
    assert back.loc[back["listed"]].index.tolist() == [0, 2]
    assert out.loc[[1, 3], "hold_back"].tolist() == ["capacity", "capacity"]
    # early warning comes first in the curator's ordering
    assert out.loc[early.index, "curator_order"].max() < out.loc[back.index, "curator_order"].min()


def test_zero_win_back_capacity_lists_nobody_there():
    sc = config(capacity=3, winback_capacity=0).scoring
    out = rank_for_curators(ranking_table([0.9, 0.1], [WIN_BACK, EARLY_WARNING]), T, sc)
    assert out["listed"].tolist() == [False, True]


def listed_ranking():
    out = ranking_table([0.9, 0.2, 0.3], [WIN_BACK, EARLY_WARNING, EARLY_WARNING], [40, 0, 0])
    ranked = pd.concat([out, rank_for_curators(out, T, config(capacity=5).scoring)], axis=1)
    return ranked.assign(
        reasons=["last active 40 days ago", "x", "y"],
        reason_groups=["inactivity", "activity", "activity"],
        tier="curator",
        action=["win_back", "write_first", "write_first"],
        message="Hi",
        mentor_id="m1",
        winback_reason=["silent", None, None],
    )


def test_curator_csv_shows_the_section_of_each_row_early_warning_first():
    texts = load_texts("en")
    lists = curator_lists(listed_ranking(), texts.tiers, texts.actions, 3)
    assert lists["section"].tolist() == [EARLY_WARNING, EARLY_WARNING, WIN_BACK]
    assert lists["rank"].tolist() == ["1", "2", "1"]
    assert lists["student"].tolist() == ["s02", "s01", "s00"]
    assert lists["action"].iloc[2] == texts.actions["win_back"]


def test_report_has_a_win_back_heading_and_lists_the_section_apart():
    texts = load_texts("en")
    ctx = ReportContext(as_of="2026-03-02", model="m", source="s", high_risk=0.3)
    ctx = ReportContext(**{**ctx.__dict__, "winback_days": 28, "winback_capacity": 5})
    html = build_report(listed_ranking(), ctx, texts)
    assert texts.report["win_back"] in html and 'id="win-back"' in html
    assert "28 days" in html
    curator_part = html[html.index('id="curator-c1"') :]
    assert curator_part.index("s02") < curator_part.index('class="win-back"')
    assert curator_part.index('class="win-back"') < curator_part.index("s00")


def test_report_without_sections_has_no_win_back_heading():
    texts = load_texts("en")
    ranking = listed_ranking().drop(columns=["section", "section_priority", "winback_reason"])
    ctx = ReportContext(as_of="2026-03-02", model="m", source="s", high_risk=0.3)
    assert 'id="win-back"' not in build_report(ranking, ctx, texts)


def test_route_sends_win_back_rows_to_the_win_back_action_before_triggers():
    sc = load_config().scoring
    frame = pd.DataFrame({"support_tickets_14d": [5.0, 5.0], "logins_7d": [0.0, 0.0]})
    frame["lesson_views_7d"] = 1.0
    frame["course_length_days"] = 56.0
    frame["score_trend"] = 0.0
    fired = pd.DataFrame({f"trigger_{t.name}": [True, False] for t in sc.triggers})
    routed = route(frame, fired, None, sc, section=pd.Series([WIN_BACK, EARLY_WARNING]))
    assert routed["action"].tolist() == ["win_back", "fix_technical_problem"]
    assert routed["routed_by"].tolist() == ["win_back", "technical_problem"]


def test_rank_week_suppresses_triggers_in_win_back_and_carries_the_state():
    cfg = config(capacity=2, winback_capacity=1)
    frame = pd.DataFrame(
        {
            "student_id": ["a", "b", "c"],
            "course_id": "C",
            "curator_id": "c1",
            "as_of": pd.Timestamp(T),
            "days_since_last_activity": [40.0, 2.0, 3.0],
            "days_since_enrolment": 60.0,
            "days_since_start": 60.0,
            "deadlines_missed_28d": [1.0, 1.0, 0.0],
            "deadlines_missed": [3.0, 1.0, 0.0],
            "submissions_14d": [0.0, 0.0, 2.0],
            "questions_14d": 0.0,
        }
    )
    out = rank_week(frame, np.array([0.9, 0.1, 0.5]), T, cfg)
    assert out["section"].tolist() == [WIN_BACK, EARLY_WARNING, EARLY_WARNING]
    assert out["trigger_stopped_submitting"].tolist() == [False, True, False]
    assert out["listed"].tolist() == [True, True, True]
    assert out["rank"].tolist() == [1, 1, 2]  # the trigger first in early warning
    assert "state_stopped_submitting_fired_at" in out.columns
