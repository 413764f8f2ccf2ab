"""Learning from every dropout and a draw of the other snapshots (models.sampling), and the
share codes the drift reference counts per course week and run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from configs.schema import DriftConfig
from features.catalog import LABEL_COLUMN
from models.baselines import LogisticBaseline
from models.drift import _add_run_strata, _add_strata, full_shares
from models.frames import synthetic_feature_frame
from models.model import cast_features, infer_feature_types, training_categories
from models.reference import share_codes, share_slots, summarise_categorical, summarise_numeric
from models.sampling import learning_rows
from models.train import booster_params, fit_booster, lgb_params, model_inputs


def model_config(ratio: float, seed: int = 1):
    return load_config(overrides={"model": {"negatives_per_positive": ratio, "seed": seed}}).model


def labels(n: int, positives: int) -> np.ndarray:
    y = np.zeros(n, dtype=int)
    y[np.random.default_rng(3).choice(n, positives, replace=False)] = 1
    return y


@pytest.mark.parametrize(
    ("n", "positives", "ratio"),
    [(1000, 50, 0), (1000, 100, 10), (1000, 0, 5), (500, 500, 3)],
)
def test_all_rows_when_there_is_nothing_to_drop(n, positives, ratio):
    rows = learning_rows(labels(n, positives), model_config(ratio))
    assert not rows.sampled
    assert rows.negative_share == 1.0
    np.testing.assert_array_equal(rows.positions, np.arange(n))


@pytest.mark.parametrize(("n", "positives", "ratio"), [(20000, 400, 5), (20000, 200, 10)])
def test_every_dropout_and_about_ratio_others_per_dropout(n, positives, ratio):
    y = labels(n, positives)
    rows = learning_rows(y, model_config(ratio))
    kept = y[rows.positions]
    assert rows.sampled
    assert kept.sum() == positives  # every dropout stays
    negatives = len(kept) - positives
    assert abs(negatives - ratio * positives) < 0.15 * ratio * positives
    assert rows.negative_share == pytest.approx(negatives / (n - positives))
    # Each kept negative stands for 1 / share of them: the weighted count is all the negatives.
    assert rows.kept_weights(y).sum() == pytest.approx(n, rel=1e-9)
    assert np.all(np.diff(rows.positions) > 0)


def test_the_draw_is_seeded():
    y = labels(20000, 300)
    first = learning_rows(y, model_config(5, seed=1)).positions
    np.testing.assert_array_equal(first, learning_rows(y, model_config(5, seed=1)).positions)
    assert not np.array_equal(first, learning_rows(y, model_config(5, seed=2)).positions)


def test_lightgbm_weights_make_up_for_the_dropped_negatives():
    y = labels(20000, 200)
    config = load_config(overrides={"model": {"negatives_per_positive": 5}})
    params, rows = booster_params(config, y)
    kept = y[rows.positions]
    assert params["scale_pos_weight"] == pytest.approx((len(kept) - 200) / 200)
    unweighted = load_config(
        overrides={"model": {"negatives_per_positive": 5, "class_weight": "none"}}
    )
    params, rows = booster_params(unweighted, y)
    assert params["scale_pos_weight"] == pytest.approx(rows.negative_share)
    assert "scale_pos_weight" not in lgb_params(unweighted, 10, 100)


@pytest.fixture(scope="module")
def rare_frame():
    """Snapshots with few dropouts: about 2 % of the labelled rows."""
    config = load_config()
    frame = synthetic_feature_frame(1500, config, seed=11)
    frame = frame[frame[LABEL_COLUMN].notna()].reset_index(drop=True)
    rng = np.random.default_rng(0)
    dropouts = np.flatnonzero(frame[LABEL_COLUMN].to_numpy() == 1)
    keep = np.ones(len(frame), bool)
    keep[rng.choice(dropouts, max(len(dropouts) - len(frame) // 50, 0), replace=False)] = False
    return frame[keep].reset_index(drop=True)


def test_the_trees_learn_from_the_kept_rows(rare_frame):
    config = load_config(overrides={"model": {"negatives_per_positive": 4, "num_boost_round": 20}})
    names = model_inputs(rare_frame, config)
    types = infer_feature_types(rare_frame, names)
    x = cast_features(rare_frame, names, types, training_categories(rare_frame, types))
    y = rare_frame[LABEL_COLUMN].to_numpy().astype(int)
    _, info = fit_booster(x, y, x, y, config)
    assert info["learned_rows"] == len(learning_rows(y, config.model).positions) < len(y) / 3


def test_weighted_logistic_regression_keeps_the_base_rate(rare_frame):
    config = load_config(overrides={"model": {"negatives_per_positive": 3}})
    names = model_inputs(rare_frame, config)
    types = infer_feature_types(rare_frame, names)
    base_rate = rare_frame[LABEL_COLUMN].mean()
    assert learning_rows(rare_frame[LABEL_COLUMN].to_numpy(), config.model).sampled
    sampled = LogisticBaseline(names, types).fit(rare_frame, config)
    # Unweighted, a fit on 1 dropout in 4 would predict about 25 %; weighted, the base rate.
    assert sampled.predict_proba(rare_frame).mean() == pytest.approx(base_rate, rel=0.25)


NUMBERS = [0.5, np.nan, 3.0, 7.5, 7.5, 10.0, np.nan, -2.0, 4.0]
WORDS = ["a", "b", None, "c", "a", "zz", "b", None, "a"]


@pytest.mark.parametrize(
    ("entry", "values"),
    [
        (summarise_numeric([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3), NUMBERS),
        (summarise_numeric([], 3), NUMBERS),
        (summarise_categorical(["a", "b", "c", "a"]), WORDS),  # "zz": unseen
    ],
)
def test_share_codes_count_to_the_same_shares(entry, values):
    codes = share_codes(entry, values)
    assert codes.max() < share_slots(entry)
    counted = np.bincount(codes, minlength=share_slots(entry)) / len(values)
    np.testing.assert_allclose(counted, full_shares(entry, values))


def test_strata_per_course_week_and_run_match_a_direct_count():
    rng = np.random.default_rng(4)
    n = 3000
    values = pd.Series(np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)))
    buckets = rng.integers(-1, 5, n)
    runs = pd.Series(rng.choice(["r1", "r2", "r3", "tiny"], n, p=[0.4, 0.3, 0.29, 0.01]))
    entry = summarise_numeric(values, 5)
    cfg = DriftConfig(min_run_rows=20, max_stage_runs=2)
    _add_strata(entry, values, buckets, 5)
    _add_run_strata(entry, values, buckets, runs, 5, cfg)
    for b in range(5):
        mine = buckets == b
        assert entry["stage_rows"][b] == mine.sum()
        np.testing.assert_allclose(entry["by_stage"][b], full_shares(entry, values[mine]))
        sizes = runs[mine].value_counts()
        largest = sorted(sizes[sizes >= 20].index[:2])  # the two largest, in name order
        expected = [
            [float(sizes[r]), *full_shares(entry, values[mine & (runs == r).to_numpy()])]
            for r in largest
        ]
        np.testing.assert_allclose(entry["stage_runs"][b], expected)


def test_backtest_rows_the_model_never_saw():
    from models.backtest import unseen_metrics, unseen_rows

    as_of = pd.to_datetime(["2014-01-06", "2014-01-06", "2014-03-03", "2014-03-03"] * 2, utc=True)
    replay = pd.DataFrame(
        {
            "course_id": ["A", "B", "A", "B"] * 2,
            "as_of": as_of,
            "label": [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, np.nan, 0.0],
            "risk": [0.9, 0.2, 0.1, 0.8, 0.3, 0.7, 0.5, 0.1],
        }
    )
    unseen = unseen_rows(replay, ["A"], "2014-02-01T00:00:00+00:00")
    # Run B is new; run A's March weeks come after the last snapshot the model learned from.
    assert unseen.tolist() == [False, True, True, True, False, True, True, True]
    metrics = unseen_metrics(replay, unseen)
    assert metrics["unseen_rows"] == 6 and metrics["unseen_runs"] == 2
    assert metrics["unseen_roc_auc"] == pytest.approx(1.0)  # its labelled rows rank perfectly
