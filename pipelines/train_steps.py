"""Training, one step sequence for `notalone train`, the train flow and the tests.

    validate   the contract check: a model learnt from a broken source would be silently wrong
    features   every weekly snapshot with labels (from the feature cache when unchanged)
    split      by time: train on earlier course runs or weeks, test on later ones
    fit        LightGBM and the baselines (the curator's rule, logistic regression)
    evaluate   every scorer on the same test rows
    log        one MLflow run: params, config, fingerprint, metrics, plots, the model
    register   the version, alias `challenger`, and the promotion rule

Promotion: the new version always gets the alias `challenger`; it also gets `champion` when there
is none, when the champion cannot score the current features, or when it beats the champion's
`evaluation.promote_metric` with the champion re-evaluated on the very same test rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from configs.schema import Config
from features.catalog import LABEL_COLUMN
from models.evaluation import Evaluation, ranking_metrics
from models.model import ModelMismatch
from models.promotion import PromotionDecision, decide_promotion
from models.split import TimeSplit, split_by_time
from models.train import FittedModels, config_hash, evaluate_models, fit_models
from pipelines import mlflow_store as store
from pipelines.checks import check_source
from pipelines.cluster_training import ClusterBoosterFitter
from pipelines.feature_cache import source_fingerprint, workspace_features
from pipelines.run_record import build_run_record, window
from pipelines.runner import Progress, Steps
from pipelines.settings import Workspace
from pipelines.summaries import json_safe


def features_step(
    source: str | Path,
    config: Config,
    duplicate_events: bool | None,
    workspace: Workspace,
    progress: Progress,
) -> pd.DataFrame:
    """Every weekly snapshot of the source with labels (from the feature cache when unchanged)."""
    cached = workspace_features(
        source, config, None, duplicate_events, lambda m: progress(f"features: {m}"), workspace
    )
    progress(f"features: {len(cached.frame):,} rows" + (" (cached)" if cached.hit else ""))
    return cached.frame


def split_step(frame: pd.DataFrame, config: Config) -> TimeSplit:
    return split_by_time(frame, config.split, config.snapshots.horizon_days)


def fit_step(
    frame: pd.DataFrame, split: TimeSplit, config: Config, dask: str | None = None
) -> FittedModels:
    """Fit on the split's training rows; with `dask` and at least `dask.train_min_rows` of them,
    the trees grow on that cluster (lightgbm.dask), the rest (calibration, baselines) as ever."""
    train, validation, test = split.frames(frame)
    fitter = None
    if dask and len(train) >= config.dask.train_min_rows:
        fitter = ClusterBoosterFitter(dask)
    metadata = {
        "train_window": [split.summary["train"]["as_of_min"], split.summary["train"]["as_of_max"]],
        "validation_window": [
            split.summary["validation"]["as_of_min"],
            split.summary["validation"]["as_of_max"],
        ],
        "test_window": [split.summary["test"]["as_of_min"], split.summary["test"]["as_of_max"]],
        "horizon_days": config.snapshots.horizon_days,
        "split_method": config.split.method,
    }
    return fit_models(train, validation, config, metadata, booster_fitter=fitter)


def evaluate_step(
    fitted: FittedModels, frame: pd.DataFrame, split: TimeSplit, config: Config
) -> dict[str, Evaluation]:
    return evaluate_models(fitted, frame[split.test], config)


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_uri: str
    experiment: str
    experiment_id: str


def log_step(
    source: str | Path,
    frame: pd.DataFrame,
    split: TimeSplit,
    fitted: FittedModels,
    evaluations: dict[str, Evaluation],
    *,
    config: Config,
    workspace: Workspace,
    experiment: str | None,
) -> LoggedRun:
    """One MLflow run with params, config, fingerprint, metrics, plots and the model."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    client = store.connect(workspace)
    name = experiment or config.registry.experiment
    experiment_id = store.ensure_experiment(client, name, workspace)
    secret = store.workspace_secret(workspace)
    record = build_run_record(source, frame, split, fitted, evaluations, config, secret)
    # The source fingerprint lets `notalone demo` skip training on data the champion has seen.
    record.tags[store.SOURCE_FINGERPRINT_TAG] = source_fingerprint(source)
    example = store.masked_input_example(
        frame[split.test], fitted.model, config.evaluation.input_example_rows
    )
    run_id, model_uri = store.log_training_run(client, experiment_id, record, fitted.model, example)
    return LoggedRun(run_id, model_uri, name, experiment_id)


def register_step(
    logged: LoggedRun,
    evaluations: dict[str, Evaluation],
    frame: pd.DataFrame,
    split: TimeSplit,
    *,
    config: Config,
    workspace: Workspace,
) -> dict:
    """Register the version, alias it `challenger`, and apply the promotion rule.

    Crash safety: the version and the run are tagged with the decision first and the aliases move
    last, `champion` at the very end. A run killed at any point leaves the champion alias on a
    complete version whose promotion is recorded; a killed run's version at most lacks an alias.
    """
    client = store.connect(workspace)
    name = config.registry.model_name
    metric = config.evaluation.promote_metric
    challenger_value = evaluations["model"].metrics[metric]
    champion = store.alias_version(client, name, store.CHAMPION)
    version = store.register_version(
        client,
        name,
        logged.model_uri,
        logged.run_id,
        tags={
            "run_id": logged.run_id,
            metric: f"{challenger_value:.6f}",
            "test_window": window(split, "test"),
            "config_hash": config_hash(config),
        },
    )
    champion_value: float | None = None
    compatible = True
    if champion is not None:
        test = frame[split.test]
        try:
            champion_model = store.load_model(store.model_version_uri(name, champion))
            champion_prob = champion_model.predict_proba(test)
            y = test[LABEL_COLUMN].to_numpy().astype(int)
            champion_value = ranking_metrics(y, champion_prob)[metric]
        except (ModelMismatch, store.MlflowStoreError):
            compatible = False
    decision = decide_promotion(
        metric,
        challenger_value,
        champion_value,
        config.evaluation.min_improvement,
        champion_exists=champion is not None,
        champion_compatible=compatible,
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    version_tags = {
        "promotion_decision": "promoted" if decision.promote else "kept_champion",
        "promotion_reason": decision.reason,
        "compared_with_version": champion or "none",
        f"champion_{metric}_same_test": (
            "n/a" if champion_value is None else f"{champion_value:.6f}"
        ),
    }
    if decision.promote:
        version_tags.update({"promoted_by": "notalone train", "promoted_at": now})
    store.tag_version(client, name, version, version_tags)
    run_metrics = {f"challenger_{metric}": challenger_value}
    if champion_value is not None:
        run_metrics[f"champion_{metric}_same_test"] = champion_value
    store.tag_and_log_run(
        client,
        logged.run_id,
        run_metrics,
        {
            "registered_model": name,
            "registered_version": version,
            **{f"promotion.{k}": v for k, v in version_tags.items()},
        },
    )
    # The aliases move only now that the version and the run record everything (see above).
    store.set_alias(client, name, store.CHALLENGER, version)
    if decision.promote:
        store.set_alias(client, name, store.CHAMPION, version)
    return {
        "version": version,
        "aliases": store.version_aliases(client, name, version),
        "promoted": decision.promote,
        "decision": _decision_dict(decision, champion),
    }


def _decision_dict(decision: PromotionDecision, champion: str | None) -> dict:
    return {
        "promoted": decision.promote,
        "reason": decision.reason,
        "metric": decision.metric,
        "challenger": decision.challenger_value,
        "champion": decision.champion_value,
        "champion_version": champion,
    }


def train_steps(
    *,
    source: str | Path,
    config: Config,
    workspace: Workspace,
    steps: Steps,
    experiment: str | None = None,
    dask: str | None = None,
) -> dict[str, Any]:
    """Validate, build, split, fit, evaluate, log, register; returns what `notalone train --json`
    prints. `dask`: a scheduler address to grow the trees on (see `fit_step`)."""
    source = Path(source)
    duplicate_events = steps("validate", None, check_source, source, config, workspace, steps.say)
    frame = steps(
        "features",
        "features (all weekly snapshots)",
        features_step,
        source,
        config,
        duplicate_events,
        workspace,
        steps.say,
        io=True,
    )
    split = steps("split", "splitting by time", split_step, frame, config)
    sizes = split.summary
    fitted = steps(
        "fit",
        f"fitting on {sizes['train']['rows']:,} rows (validation {sizes['validation']['rows']:,})",
        fit_step,
        frame,
        split,
        config,
        dask,
    )
    evaluations = steps(
        "evaluate",
        f"evaluating on {sizes['test']['rows']:,} test rows",
        evaluate_step,
        fitted,
        frame,
        split,
        config,
    )
    logged = steps(
        "log",
        "logging the run to MLflow",
        log_step,
        source,
        frame,
        split,
        fitted,
        evaluations,
        config=config,
        workspace=workspace,
        experiment=experiment,
        io=True,
    )
    registered = steps(
        "register",
        "registering the model",
        register_step,
        logged,
        evaluations,
        frame,
        split,
        config=config,
        workspace=workspace,
        io=True,
    )
    name = config.registry.model_name
    return json_safe(
        {
            "run_id": logged.run_id,
            "experiment": logged.experiment,
            "model_name": name,
            "version": registered["version"],
            "aliases": registered["aliases"],
            "promoted": registered["promoted"],
            "promotion": registered["decision"],
            "model_uri": store.model_version_uri(name, registered["version"]),
            "calibration": fitted.info["calibration"],
            "best_iteration": fitted.info["best_iteration"],
            "split": {k: sizes[k] for k in ("method", "boundary", "train", "validation", "test")},
            "metrics": {scorer: ev.metrics for scorer, ev in evaluations.items()},
            "seconds": dict(steps.seconds),
        }
    )
