"""Metrics on cases small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from models.evaluation import (
    SMALL_GROUPS,
    auc_by_week_of_course,
    calibration_table,
    evaluate_scores,
    flagged_metrics,
    lift_curve,
    ranking_metrics,
    segment_table,
    top_in_groups,
    week_of,
)


def test_ranking_metrics_by_hand():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    m = ranking_metrics(y, s)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered right
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ranking_metrics_single_class_is_nan():
    m = ranking_metrics(np.zeros(5), np.arange(5.0))
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])


def test_top_share_per_group_rounds_up_and_breaks_ties_by_row_order():
    score = np.array([5, 4, 3, 2, 1, 1, 1, 9, 8, 7], dtype=float)
    groups = np.array([0] * 7 + [1] * 3)
    flagged = top_in_groups(score, groups, share=0.2, k=None)
    # group 0: ceil(0.2 * 7) = 2 -> rows 0, 1; group 1: ceil(0.6) = 1 -> row 7
    assert flagged.tolist() == [1, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    ties = top_in_groups(np.ones(4), np.zeros(4), share=0.5, k=None)
    assert ties.tolist() == [True, True, False, False]


def test_top_k_per_group():
    score = np.array([1, 2, 3, 4, 5, 6], dtype=float)
    groups = np.array(["a", "b", "a", "b", "a", "b"])
    flagged = top_in_groups(score, groups, share=None, k=2)
    assert flagged.tolist() == [False, False, True, True, True, True]


def test_flagged_metrics_by_hand():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 1, 0])
    flagged = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 0], dtype=bool)
    m = flagged_metrics(y, flagged)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["lift"] == pytest.approx((2 / 3) / 0.3)
    assert m["flagged"] == 3


def test_week_of_groups_a_calendar_week():
    as_of = pd.Series(
        pd.to_datetime(["2026-03-02", "2026-03-08", "2026-03-09"], utc=True)
    )  # Mon, Sun, next Mon
    weeks = week_of(as_of)
    assert weeks[0] == weeks[1] != weeks[2]


def test_auc_by_week_skips_small_and_single_class_weeks():
    y = np.array([0, 1, 0, 1, 0, 0, 0, 1])
    s = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.4, 0.5, 0.6])
    week = np.array([1, 1, 1, 1, 2, 2, 3, 3])
    table = auc_by_week_of_course(y, s, week, min_rows=2)
    assert table["week"].tolist() == [1, 3]
    assert table["roc_auc"].tolist() == [1.0, 1.0]


def test_segment_table_pools_small_groups():
    y = np.array([1, 0] * 10)
    score = np.linspace(0, 1, 20)
    flagged = score > 0.85
    values = pd.Series(["big"] * 16 + ["rare1"] * 2 + ["rare2"] * 2)
    table = segment_table(y, score, flagged, {"attr_x": values}, min_size=4)
    assert set(table["value"]) == {"big", SMALL_GROUPS}
    pooled = table[table["value"] == SMALL_GROUPS].iloc[0]
    assert pooled["rows"] == 4
    assert pooled["flagged_share"] == pytest.approx(3 / 4)
    # A pooled group still under the minimum is not reported at all.
    tiny = segment_table(y, score, flagged, {"attr_x": values}, min_size=5)
    assert SMALL_GROUPS not in set(tiny["value"])


def test_lift_curve_and_calibration_table():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    score = -np.arange(10.0)  # rows already in descending order
    lift = lift_curve(y, score, points=5)
    assert lift["precision"].iloc[0] == pytest.approx(1.0)  # top 20 %: both positives
    assert lift["lift"].iloc[0] == pytest.approx(5.0)
    assert lift["lift"].iloc[-1] == pytest.approx(1.0)
    cal = calibration_table(y, np.linspace(0.9, 0.0, 10), bins=2)
    assert cal["observed"].tolist() == [0.0, 0.4]


def test_evaluate_scores_weekly_top_share_and_capacity():
    config = load_config(
        overrides={
            "evaluation": {"top_share": 0.25, "min_segment_size": 1, "min_week_rows": 1},
            "scoring": {"capacity": 1},
        }
    )
    monday = pd.Timestamp("2026-03-02", tz="UTC")
    as_of = [monday] * 4 + [monday + pd.Timedelta(days=7)] * 4
    test = pd.DataFrame(
        {
            "as_of": pd.Series(as_of).astype("datetime64[us, UTC]"),
            "course_start": pd.Series([monday - pd.Timedelta(days=7)] * 8).astype(
                "datetime64[us, UTC]"
            ),
            "course_id": ["c1"] * 8,
            "curator_id": ["k1", "k1", "k2", "k2"] * 2,
            "attr_group": pd.Categorical(["a", "b"] * 4),
        }
    )
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0])
    prob = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.2, 0.7, 0.1])
    ev = evaluate_scores(test, y, prob, config)
    m = ev.metrics
    # Week 1 flags row 0 (hit), week 2 flags row 6 (hit): 2 of 3 positives.
    assert m["precision_top25"] == 1.0
    assert m["recall_top25"] == pytest.approx(2 / 3)
    # Capacity 1 per curator per week: rows 0, 3, 4, 6 -> hits 0, 3, 6.
    assert m["precision_capacity"] == pytest.approx(3 / 4)
    assert m["recall_capacity"] == 1.0
    assert m["rows"] == 8 and m["base_rate"] == pytest.approx(3 / 8)
    assert set(ev.segments["segment"]) == {"course_id", "attr_group"}
    assert ev.by_week["week"].tolist() == [1, 2]


def test_many_valued_numeric_segments_are_binned():
    from models.evaluation import segment_values

    values = pd.Series(np.arange(100, dtype=float))
    binned = segment_values(values, max_values=12, bins=4)
    assert binned.nunique() == 4
    few = pd.Series([0.0, 1.0, 2.0] * 10)
    assert segment_values(few, max_values=12, bins=4).equals(few)
    with_missing = pd.Series([np.nan, *range(50)], dtype=float)
    assert segment_values(with_missing, 12, 4).isna().sum() == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_auc_equals_sklearn_with_ties(seed):
    from models.evaluation import rank_roc_auc

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    score = rng.integers(0, 20, 300).astype(float)  # many ties
    assert rank_roc_auc(y, score) == pytest.approx(ranking_metrics(y, score)["roc_auc"])
    assert math.isnan(rank_roc_auc(np.zeros(5), np.arange(5.0)))


def _segment_table_by_strings(y, score, flagged, segments, min_size):
    """The straightforward version: compare printed labels value by value."""
    from models.evaluation import SMALL_GROUPS, rank_roc_auc

    out = []
    for name, values in segments.items():
        labels = values.astype("str").fillna("(missing)").to_numpy(dtype=object)
        uniq, counts = np.unique(labels, return_counts=True)
        small = set(uniq[counts < min_size].tolist())
        if small:
            labels = np.where(np.isin(labels, list(small)), SMALL_GROUPS, labels)
        for value in sorted(set(labels.tolist())):
            m = labels == value
            if value == SMALL_GROUPS and m.sum() < min_size:
                continue
            out.append(
                {
                    "segment": name,
                    "value": value,
                    "rows": int(m.sum()),
                    "base_rate": float(y[m].mean()),
                    "roc_auc": rank_roc_auc(y[m], score[m]),
                    "flagged_share": float(flagged[m].mean()),
                }
            )
    return pd.DataFrame(
        out, columns=["segment", "value", "rows", "base_rate", "roc_auc", "flagged_share"]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_table_matches_grouping_by_printed_labels(seed):
    from models.evaluation import segment_table, segment_values

    rng = np.random.default_rng(seed)
    n = 600
    y = rng.integers(0, 2, n)
    score = rng.random(n)
    flagged = rng.random(n) < 0.1
    course = pd.Series(rng.choice(["c1", "c2", "c3", "rare"], n, p=[0.4, 0.3, 0.29, 0.01]))
    band = pd.Series(rng.choice(["a", "b", None], n), dtype="str")
    number = pd.Series(rng.normal(size=n)).where(rng.random(n) > 0.1)
    segments = {
        "course_id": course,
        "attr_band": band.astype("category"),
        "attr_score": segment_values(number, max_values=12, bins=4),
        "attr_small": pd.Series(rng.integers(0, 3, n)),
    }
    expected = _segment_table_by_strings(y, score, flagged, segments, 30)
    got = segment_table(y, score, flagged, segments, 30)
    pd.testing.assert_frame_equal(got, expected)
