"""The served models: refit on every labelled snapshot, calibrated out of sample, and the
champion choice between LightGBM, logistic regression and the rule."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from models.champion import train_champion
from models.frames import synthetic_feature_frame
from models.linear import LinearDropoutModel
from models.model import ModelMismatch
from models.promotion import choose_champion, unseen_by_champion
from models.split import split_by_time
from models.train import FitInfo, fit_models, refit_served, scaled_trees
from models.tuning import study_trials, tune_lightgbm, tuned_config

FAST = {
    "model": {
        "num_threads": 1,
        "num_boost_round": 150,
        "early_stopping_rounds": 15,
        "calibration_folds": 3,
        "tuning": {"n_trials": 3},
    },
    "evaluation": {"min_segment_size": 10},
}


@pytest.fixture(scope="module")
def config():
    return load_config(overrides=FAST)


@pytest.fixture(scope="module")
def frame(config):
    return synthetic_feature_frame(1200, config, seed=5)


@pytest.fixture(scope="module")
def run(frame, config):
    return train_champion(frame, config)


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label"].notna()]


def test_served_model_learns_from_every_labelled_snapshot(run, frame):
    info = run.served.info
    rows = labelled(frame)
    assert info.rows == len(rows) > run.split.summary.train.rows
    assert info.course_runs == rows["course_id"].nunique()
    assert set(info.runs) == set(rows["course_id"])
    assert info.positives == int(rows["label"].sum())
    assert run.served.model.metadata["served_rows"] == len(rows)
    assert f"{info.rows:,} labelled snapshots" in info.describe()


def test_trees_scale_with_the_data(run):
    info = run.served.info
    expected = round(info.evaluated_trees * info.rows / info.evaluated_train_rows)
    assert info.trees == expected == run.served.model.booster.num_trees()
    assert info.trees > info.evaluated_trees
    assert scaled_trees(100, 300, 100) == 300 and scaled_trees(1, 1, 1000) == 1


def test_calibration_is_cross_fitted_by_course_run(run, frame, config):
    info = run.served.info
    assert info.calibration_folds == min(
        config.model.served_calibration_folds, labelled(frame)["course_id"].nunique()
    )
    assert info.calibration in config.model.calibration_methods
    # the selection scores come from out-of-fold margins: every candidate has finite scores
    for method in config.model.calibration_methods:
        assert math.isfinite(info.calibration_selection[method]["brier"])


@pytest.mark.parametrize("folds", [0, 3])
def test_served_calibration_folds_are_configured(run, frame, config, folds):
    chosen = load_config(
        overrides={**FAST, "model": {**FAST["model"], "served_calibration_folds": folds}}
    )
    served = refit_served(frame, run.fitted, chosen)
    assert served.info.calibration_folds == folds
    if folds == 0:  # no cross-fit: the evaluated (validation-slice) calibration is kept
        assert served.model.calibrator is run.fitted.model.calibrator
    else:
        assert served.model.calibrator is not run.fitted.model.calibrator


def test_one_served_calibration_fold_is_refused():
    with pytest.raises(ValueError, match="served_calibration_folds"):
        load_config(overrides={"model": {"served_calibration_folds": 1}})


def test_single_run_keeps_the_evaluated_calibration(frame, config):
    one = frame[frame["course_id"] == frame["course_id"].iloc[0]]
    split = split_by_time(
        frame, config.split, config.snapshots.horizon_days
    )  # evaluated on the full frame
    train, validation, _ = split.frames(frame)
    fitted = fit_models(train, validation, config)
    served = refit_served(one, fitted, config)
    assert served.info.calibration_folds == 0
    assert served.model.calibrator is fitted.model.calibrator


def test_fit_info_is_frozen_and_reads_like_the_former_dict(run):
    info = run.fitted.info
    assert isinstance(info, FitInfo)
    assert info["best_iteration"] == info.best_iteration
    assert info.train_rows == run.split.summary.train.rows
    with pytest.raises(AttributeError):
        info.best_iteration = 1  # type: ignore[misc]


def test_logistic_contributions_sum_to_its_logit(run, frame):
    model = run.served.logistic
    rows = labelled(frame).head(200)
    contrib = model.contributions(rows)
    assert list(contrib.columns) == [*model.feature_names, "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_margin(rows), rtol=1e-9, atol=1e-9)
    prob = 1 / (1 + np.exp(-model.raw_margin(rows)))
    np.testing.assert_allclose(model.predict_proba(rows), prob, rtol=1e-9)
    # the pipeline's own probabilities agree
    np.testing.assert_allclose(
        model.predict_proba(rows), model.baseline.predict_proba(rows), rtol=1e-7
    )


def test_logistic_contribution_is_coefficient_times_standardised_deviation(run, frame):
    model = run.served.logistic
    rows = labelled(frame)
    name = "events_28d"
    contrib = model.contributions(rows.head(50))[name]
    numeric = model.baseline.pipeline.named_steps["columns"].named_transformers_["num"]
    scaler = numeric.named_steps["scale"]
    numeric_names = [c for c in model.feature_names if model.feature_types[c] != "category"]
    j = numeric_names.index(name)
    coef = model.baseline.pipeline.named_steps["logistic"].coef_[0][j]
    values = rows.head(50)[name].to_numpy(dtype=float)
    expected = coef * (values - scaler.mean_[j]) / scaler.scale_[j]
    if not rows[name].isna().any():
        np.testing.assert_allclose(contrib, expected, rtol=1e-9)


def test_logistic_model_checks_its_inputs_and_pickles(run, frame):
    model = run.served.logistic
    rows = labelled(frame).head(20)
    with pytest.raises(Exception, match="missing columns: events_28d"):
        model.predict_proba(rows.drop(columns=["events_28d"]))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(rows), model.predict_proba(rows))
    assert isinstance(model, LinearDropoutModel) and model.kind == "logistic"
    assert model.feature_importance().index[0] in model.feature_names
    assert model.reference.get("features")


@pytest.mark.parametrize(
    ("values", "allow", "scorer", "loses", "words"),
    [
        ({"model": 0.10, "logistic": 0.08, "rule": 0.05}, True, "model", False, "beats"),
        ({"model": 0.047, "logistic": 0.051, "rule": 0.03}, True, "logistic", True, "LOSES"),
        ({"model": 0.047, "logistic": 0.051, "rule": 0.03}, False, "model", True, "LightGBM only"),
        ({"model": 0.04, "logistic": 0.03, "rule": 0.05}, True, "model", True, "the rule"),
    ],
)
def test_choose_champion(values, allow, scorer, loses, words):
    choice = choose_champion(values, "pr_auc", allow_logistic=allow)
    assert choice.scorer == scorer
    assert choice.model_loses is loses
    assert choice.value == values[scorer]
    assert words in choice.message or (
        words == "LightGBM only" and "allow_logistic_champion: false" in choice.message
    )


def test_choose_champion_respects_min_improvement():
    values = {"model": 0.050, "logistic": 0.051, "rule": 0.03}
    assert choose_champion(values, "pr_auc", True, min_improvement=0.01).scorer == "model"
    assert choose_champion(values, "pr_auc", True, min_improvement=0.0).scorer == "logistic"


def test_tuning_is_time_ordered_reproducible_and_gives_plain_trials(frame, config):
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    train, validation, _ = split.frames(frame)
    first = tune_lightgbm(train, validation, config, n_trials=3)
    second = tune_lightgbm(train, validation, config, n_trials=3)
    assert first.best_params == second.best_params
    trials = study_trials(first)
    assert len(trials) == 3
    assert {"number", "value", "state", "params", "best_iteration", "seconds"} <= set(trials[0])
    assert set(trials[0]["params"]) == set(config.model.tuning.space)
    tuned = tuned_config(config, first.best_params)
    assert tuned.model.params["num_leaves"] == first.best_params["num_leaves"]
    assert tuned.model.params["objective"] == config.model.params["objective"]


def test_rows_unseen_by_a_champion(run, frame):
    meta = run.served.model.metadata
    rows = labelled(frame)
    assert not unseen_by_champion(rows["as_of"], meta).any()  # it learned from all of them
    later = rows["as_of"] + pd.Timedelta(days=7)
    unseen = unseen_by_champion(later, meta)
    assert unseen.any() and (later[unseen] > rows["as_of"].max()).all()
    assert unseen_by_champion(rows["as_of"], {}).all()  # an old champion: no record, all rows


def test_served_logistic_starts_from_the_evaluated_coefficients(run, frame, config):
    from models.baselines import LogisticBaseline

    rows = labelled(frame)
    names, types = run.fitted.model.feature_names, run.fitted.model.feature_types
    cold = LogisticBaseline(names, types).fit(rows, config)
    warm = LogisticBaseline(names, types).fit(rows, config, start=run.fitted.logistic)
    iterations = [b.pipeline.named_steps["logistic"].n_iter_.max() for b in (cold, warm)]
    assert iterations[1] < iterations[0]  # the start is close to the optimum
    # the same optimum, up to the solver's tolerance (lbfgs stops on the gradient, which the
    # sampled negatives' weights scale): risks within a few points, the same order
    warm_risk, cold_risk = warm.predict_proba(rows), cold.predict_proba(rows)
    np.testing.assert_allclose(warm_risk, cold_risk, atol=0.03)
    assert np.median(np.abs(warm_risk - cold_risk)) < 2e-3
    assert pd.Series(warm_risk).corr(pd.Series(cold_risk), method="spearman") > 0.999


def test_refit_only_the_chosen_candidate(run, frame, config):
    served = refit_served(frame, run.fitted, config, scorers=("logistic",))
    assert served.model is None and served.info.refitted == ("logistic",)
    assert served.candidate("logistic").metadata["served_rows"] == len(labelled(frame))
    assert "best_iteration" not in served.logistic.metadata
    assert served.info.trees == 0 and "logistic regression" in served.info.describe()
    with pytest.raises(ValueError, match="not refit"):
        served.candidate("model")
    trees_only = refit_served(frame, run.fitted, config, scorers=("model",))
    assert trees_only.logistic is None and trees_only.info.trees == run.served.info.trees
    with pytest.raises(ValueError, match="scorers to refit"):
        refit_served(frame, run.fitted, config, scorers=("rule",))


def test_served_models_ignore_the_excluded_features(frame):
    excluded = ("days_since_start", "attr_age_band")
    config = load_config(
        overrides={**FAST, "model": {**FAST["model"], "exclude_features": excluded}}
    )
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    train, validation, _ = split.frames(frame)
    served = refit_served(frame, fit_models(train, validation, config), config)
    rows = labelled(frame).head(50)
    for model in (served.model, served.logistic):
        assert not set(excluded) & set(model.feature_names)
        assert model.ignored_features == excluded
        # The whole frame, excluded columns included, is scored; a column nobody knows is not.
        assert np.isfinite(model.predict_proba(rows)).all()
        with pytest.raises(ModelMismatch, match="not_a_feature"):
            model.predict_proba(rows.assign(not_a_feature=1.0))
    restored = pickle.loads(pickle.dumps(served.model))
    assert restored.ignored_features == excluded
