"""Reasons come from the model's contributions: grouped, positive only, shown with real values."""

from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from features.catalog import feature_names
from interventions.reasons import (
    combine_reasons,
    group_features,
    pick_reasons,
    render_reasons,
    typical_values,
)
from pipelines.texts import load_texts

CONFIG = load_config()
SC = CONFIG.scoring
FEATURES = [*feature_names(CONFIG.features), "attr_age_band", "attr_region"]
GROUPS = group_features(FEATURES, SC.reason_groups, SC.skip_reason_prefixes)
K = SC.reasons_per_student


def contributions(rows: list[dict[str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(0.0, index=range(len(rows)), columns=[*FEATURES, "bias"])
    for i, row in enumerate(rows):
        for name, value in row.items():
            frame.loc[i, name] = value
    return frame


@pytest.mark.parametrize("feature", feature_names(CONFIG.features))
def test_every_catalogue_feature_is_in_exactly_one_reason_group(feature):
    # A feature in no group is shown under its raw name in the report; one in two groups goes to
    # the first by order, which silently empties the other (events_change_7d once did that to
    # activity_drop).
    matching = [
        name
        for name, patterns in SC.reason_groups.items()
        if any(fnmatchcase(feature, p) for p in patterns)
    ]
    assert len(matching) == 1, f"{feature}: reason groups {matching}"


def test_week_on_week_changes_are_activity_drops():
    assert {"events_change_7d", "events_slope_28d", "logins_change_7d"} <= set(
        GROUPS["activity_drop"]
    )
    assert not {"events_change_7d", "logins_change_7d"} & set(GROUPS["activity"])


def test_related_features_share_a_group_and_attributes_are_never_reasons():
    assert {"events_7d", "events_14d", "active_days_7d"} <= set(GROUPS["activity"])
    assert {"deadlines_missed_28d", "deadlines_due_28d", "on_time_share"} <= set(
        GROUPS["deadlines"]
    )
    grouped = {f for members in GROUPS.values() for f in members}
    assert not any(f.startswith("attr_") for f in grouped)
    assert "bias" not in grouped
    assert grouped == {f for f in FEATURES if not f.startswith("attr_")}


def test_a_feature_in_no_group_is_its_own_group():
    groups = group_features(["events_7d", "mystery_signal"], {"activity": ["events_*d"]})
    assert groups == {"activity": ["events_7d"], "mystery_signal": ["mystery_signal"]}


def test_reasons_are_the_top_positive_groups_with_their_strongest_feature():
    c = contributions(
        [
            {
                "events_7d": 0.3,
                "events_14d": 0.3,  # activity: 0.6 in total
                "deadlines_missed_28d": 0.5,
                "questions_14d": 0.2,
                "score_last": -0.4,
                "attr_age_band": 2.0,  # largest of all, but never a reason
            }
        ]
    )
    picks = pick_reasons(c, GROUPS, K)
    row = picks.iloc[0]
    assert [row[f"reason_{i}_group"] for i in (1, 2, 3)] == ["activity", "deadlines", "questions"]
    assert row["reason_1_feature"] in ("events_7d", "events_14d")
    assert row["reason_2_feature"] == "deadlines_missed_28d"
    assert row["reason_1_contribution"] == pytest.approx(0.6)
    assert not row["reasons_fallback"] and row["reasons_count"] == 3


def test_only_positive_contributions_become_reasons():
    c = contributions([{"days_since_last_submission": 0.4, "score_mean": -0.2, "events_7d": -0.1}])
    picks = pick_reasons(c, GROUPS, K)
    assert picks.loc[0, "reason_1_group"] == "submissions"
    assert pd.isna(picks.loc[0, "reason_2_group"]) and pd.isna(picks.loc[0, "reason_3_group"])
    assert picks.loc[0, "reasons_count"] == 1


def test_without_positive_contributions_the_largest_are_shown_and_flagged():
    c = contributions([{"events_7d": -0.05, "score_mean": -0.5, "questions_14d": -0.01}])
    # every other group sums to 0.0, which is not above min_contribution (0.0) either
    picks = pick_reasons(c, GROUPS, K)
    assert bool(picks.loc[0, "reasons_fallback"])
    assert picks.loc[0, "reasons_count"] == K
    assert picks.loc[0, "reason_1_contribution"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_named_reasons_agree_with_summed_contributions(seed):
    rng = np.random.default_rng(seed)
    c = pd.DataFrame(rng.normal(0, 0.3, (200, len(FEATURES) + 1)), columns=[*FEATURES, "bias"])
    picks = pick_reasons(c, GROUPS, K)
    sums = pd.DataFrame({g: c[members].sum(axis=1) for g, members in GROUPS.items()})
    for i in range(len(c)):
        expected = sums.iloc[i].sort_values(ascending=False, kind="stable")
        expected = expected[expected > 0].index[:K].tolist()
        named = [picks.loc[i, f"reason_{j}_group"] for j in range(1, K + 1)]
        assert [g for g in named if pd.notna(g)] == expected
        for j, group in enumerate(expected, start=1):
            members = GROUPS[group]
            assert picks.loc[i, f"reason_{j}_feature"] == c.loc[i, members].idxmax()


def frame_with(values: dict[str, float], course: str = "C1") -> pd.DataFrame:
    row = {f: np.nan for f in FEATURES if not f.startswith("attr_")}
    row.update(values)
    return pd.DataFrame([{"course_id": course, **row}])


@pytest.mark.parametrize(
    ("feature", "values", "expected"),
    [
        (
            "days_since_last_submission",
            {"days_since_last_submission": 12.2},
            "no submissions for 12 days",
        ),
        (
            "deadlines_missed_28d",
            {"deadlines_missed_28d": 2, "deadlines_due_28d": 3},
            "missed 2 of the last 3 deadlines",
        ),
        ("questions_14d", {"questions_14d": 6}, "asked 6 questions in the last 14 days"),
        ("events_change_7d", {"events_change_7d": -0.7}, "activity down 70 % on the week before"),
        ("days_since_last_submission", {}, "has not submitted any assignment yet"),
    ],
)
def test_reasons_render_with_the_students_values(feature, values, expected):
    frame = frame_with(values)
    picks = pd.DataFrame({f"reason_{i}_feature": [feature if i == 1 else None] for i in (1, 2, 3)})
    picks = picks.astype("str")
    out = render_reasons(picks, frame, load_texts("en"), K)
    assert out.loc[0, "reason_1_text"] == expected
    assert pd.isna(out.loc[0, "reason_2_text"])


def test_typical_is_the_course_median():
    frame = pd.concat(
        [frame_with({"events_7d": v}, "C1") for v in (2, 10, 30)]
        + [frame_with({"events_7d": v}, "C2") for v in (50, 70)],
        ignore_index=True,
    )
    typical = typical_values(frame, ["events_7d"])
    picks = pd.DataFrame({f"reason_{i}_feature": ["events_7d"] * 5 for i in (1,)}).astype("str")
    out = render_reasons(picks, frame, load_texts("en"), 1, typical)
    assert out.loc[0, "reason_1_text"] == (
        "2 actions on the platform in the last 7 days (typical for the course: 10)"
    )
    assert out.loc[3, "reason_1_text"].endswith("(typical for the course: 60)")


def test_trigger_reasons_come_first_and_replace_the_same_group():
    model = pd.DataFrame(
        {
            "reason_1_text": ["no submissions for 20 days", "low A"],
            "reason_1_group": ["submissions", "activity"],
            "reason_2_text": ["activity low", "low B"],
            "reason_2_group": ["activity", "study"],
            "reason_3_text": ["scores low", None],
            "reason_3_group": ["scores", None],
        }
    ).astype("str")
    trigger = pd.Series(["RULE: no submissions for 20 days", None], dtype="str")
    out = combine_reasons(model, [(trigger, "submissions")], K)
    assert out.loc[0, "reasons"] == "RULE: no submissions for 20 days; activity low; scores low"
    assert out.loc[0, "reason_groups"] == "submissions,activity,scores"
    assert out.loc[0, "lead_group"] == "submissions"
    assert out.loc[1, "reasons"] == "low A; low B"
    assert list(out["reasons_count"]) == [3, 2]
