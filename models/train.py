"""Fit the dropout model and the baselines on a time split (plain functions, no IO).

LightGBM learns on the training rows with early stopping on the validation slice; the class
imbalance is handled with `scale_pos_weight` (config `model.class_weight`), which inflates raw
probabilities, so the validation slice also fits the calibration. Every seed derives from
`model.seed` and LightGBM runs `deterministic` on a fixed number of threads: the same frame and
config give the same model and the same metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from configs.schema import Config, ConfigError
from features.catalog import LABEL_COLUMN, feature_names
from models.baselines import LogisticBaseline, RuleBaseline
from models.calibration import Calibrator, choose_calibrator
from models.drift import build_drift_reference
from models.evaluation import evaluate_scores
from models.linear import LinearDropoutModel
from models.model import (
    ATTR_PREFIX,
    CATEGORY,
    DropoutModel,
    ModelMismatch,
    cast_features,
    infer_feature_types,
    training_categories,
)
from models.sampling import LearningRows, learning_rows


def model_inputs(frame: pd.DataFrame, config: Config) -> list[str]:
    """Model input columns: the catalogue's features, then the attr_* columns present, less
    `model.exclude_features`."""
    names = feature_names(config.features)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ModelMismatch(
            "the feature frame lacks catalogue features: " + ", ".join(missing), missing=missing
        )
    attrs = []
    if config.features.include_attrs:
        attrs = [c for c in frame.columns if c.startswith(ATTR_PREFIX)]
    inputs = [*names, *attrs]
    excluded = set(config.model.exclude_features)
    unknown = sorted(excluded - set(inputs))
    if unknown:
        raise ConfigError(
            "model.exclude_features names columns that are not model inputs: "
            + ", ".join(unknown)
            + " (inputs are the catalogue's features and the attr_* columns of the source)"
        )
    kept = [n for n in inputs if n not in excluded]
    if not kept:
        raise ConfigError("model.exclude_features leaves the models no input")
    return kept


def predict_threads(config: Config) -> int:
    """LightGBM threads for predictions: `scoring.num_threads`, else every core.

    Training fixes its thread count for reproducible trees; a prediction or a row's
    contributions are the same whatever the count (2 threads: half the time here)."""
    return config.scoring.num_threads or os.cpu_count() or 1


def config_hash(config: Config) -> str:
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lgb_params(config: Config, n_pos: int, n_neg: int, negative_share: float = 1.0) -> dict:
    """LightGBM parameters from config, with the reproducibility settings forced on.

    `n_pos`, `n_neg`: the rows the trees learn from; `negative_share`: the share of the
    negatives those are (`models.sampling`), which an unweighted fit makes up for."""
    m = config.model
    params = dict(m.params)
    params.update(
        {
            "seed": m.seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": m.num_threads,
            "verbosity": -1,
            "metric": m.early_stopping_metric,
        }
    )
    if m.class_weight == "balanced" and n_pos:
        params["scale_pos_weight"] = n_neg / n_pos
    elif negative_share < 1.0:
        # Each kept negative stands for 1 / share of them: the same as weighting dropouts down.
        params["scale_pos_weight"] = negative_share
    return params


def booster_params(config: Config, y: np.ndarray) -> tuple[dict, LearningRows]:
    """LightGBM parameters for a fit on labels `y`, and the rows of `y` it learns from."""
    rows = learning_rows(y, config.model)
    kept = np.asarray(y)[rows.positions]
    n_pos = int(kept.sum())
    return lgb_params(config, n_pos, len(kept) - n_pos, rows.negative_share), rows


def learning_set(
    x: pd.DataFrame, y: np.ndarray, config: Config
) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """LightGBM parameters and the rows of (`x`, `y`) a fit learns from (`models.sampling`)."""
    params, rows = booster_params(config, y)
    y = np.asarray(y)
    if rows.sampled:
        return params, x.iloc[rows.positions], y[rows.positions]
    return params, x, y


@dataclass(frozen=True)
class FitInfo:
    """How the evaluated model was fitted (early stopping on the validation slice)."""

    best_iteration: int
    best_validation_score: float
    scale_pos_weight: float
    params: dict[str, Any]
    calibration: str
    calibration_selection: dict[str, dict[str, float]]
    timings: dict[str, float]
    n_features: int
    train_rows: int  # training rows of the split (the number of trees scales from these)
    learned_rows: int = 0  # of them, the rows the trees learned from (models.sampling)
    distributed: dict[str, Any] | None = None  # partitions and scheduler when fitted on Dask

    def __getitem__(self, key: str) -> Any:  # read like the former dict
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FittedModels:
    model: DropoutModel
    rule: RuleBaseline
    logistic: LogisticBaseline
    info: FitInfo


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL_COLUMN].to_numpy().astype(int)


def fit_booster(
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    valid_x: pd.DataFrame,
    valid_y: np.ndarray,
    config: Config,
) -> tuple[lgb.Booster, dict]:
    params, train_x, train_y = learning_set(train_x, train_y, config)
    train_set = lgb.Dataset(train_x, label=train_y, params=params, free_raw_data=True)
    valid_set = lgb.Dataset(valid_x, label=valid_y, reference=train_set, params=params)
    evals: dict = {}
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.model.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(
                config.model.early_stopping_rounds, first_metric_only=True, verbose=False
            ),
            lgb.record_evaluation(evals),
        ],
    )
    best = booster.best_iteration or booster.current_iteration()
    if best < booster.current_iteration():
        # Keep only the trees up to the best validation round in the stored model.
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    history = evals.get("validation", {}).get(config.model.early_stopping_metric, [])
    info = {
        "best_iteration": int(best),
        "best_validation_score": float(history[best - 1]) if history else float("nan"),
        "scale_pos_weight": float(params.get("scale_pos_weight", 1.0)),
        "params": params,
        "learned_rows": len(train_y),
    }
    return booster, info


def refit_booster(x: pd.DataFrame, y: np.ndarray, rounds: int, config: Config) -> lgb.Booster:
    """Train again on the rows with a fixed number of trees (no early stopping); the rows
    learned from are those of `models.sampling`."""
    params, x, y = learning_set(x, y, config)
    params.pop("metric", None)
    data = lgb.Dataset(x, label=y, params=params, free_raw_data=True)
    return lgb.train(params, data, num_boost_round=rounds)


class BoosterFitter(Protocol):
    """How the trees are grown: here (the default) or elsewhere (a cluster, pipelines/).

    `runs` are the rows' course-run ids: a distributed fitter partitions rows by run.
    """

    def fit(
        self,
        train_x: pd.DataFrame,
        train_y: np.ndarray,
        valid_x: pd.DataFrame,
        valid_y: np.ndarray,
        config: Config,
        runs: np.ndarray,
    ) -> tuple[lgb.Booster, dict]: ...

    def refit(
        self, x: pd.DataFrame, y: np.ndarray, rounds: int, config: Config, runs: np.ndarray
    ) -> lgb.Booster: ...


class LocalBoosterFitter:
    """The trees grown in this process (`fit_booster`, `refit_booster`)."""

    def fit(self, train_x, train_y, valid_x, valid_y, config, runs):
        return fit_booster(train_x, train_y, valid_x, valid_y, config)

    def refit(self, x, y, rounds, config, runs):
        return refit_booster(x, y, rounds, config)


def fit_models(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    config: Config,
    metadata: dict | None = None,
    booster_fitter: BoosterFitter | None = None,
) -> FittedModels:
    """Fit LightGBM + calibration, the rule and logistic regression on one split."""
    # BLAS/OpenMP pools (scikit-learn, numpy) use the same fixed thread count as LightGBM.
    with threadpool_limits(limits=config.model.num_threads):
        return _fit_models(
            train, validation, config, metadata, booster_fitter or LocalBoosterFitter()
        )


def _fit_models(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    config: Config,
    metadata: dict | None,
    booster_fitter: BoosterFitter,
) -> FittedModels:
    timings: dict[str, float] = {}
    names = model_inputs(train, config)
    types = infer_feature_types(train, names)
    seen = [train, validation] if config.model.refit_on_validation else [train]
    cat_cols = [c for c in names if types[c] == CATEGORY]
    cats = training_categories(pd.concat([part[cat_cols] for part in seen]), types)
    started = time.perf_counter()
    train_x = cast_features(train, names, types, cats)
    valid_x = cast_features(validation, names, types, cats)
    booster, info = booster_fitter.fit(
        train_x,
        _labels(train),
        valid_x,
        _labels(validation),
        config,
        train["course_id"].to_numpy(),
    )
    timings["lightgbm_s"] = time.perf_counter() - started

    started = time.perf_counter()
    raw_valid = np.asarray(
        booster.predict(valid_x, raw_score=True, num_threads=predict_threads(config))
    )
    calibrator = choose_calibrator(
        raw_valid,
        _labels(validation),
        methods=config.model.calibration_methods,
        folds=config.model.calibration_folds,
        select_by=config.model.calibration_select_by,
        seed=config.model.seed,
        clip=config.model.prob_clip,
        tie_break=config.model.tie_break,
    )
    timings["calibration_s"] = time.perf_counter() - started
    if config.model.refit_on_validation:
        # The validation slice is the latest labelled data: after it chose the number of trees
        # and fitted the calibration, the final trees learn from it too.
        started = time.perf_counter()
        booster = booster_fitter.refit(
            pd.concat([train_x, valid_x]),
            np.r_[_labels(train), _labels(validation)],
            info["best_iteration"],
            config,
            np.r_[train["course_id"].to_numpy(), validation["course_id"].to_numpy()],
        )
        timings["refit_s"] = time.perf_counter() - started
    model = DropoutModel(
        booster=booster,
        calibrator=calibrator,
        ignored_features=tuple(config.model.exclude_features),
        feature_names=names,
        feature_types=types,
        categories=cats,
        num_threads=predict_threads(config),
        metadata={
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config_hash": config_hash(config),
            "feature_names": names,
            "best_iteration": info["best_iteration"],
            "calibration": calibrator.method,
            "refit_on_validation": config.model.refit_on_validation,
            "run_id": None,
            **(metadata or {}),
        },
    )
    started = time.perf_counter()
    model.reference = build_drift_reference(
        model,
        train,
        validation,
        calibrator.transform(raw_valid),
        config,
        train_scores=model.predict_proba(train),
    )
    timings["reference_s"] = time.perf_counter() - started

    started = time.perf_counter()
    rule = RuleBaseline(config.evaluation).fit(validation, config.model.prob_clip)
    timings["rule_s"] = time.perf_counter() - started
    started = time.perf_counter()
    # Logistic regression needs no validation slice; it learns from the same rows as the final
    # trees (training + validation when the model is refit on both), so the comparison is fair.
    logistic_rows = pd.concat([train, validation]) if config.model.refit_on_validation else train
    logistic = LogisticBaseline(names, types).fit(logistic_rows, config)
    timings["logistic_s"] = time.perf_counter() - started
    fit_info = FitInfo(
        best_iteration=info["best_iteration"],
        best_validation_score=info["best_validation_score"],
        scale_pos_weight=info["scale_pos_weight"],
        params=info["params"],
        calibration=calibrator.method,
        calibration_selection=calibrator.selection,
        timings=timings,
        n_features=len(names),
        train_rows=len(train),
        learned_rows=int(info.get("learned_rows", len(train))),
        distributed=info.get("distributed"),
    )
    return FittedModels(model=model, rule=rule, logistic=logistic, info=fit_info)


SCORERS = ("model", "rule", "logistic")
SERVED_SCORERS = ("model", "logistic")  # the scorers a champion can be


def evaluate_models(fitted: FittedModels, test: pd.DataFrame, config: Config) -> dict:
    """`Evaluation` of the model and each baseline on the same test rows."""
    with threadpool_limits(limits=config.model.num_threads):
        return _evaluate_models(fitted, test, config)


def _evaluate_models(fitted: FittedModels, test: pd.DataFrame, config: Config) -> dict:
    y = _labels(test)
    out = {}
    out["model"] = evaluate_scores(test, y, fitted.model.predict_proba(test), config)
    out["rule"] = evaluate_scores(
        test, y, fitted.rule.predict_proba(test), config, rank_score=fitted.rule.score(test)
    )
    out["logistic"] = evaluate_scores(test, y, fitted.logistic.predict_proba(test), config)
    return out


# ---------------------------------------------------------------------------------------------
# The served model: the evaluated settings, refit on every labelled snapshot (issue 12)


@dataclass(frozen=True)
class ServedInfo:
    """What the served models learned from, and how their calibration stayed out of sample."""

    rows: int  # labelled snapshots the served models learned from
    positives: int
    learned_rows: int  # of them, the rows the trees and the logistic regression were fitted on
    course_runs: int
    runs: tuple[str, ...]
    as_of_min: str
    as_of_max: str
    trees: int  # best_iteration x rows / evaluated training rows
    evaluated_trees: int
    evaluated_train_rows: int
    calibration: str
    calibration_selection: dict[str, dict[str, float]]
    calibration_folds: int  # course-run groups of the cross-fit (0: the evaluated calibration)
    timings: dict[str, float]
    refitted: tuple[str, ...] = SERVED_SCORERS  # the scorers refit ("model", "logistic")

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["runs"] = list(self.runs)
        out["refitted"] = list(self.refitted)
        return out

    def describe(self) -> str:
        """One line for the training summary."""
        if "model" not in self.refitted:
            return (
                f"served logistic regression learned from {self.rows:,} labelled snapshots "
                f"({self.positives:,} dropouts) of {self.course_runs} course runs, "
                f"{self.as_of_min[:10]}..{self.as_of_max[:10]}{self._sampled()}"
            )
        return (
            f"served model learned from {self.rows:,} labelled snapshots ({self.positives:,} "
            f"dropouts) of {self.course_runs} course runs, {self.as_of_min[:10]}.."
            f"{self.as_of_max[:10]}{self._sampled()}; {self.trees} trees (evaluated: "
            f"{self.evaluated_trees} on "
            f"{self.evaluated_train_rows:,} rows); {self.calibration} calibration cross-fitted "
            f"over {self.calibration_folds} course-run folds"
        )

    def _sampled(self) -> str:
        if self.learned_rows >= self.rows:
            return ""
        return (
            f" (fitted on {self.learned_rows:,} of them: every dropout and a draw of the "
            "others, reweighted)"
        )


@dataclass
class ServedModels:
    """The models a champion is chosen from, each fitted on every labelled snapshot."""

    model: DropoutModel | None  # None when only the logistic regression was refit
    logistic: LinearDropoutModel | None  # None when only LightGBM was refit
    rule: RuleBaseline
    info: ServedInfo

    def candidate(self, scorer: str) -> DropoutModel | LinearDropoutModel:
        """The served model of a scorer name ("model" or "logistic")."""
        if scorer not in SERVED_SCORERS:
            raise ValueError(f"no served model for scorer {scorer!r} (model or logistic)")
        served = self.model if scorer == "model" else self.logistic
        if served is None:
            raise ValueError(
                f"the served {scorer!r} was not refit (refitted: {self.info.refitted})"
            )
        return served


def scaled_trees(best_iteration: int, n_rows: int, n_train_rows: int) -> int:
    """Trees for a refit on n_rows: the early-stopped count scaled with the data."""
    return max(1, round(best_iteration * n_rows / max(n_train_rows, 1)))


def crossfit_raw_scores(
    x: pd.DataFrame, y: np.ndarray, groups: np.ndarray, fitted: FittedModels, config: Config
) -> tuple[np.ndarray, int]:
    """Out-of-fold raw margins, the folds being whole course runs (GroupKFold).

    Each fold's trees learn from the other runs with the evaluated settings, their number scaled
    to the fold's rows; every row is scored by trees that never saw its course run. Returns the
    margins and the number of folds (0 when there are fewer than 2 runs: nothing to cross-fit).
    """
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    folds = min(config.model.served_calibration_folds, n_groups)
    if folds < 2:
        return np.full(len(y), np.nan), 0
    raw = np.empty(len(y), dtype=float)
    splitter = GroupKFold(n_splits=folds)
    for fit_idx, out_idx in splitter.split(x, y, groups):
        rounds = scaled_trees(fitted.info.best_iteration, len(fit_idx), fitted.info.train_rows)
        booster = refit_booster(x.iloc[fit_idx], y[fit_idx], rounds, config)
        raw[out_idx] = booster.predict(
            x.iloc[out_idx], raw_score=True, num_threads=predict_threads(config)
        )
    return raw, folds


def refit_served(
    frame: pd.DataFrame,
    fitted: FittedModels,
    config: Config,
    metadata: dict | None = None,
    scorers: tuple[str, ...] = ("model", "logistic"),
) -> ServedModels:
    """Refit LightGBM, logistic regression and the rule on every labelled row of `frame`;
    `scorers`: which of the first two (training refits only the chosen champion candidate:
    the other would be thrown away).

    `fitted` is the evaluated fit (`fit_models` on the split): its inputs, categories and
    number of trees carry over, the trees scaled by rows / evaluated training rows. The
    calibration is fitted on out-of-fold margins cross-fitted by course run, so it stays out of
    sample; with a single course run the evaluated (validation) calibration is kept.
    """
    with threadpool_limits(limits=config.model.num_threads):
        unknown = sorted(set(scorers) - set(SERVED_SCORERS))
        if unknown or not scorers:
            raise ValueError(f"scorers to refit: some of {SERVED_SCORERS}, not {scorers!r}")
        return _refit_served(frame, fitted, config, metadata, tuple(scorers))


def _refit_served(
    frame: pd.DataFrame,
    fitted: FittedModels,
    config: Config,
    metadata: dict | None,
    scorers: tuple[str, ...],
) -> ServedModels:
    timings: dict[str, float] = {}
    labelled = frame[frame[LABEL_COLUMN].notna()]
    evaluated = fitted.model
    names, types = evaluated.feature_names, evaluated.feature_types
    y = _labels(labelled)
    refit_trees = "model" in scorers
    trees = (
        scaled_trees(fitted.info.best_iteration, len(labelled), fitted.info.train_rows)
        if refit_trees
        else 0
    )
    runs = tuple(sorted(labelled["course_id"].astype(str).unique()))
    horizon = pd.Timedelta(days=config.snapshots.horizon_days)
    served_meta = {
        **evaluated.metadata,
        **(metadata or {}),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "served_from": "every labelled snapshot",
        "served_rows": len(labelled),
        "served_learned_rows": len(learning_rows(y, config.model).positions),
        "served_course_runs": len(runs),
        "learned_runs": list(runs),  # a backtest measures the runs it never saw apart
        # Rows with as_of + horizon at or before this were (or could have been) learned from:
        # a later comparison with this model is out of sample only after it.
        "trained_through": (labelled["as_of"].max() + horizon).isoformat(),
        "learned_as_of_max": labelled["as_of"].max().isoformat(),
    }
    model, calibrator, folds = None, None, 0
    if refit_trees:
        model, folds = _refit_trees(labelled, fitted, config, trees, served_meta, timings)
        calibrator = model.calibrator
    logistic = None
    if "logistic" in scorers:
        started = time.perf_counter()
        baseline = LogisticBaseline(names, types).fit(labelled, config, start=fitted.logistic)
        logistic, logistic_scores = LinearDropoutModel.from_baseline(
            baseline, labelled, config.model.prob_clip, predict_threads(config)
        )
        logistic.metadata = {**served_meta, "model_kind": "logistic", "calibration": "none"}
        logistic.ignored_features = tuple(config.model.exclude_features)
        logistic.metadata.pop("best_iteration", None)  # the evaluated trees' (not this model's)
        logistic.reference = build_drift_reference(
            logistic, labelled, labelled, logistic_scores, config, train_scores=logistic_scores
        )
        timings["logistic_s"] = time.perf_counter() - started
    rule = RuleBaseline(config.evaluation).fit(labelled, config.model.prob_clip)
    info = ServedInfo(
        rows=len(labelled),
        positives=int(y.sum()),
        learned_rows=served_meta["served_learned_rows"],
        course_runs=len(runs),
        runs=runs,
        as_of_min=labelled["as_of"].min().isoformat(),
        as_of_max=labelled["as_of"].max().isoformat(),
        trees=trees,
        evaluated_trees=fitted.info.best_iteration,
        evaluated_train_rows=fitted.info.train_rows,
        calibration=calibrator.method if calibrator is not None else "none",
        calibration_selection=calibrator.selection if calibrator is not None else {},
        calibration_folds=folds,
        timings=timings,
        refitted=tuple(s for s in SERVED_SCORERS if s in scorers),
    )
    return ServedModels(model=model, logistic=logistic, rule=rule, info=info)


def _refit_trees(
    labelled: pd.DataFrame,
    fitted: FittedModels,
    config: Config,
    trees: int,
    served_meta: dict,
    timings: dict[str, float],
) -> tuple[DropoutModel, int]:
    """The served LightGBM model: calibration cross-fitted by course run, then `trees` trees
    on every labelled row; returns it and the number of cross-fit folds."""
    evaluated = fitted.model
    names, types = evaluated.feature_names, evaluated.feature_types
    cat_cols = [c for c in names if types[c] == CATEGORY]
    cats = training_categories(labelled[cat_cols], types)
    x = cast_features(labelled, names, types, cats)
    y = _labels(labelled)
    groups = labelled["course_id"].astype(str).to_numpy()
    started = time.perf_counter()
    oof_raw, folds = crossfit_raw_scores(x, y, groups, fitted, config)
    timings["crossfit_s"] = time.perf_counter() - started
    started = time.perf_counter()
    if folds:
        calibrator: Calibrator = choose_calibrator(
            oof_raw,
            y,
            methods=config.model.calibration_methods,
            folds=config.model.calibration_folds,
            select_by=config.model.calibration_select_by,
            seed=config.model.seed,
            clip=config.model.prob_clip,
            tie_break=config.model.tie_break,
        )
    else:
        calibrator = evaluated.calibrator
    timings["calibration_s"] = time.perf_counter() - started
    started = time.perf_counter()
    booster = refit_booster(x, y, trees, config)
    timings["refit_s"] = time.perf_counter() - started
    model = DropoutModel(
        booster=booster,
        calibrator=calibrator,
        ignored_features=tuple(config.model.exclude_features),
        feature_names=names,
        feature_types=types,
        categories=cats,
        num_threads=predict_threads(config),
        metadata={
            **served_meta,
            "served_trees": trees,
            "best_iteration": fitted.info.best_iteration,
            "calibration": calibrator.method,
            "calibration_crossfit_folds": folds,
        },
    )
    started = time.perf_counter()
    # The reference holds this model's own scores of its training rows: the scores it will be
    # compared with come from it too. Out-of-fold scores come from the half-size fold models,
    # whose margins the cross-fitted calibration maps to a narrower spread: on OULAD 2014 they
    # made the score drift in 7 of 24 healthy weeks (own scores: 2, both in the last weeks of
    # the 2014B runs; docs/evaluation.md).
    scores = model.predict_proba(labelled)
    model.reference = build_drift_reference(
        model, labelled, labelled, scores, config, train_scores=scores
    )
    timings["reference_s"] = time.perf_counter() - started
    return model, folds
