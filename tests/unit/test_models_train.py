"""Training: reproducible, beats the rule on a planted signal, a strict input contract."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from configs.schema import ConfigError
from features.catalog import feature_names
from models.baselines import rule_score
from models.frames import synthetic_feature_frame
from models.model import DropoutModel, ModelMismatch
from models.promotion import (
    KEPT_NOT_BETTER,
    PROMOTED_BETTER,
    PROMOTED_INCOMPATIBLE,
    PROMOTED_NO_CHAMPION,
    decide_promotion,
)
from models.reference import psi_against
from models.split import split_by_time
from models.train import evaluate_models, fit_models, model_inputs

FAST = {
    "model": {"num_threads": 1, "num_boost_round": 150, "early_stopping_rounds": 15},
    "evaluation": {"min_segment_size": 10},
}


@pytest.fixture(scope="module")
def config():
    return load_config(overrides=FAST)


@pytest.fixture(scope="module")
def data(config):
    frame = synthetic_feature_frame(1500, config, seed=11)
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    return frame, split


@pytest.fixture(scope="module")
def fitted(data, config):
    frame, split = data
    train, validation, _ = split.frames(frame)
    return fit_models(train, validation, config)


def test_same_data_and_config_give_the_same_metrics(data, config, fitted):
    frame, split = data
    train, validation, test = split.frames(frame)
    again = fit_models(train, validation, config)
    first = evaluate_models(fitted, test, config)
    second = evaluate_models(again, test, config)
    for scorer in first:
        assert first[scorer].metrics == second[scorer].metrics
    np.testing.assert_array_equal(fitted.model.predict_proba(test), again.model.predict_proba(test))


def test_model_beats_the_rule_and_records_calibration(data, config, fitted):
    frame, split = data
    ev = evaluate_models(fitted, frame[split.test], config)
    assert ev["model"].metrics["pr_auc"] > ev["rule"].metrics["pr_auc"] + 0.05
    assert ev["model"].metrics["roc_auc"] > 0.75
    assert fitted.model.metadata["calibration"] in ("isotonic", "sigmoid")
    assert fitted.info["calibration"] == fitted.model.calibrator.method
    assert fitted.info["scale_pos_weight"] > 1  # balanced class weights on a rare label
    # Calibration repairs the inflated raw probabilities of the weighted model.
    sel = fitted.info["calibration_selection"]
    assert sel[fitted.info["calibration"]]["brier"] < sel["raw"]["brier"]


def test_model_inputs_are_catalogue_then_attrs(data, config, fitted):
    frame, _ = data
    names = model_inputs(frame, config)
    catalogue = feature_names(config.features)
    assert names[: len(catalogue)] == catalogue
    assert names[len(catalogue) :] == ["attr_age_band", "attr_prior_courses"]
    assert fitted.model.feature_types["attr_age_band"] == "category"
    assert fitted.model.feature_types["attr_prior_courses"] == "float"
    assert fitted.model.categories["attr_age_band"] == ["18-25", "26-35", "36+"]
    no_attrs = load_config(overrides={**FAST, "features": {"include_attrs": False}})
    assert model_inputs(frame, no_attrs) == catalogue


@pytest.mark.parametrize(
    "exclude", [("days_since_start",), ("attr_age_band", "course_elapsed_share")]
)
def test_excluded_features_are_no_model_input(data, exclude):
    frame, split = data
    config = load_config(
        overrides={**FAST, "model": {**FAST["model"], "exclude_features": exclude}}
    )
    names = model_inputs(frame, config)
    assert not set(exclude) & set(names)
    assert len(names) == len(model_inputs(frame, load_config(overrides=FAST))) - len(exclude)
    train, validation, test = split.frames(frame)
    fitted = fit_models(train, validation, config)
    assert fitted.model.feature_names == names
    assert fitted.logistic.feature_names == names
    # Every scorer still scores the whole test frame, excluded columns included.
    for evaluation in evaluate_models(fitted, test, config).values():
        assert 0.5 < evaluation.metrics["roc_auc"] <= 1.0


@pytest.mark.parametrize(
    "exclude, message",
    [(("no_such_feature",), "no_such_feature"), (("attr_nope", "days_since_start"), "attr_nope")],
)
def test_excluding_an_unknown_feature_is_a_config_error(data, exclude, message):
    frame, _ = data
    config = load_config(
        overrides={**FAST, "model": {**FAST["model"], "exclude_features": exclude}}
    )
    with pytest.raises(ConfigError, match=message):
        model_inputs(frame, config)


def test_contributions_sum_to_the_raw_margin(data, fitted):
    frame, split = data
    rows = frame[split.test].head(50)
    contrib = fitted.model.contributions(rows)
    assert list(contrib.columns) == [*fitted.model.feature_names, "bias"]
    assert contrib.index.equals(rows.index)
    np.testing.assert_allclose(contrib.sum(axis=1), fitted.model.raw_margin(rows), atol=1e-9)


def test_model_pickles_and_predicts_the_same(data, fitted):
    frame, split = data
    rows = frame[split.test].head(200)
    restored: DropoutModel = pickle.loads(pickle.dumps(fitted.model))
    np.testing.assert_array_equal(restored.predict_proba(rows), fitted.model.predict_proba(rows))
    assert restored.predict_proba(rows).shape == (len(rows),)
    assert ((restored.predict_proba(rows) > 0) & (restored.predict_proba(rows) < 1)).all()


@pytest.mark.parametrize(
    "change, kind, column",
    [
        (lambda f: f.drop(columns=["events_7d"]), "missing", "events_7d"),
        (lambda f: f.assign(attr_new=1.0), "extra", "attr_new"),
        (lambda f: f.assign(events_7d=f["events_7d"].astype(str)), "wrong_types", "events_7d"),
    ],
)
def test_mismatched_frames_are_refused_naming_the_column(data, fitted, change, kind, column):
    frame, split = data
    rows = change(frame[split.test].head(20))
    with pytest.raises(ModelMismatch, match=column) as info:
        fitted.model.predict_proba(rows)
    assert any(column in item for item in getattr(info.value, kind))


def test_unseen_category_is_scored_as_missing(data, fitted):
    frame, split = data
    rows = frame[split.test].head(20).copy()
    rows["attr_age_band"] = pd.Series(["99+"] * len(rows), index=rows.index, dtype="str")
    prepared = fitted.model.prepare(rows)
    assert prepared["attr_age_band"].isna().all()
    assert np.isfinite(fitted.model.predict_proba(rows)).all()


def test_reference_supports_drift_checks(data, config, fitted):
    frame, split = data
    ref = fitted.model.reference
    assert 0 < len(ref["features"]) <= config.drift.top_features
    assert "attr_age_band" not in ref["features"], "attr values must not travel in the reference"
    assert set(ref["score"]) >= {"edges", "shares", "missing_share"}
    train = frame[split.train]
    # (a run-centred entry summarises value - run median: `models.drift.centre_by_run`)
    name = next(
        n for n, e in ref["features"].items() if e["kind"] == "numeric" and not e.get("centred")
    )
    same = psi_against(ref["features"][name], train[name], 1e-4)
    shifted = psi_against(ref["features"][name], train[name] * 3 + 10, 1e-4)
    assert same < 0.01 < config.drift.psi_threshold < shifted


def test_rule_orders_by_recency_then_missed_deadlines(config):
    frame = pd.DataFrame(
        {
            "days_since_last_activity": [1.0, 10.0, 10.0, np.nan, 3.0],
            "days_since_last_submission": [20.0, 12.0, 30.0, np.nan, 2.0],
            "days_since_enrolment": [40.0, 40.0, 40.0, 50.0, 40.0],
            "deadlines_missed": [0.0, 1.0, 3.0, 0.0, 0.0],
        }
    )
    score = rule_score(frame, config.evaluation)
    # Never active (row 3) is silent since enrolment (50 days); rows 1 and 2 tie on 10 days of
    # silence (the latest sign of life) and row 2 missed more deadlines.
    assert np.argsort(-score).tolist() == [3, 2, 1, 4, 0]


@pytest.mark.parametrize(
    "challenger, champion, exists, compatible, promote, reason",
    [
        (0.30, None, False, True, True, PROMOTED_NO_CHAMPION),
        (0.40, 0.30, True, True, True, PROMOTED_BETTER),
        (0.20, 0.30, True, True, False, KEPT_NOT_BETTER),
        (0.30, 0.30, True, True, False, KEPT_NOT_BETTER),
        (0.10, None, True, False, True, PROMOTED_INCOMPATIBLE),
        (float("nan"), 0.30, True, True, False, KEPT_NOT_BETTER),
    ],
)
def test_promotion_rule(challenger, champion, exists, compatible, promote, reason):
    decision = decide_promotion("pr_auc", challenger, champion, 0.0, exists, compatible)
    assert decision.promote is promote
    assert decision.reason == reason


def test_promotion_needs_more_than_the_minimum_improvement():
    assert not decide_promotion("pr_auc", 0.305, 0.30, 0.01, True).promote
    assert decide_promotion("pr_auc", 0.32, 0.30, 0.01, True).promote
