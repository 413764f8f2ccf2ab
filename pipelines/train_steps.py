"""Training, one step sequence for `notalone train`, the train flow and the tests.

    validate   the contract check: a model learnt from a broken source would be silently wrong
    features   every weekly snapshot with labels (from the feature cache when unchanged)
    split      by time: train on earlier course runs or weeks, test on later ones
    tune       optional (`model.tuning.enabled`): an Optuna search on the train -> validation slice
    fit        LightGBM and the baselines (the curator's rule, logistic regression)
    evaluate   every scorer on the same test rows: the metrics reported
    choose     the better of LightGBM and logistic regression on that window (says when LightGBM
               loses; `model.allow_logistic_champion: false` keeps LightGBM)
    refit      the chosen settings refit on EVERY labelled snapshot, trees scaled with the data,
               calibration cross-fitted by course run: the model curators get
    log        one MLflow run: params, config, fingerprint, metrics, plots, trials, the model
    register   the version, alias `challenger`, and the promotion rule

Promotion: the new version always gets the alias `challenger`; it also gets `champion` when there
is none, when the champion cannot score the current features, or when it beats the champion's
`evaluation.promote_metric` on the same test rows, those the champion cannot have learned from
(a champion refit on all data has seen the older ones), the challenger scored by its evaluated
model.
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
from models.promotion import (
    ChampionChoice,
    PromotionDecision,
    choose_champion,
    decide_promotion,
    unseen_by_champion,
)
from models.split import TimeSplit, split_by_time
from models.train import (
    FittedModels,
    ServedModels,
    config_hash,
    evaluate_models,
    fit_models,
    refit_served,
)
from pipelines import mlflow_store as store
from pipelines.checks import check_source
from pipelines.cluster_training import ClusterBoosterFitter, lightgbm_ports
from pipelines.feature_cache import source_fingerprint, workspace_features
from pipelines.feature_partitions import FeatureDataset, LocatedFrame, workspace_cluster_features
from pipelines.run_record import build_run_record, window
from pipelines.runner import WARNING_PREFIX, Progress, Steps
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


def cluster_features_step(
    source: str | Path,
    config: Config,
    duplicate_events: bool | None,
    workspace: Workspace,
    dask: str,
    progress: Progress,
) -> LocatedFrame:
    """Every weekly snapshot with labels, built on the cluster into a partitioned dataset in the
    workspace's cache (reused when unchanged) and read here with where each row is, so that the
    workers can read their training rows themselves."""
    located = workspace_cluster_features(
        source,
        config,
        None,
        duplicate_events,
        workspace,
        dask,
        lambda m: progress(f"features: {m}"),
    )
    note = " (cached)" if located.hit else ""
    progress(f"features: {len(located.frame):,} rows in {len(located.dataset.files)} parts{note}")
    return located


def split_step(frame: pd.DataFrame, config: Config) -> TimeSplit:
    return split_by_time(frame, config.split, config.snapshots.horizon_days)


def fit_step(
    frame: pd.DataFrame,
    split: TimeSplit,
    config: Config,
    dask: str | None = None,
    dataset: FeatureDataset | None = None,
) -> FittedModels:
    """Fit on the split's training rows; with `dask`, the frame's `dataset` and at least
    `dask.train_min_rows` training rows, the trees grow on that cluster (lightgbm.dask, each
    worker reading its rows of the dataset), the rest (calibration, baselines) as ever."""
    train, validation, _ = split.frames(frame)
    fitter = None
    if dask and dataset is not None and len(train) >= config.dask.train_min_rows:
        fitter = ClusterBoosterFitter(dask, dataset, lightgbm_ports(config))
    return fit_models(
        train, validation, config, _split_metadata(split, config), booster_fitter=fitter
    )


def evaluate_step(
    fitted: FittedModels, frame: pd.DataFrame, split: TimeSplit, config: Config
) -> dict[str, Evaluation]:
    return evaluate_models(fitted, frame[split.test], config)


def tune_step(frame: pd.DataFrame, split: TimeSplit, config: Config) -> tuple[Config, list]:
    """The config with the best trial's LightGBM params, and every trial as a plain record."""
    from models.tuning import study_trials, tune_lightgbm, tuned_config

    train, validation, _ = split.frames(frame)
    study = tune_lightgbm(train, validation, config)
    return tuned_config(config, study.best_params), study_trials(study)


def choose_step(evaluations: dict[str, Evaluation], config: Config) -> ChampionChoice:
    metric = config.evaluation.promote_metric
    return choose_champion(
        {scorer: ev.metrics[metric] for scorer, ev in evaluations.items()},
        metric,
        allow_logistic=config.model.allow_logistic_champion,
        min_improvement=config.evaluation.min_improvement,
    )


_CANDIDATE_NAMES = {"model": "LightGBM model", "logistic": "logistic regression"}


def refit_step(
    frame: pd.DataFrame,
    fitted: FittedModels,
    split: TimeSplit,
    config: Config,
    choice: ChampionChoice | None = None,
) -> ServedModels:
    """The chosen candidate refit on every labelled snapshot (only it is logged and served);
    without a choice, both candidates."""
    scorers = (choice.scorer,) if choice is not None else ("model", "logistic")
    return refit_served(frame, fitted, config, _split_metadata(split, config), scorers=scorers)


def _split_metadata(split: TimeSplit, config: Config) -> dict[str, Any]:
    summary = split.summary
    return {
        "train_window": [summary.train.as_of_min, summary.train.as_of_max],
        "validation_window": [
            summary.validation.as_of_min,
            summary.validation.as_of_max,
        ],
        "test_window": [summary.test.as_of_min, summary.test.as_of_max],
        "horizon_days": config.snapshots.horizon_days,
        "split_method": summary.method,
    }


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
    served: ServedModels,
    choice: ChampionChoice,
    trials: list,
    config: Config,
    workspace: Workspace,
    experiment: str | None,
) -> LoggedRun:
    """One MLflow run with params, config, fingerprint, metrics, plots, the tuning trials and
    the served model (the chosen candidate, refit on every labelled snapshot)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    client = store.connect(workspace)
    name = experiment or config.registry.experiment
    experiment_id = store.ensure_experiment(client, name, workspace)
    secret = store.workspace_secret(workspace)
    record = build_run_record(source, frame, split, fitted, evaluations, config, secret)
    # The source fingerprint lets `notalone demo` skip training on data the champion has seen.
    record.tags[store.SOURCE_FINGERPRINT_TAG] = source_fingerprint(source)
    record.tags["model_kind"] = "logistic" if choice.scorer == "logistic" else "lightgbm"
    record.tags["champion_choice"] = choice.message[:5000]
    record.tags["model_loses"] = str(choice.model_loses).lower()
    record.params.update(
        {
            "served_rows": served.info.rows,
            "served_course_runs": served.info.course_runs,
            "served_trees": served.info.trees,
            "calibration_crossfit_folds": served.info.calibration_folds,
        }
    )
    record.dicts["model/served.json"] = served.info.as_dict()
    if trials:
        record.dicts["tuning/trials.json"] = trials
        record.step_metrics["tuning_trial_value"] = [
            (int(t["number"]), float(t["value"])) for t in trials if t.get("value") is not None
        ]
    model = served.candidate(choice.scorer)
    example = store.masked_input_example(
        frame[split.test], model, config.evaluation.input_example_rows
    )
    run_id, model_uri = store.log_training_run(client, experiment_id, record, model, example)
    return LoggedRun(run_id, model_uri, name, experiment_id)


def register_step(
    logged: LoggedRun,
    fitted: FittedModels,
    choice: ChampionChoice,
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
    challenger_value = choice.value
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
            # Only rows the champion cannot have learned from; when it saw them all (retrained
            # on the same data), every test row.
            unseen = unseen_by_champion(test["as_of"], champion_model.metadata or {})
            tags = client.get_model_version(name, champion).tags
            if unseen.any():
                rows = test[unseen]
                y = rows[LABEL_COLUMN].to_numpy().astype(int)
                champion_value = ranking_metrics(y, champion_model.predict_proba(rows))[metric]
                evaluated = fitted.model if choice.scorer == "model" else fitted.logistic
                challenger_value = ranking_metrics(y, evaluated.predict_proba(rows))[metric]
            elif tags.get(metric) and tags.get("test_window") == window(split, "test"):
                # The champion learned from every test row (retrained on the same data): its own
                # held-out value on this very window, recorded when it was registered.
                champion_value = float(tags[metric])
            else:
                # It saw them all and was evaluated elsewhere: scored here it is flattered, so a
                # challenger that still beats it is better (the safe side).
                y = test[LABEL_COLUMN].to_numpy().astype(int)
                champion_value = ranking_metrics(y, champion_model.predict_proba(test))[metric]
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
    duplicate_events = steps(
        "validate", None, check_source, source, config, workspace, steps.say, dask=dask
    )
    dataset = None
    if dask:
        located = steps(
            "features",
            "features (all weekly snapshots) on the Dask cluster",
            cluster_features_step,
            source,
            config,
            duplicate_events,
            workspace,
            dask,
            steps.say,
            io=True,
        )
        frame, dataset = located.frame, located.dataset
    else:
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
    if sizes.fallback_reason:
        steps.say(f"{WARNING_PREFIX}{sizes.fallback_reason}")
    trials: list = []
    if config.model.tuning.enabled:
        config, trials = steps(
            "tune",
            f"tuning LightGBM ({config.model.tuning.n_trials} trials, train -> validation)",
            tune_step,
            frame,
            split,
            config,
        )
    fitted = steps(
        "fit",
        f"fitting on {sizes.train.rows:,} rows (validation {sizes.validation.rows:,})",
        fit_step,
        frame,
        split,
        config,
        dask,
        dataset,
    )
    evaluations = steps(
        "evaluate",
        f"evaluating on {sizes.test.rows:,} test rows",
        evaluate_step,
        fitted,
        frame,
        split,
        config,
    )
    choice = steps("choose", None, choose_step, evaluations, config)
    steps.say(choice.message)
    served = steps(
        "refit",
        f"refitting the {_CANDIDATE_NAMES[choice.scorer]} on every labelled snapshot",
        refit_step,
        frame,
        fitted,
        split,
        config,
        choice,
    )
    steps.say(served.info.describe())
    logged = steps(
        "log",
        "logging the run to MLflow",
        log_step,
        source,
        frame,
        split,
        fitted,
        evaluations,
        served=served,
        choice=choice,
        trials=trials,
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
        fitted,
        choice,
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
            "calibration": served.info.calibration,
            "best_iteration": fitted.info.best_iteration,
            "champion_candidate": choice.scorer,
            "choice": choice.message,
            "model_loses": choice.model_loses,
            "served": served.info.describe(),
            "served_rows": served.info.rows,
            "served_course_runs": served.info.course_runs,
            "split": {
                k: v
                for k, v in sizes.as_dict().items()
                if k in ("method", "boundary", "train", "validation", "test", "fallback_reason")
            },
            "metrics": {scorer: ev.metrics for scorer, ev in evaluations.items()},
            "seconds": dict(steps.seconds),
        }
    )
