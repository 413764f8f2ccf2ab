"""`notalone train`, `compare` and `promote`: training wired to the feature builder and MLflow.

`train_pipeline` runs plain step functions in order — build the frame, split it by time, fit the
model and the baselines, evaluate them on the same test rows, log the run, register the version
and apply the promotion rule — so a Prefect flow can wrap each step as a task. `run_train` uses
`pipelines.flows.train_flow` when asked and available, else the steps directly.

Promotion: the new version always gets the alias `challenger`; it also gets `champion` when there
is none, when the champion cannot score the current features, or when it beats the champion's
`evaluation.promote_metric` with the champion re-evaluated on the very same test rows.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from configs.schema import Config
from features.catalog import KEY_COLUMNS, LABEL_COLUMN
from features.errors import NotaloneError
from models.evaluation import Evaluation, lift_curve, ranking_metrics, top_label
from models.model import ATTR_PREFIX, ModelMismatch
from models.plots import (
    auc_by_week_figure,
    calibration_figure,
    importance_figure,
    lift_figure,
    pr_figure,
    roc_figure,
    shap_summary_figure,
)
from models.privacy import pseudonymise
from models.promotion import PromotionDecision, decide_promotion
from models.split import TimeSplit, split_by_time
from models.train import SCORERS, FittedModels, config_hash, evaluate_models, fit_models
from pipelines.settings import Workspace

Progress = Callable[[str], None]
LIFT_POINTS = 20  # points on the cumulative lift chart (5 % steps)
HASH_CHUNK_BYTES = 1 << 20


def _noop(_: str) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# Steps (plain functions; a Prefect flow wraps each one as a task)


def validate_step(source: str | Path, config: Config, progress: Progress | None = None) -> bool:
    """The contract check before training: a model learnt from a source that breaks the
    contract (a score of 1e9, null ids) would be wrong without saying so. Raises
    `ValidationFailed` on errors; returns whether exact duplicate events were found (the feature
    build then drops them)."""
    from features.validate import require_valid

    ws = Workspace.resolve().activate()
    say = progress or _noop
    say("validating the source")
    report = require_valid(Path(source), config.validation, temp_dir=ws.tmp)
    if report.warnings:
        say(f"{len(report.warnings)} validation warning(s): {report.summary()}")
    return report.duplicate_events


def build_training_frame(
    source: str | Path,
    config: Config,
    progress: Progress | None = None,
    duplicate_events: bool | None = None,
) -> pd.DataFrame:
    """Every weekly snapshot of the source with labels (from the feature cache when unchanged).
    `duplicate_events` as validation found it (None: the build checks)."""
    from pipelines.feature_cache import workspace_features

    say = progress or _noop
    cached = workspace_features(
        source, config, None, duplicate_events, lambda part: say(f"features: {part}")
    )
    say(f"features: {len(cached.frame):,} rows" + (" (cached)" if cached.hit else ""))
    return cached.frame


def split_step(frame: pd.DataFrame, config: Config) -> TimeSplit:
    return split_by_time(frame, config.split, config.snapshots.horizon_days)


def fit_step(frame: pd.DataFrame, split: TimeSplit, config: Config) -> FittedModels:
    train, validation, test = split.frames(frame)
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
    return fit_models(train, validation, config, metadata)


def evaluate_step(
    fitted: FittedModels, frame: pd.DataFrame, split: TimeSplit, config: Config
) -> dict[str, Evaluation]:
    return evaluate_models(fitted, frame[split.test], config)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(source: str | Path, frame: pd.DataFrame, split: TimeSplit) -> dict:
    """Row counts, date ranges and content hashes of the inputs and of the snapshot keys."""
    root = Path(source)
    files = []
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            files.append(
                {"file": str(rel), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
            )
    combined = hashlib.sha256("".join(f["file"] + f["sha256"] for f in files).encode())
    keys = frame[[*KEY_COLUMNS, LABEL_COLUMN]]
    frame_hash = int(pd.util.hash_pandas_object(keys, index=False).to_numpy().sum(dtype=np.uint64))
    labelled = frame[LABEL_COLUMN].notna()
    return {
        "source_sha256": combined.hexdigest(),
        "files": files,
        "snapshot_keys_hash": f"{frame_hash:016x}",
        "rows": int(len(frame)),
        "labelled_rows": int(labelled.sum()),
        "label_rate": float(frame.loc[labelled, LABEL_COLUMN].mean()) if labelled.any() else None,
        "course_runs": int(frame["course_id"].nunique()),
        "students": int(frame["student_id"].nunique()),
        "as_of_min": frame["as_of"].min().isoformat() if len(frame) else None,
        "as_of_max": frame["as_of"].max().isoformat() if len(frame) else None,
        "split": split.summary.as_dict(),
    }


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


def _params(config: Config, fitted: FittedModels, split: TimeSplit) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for section in ("split", "model", "evaluation"):
        _flatten(section, getattr(config, section).model_dump(mode="json"), params)
    params.update(
        {
            "snapshots.horizon_days": config.snapshots.horizon_days,
            "snapshots.step_days": config.snapshots.step_days,
            "snapshots.inactivity_is_dropout": config.snapshots.inactivity_is_dropout,
            "features.include_attrs": config.features.include_attrs,
            "features.windows_days": list(config.features.windows_days),
            "scoring.capacity": config.scoring.capacity,
            "n_features": fitted.info["n_features"],
            "best_iteration": fitted.info["best_iteration"],
            "scale_pos_weight": round(fitted.info["scale_pos_weight"], 6),
            "calibration": fitted.info["calibration"],
            "rows_train": split.summary["train"]["rows"],
            "rows_validation": split.summary["validation"]["rows"],
            "rows_test": split.summary["test"]["rows"],
        }
    )
    return params


def _masked_segments(segments: pd.DataFrame, secret: bytes) -> pd.DataFrame:
    """Segment table for MLflow: attr_* values replaced by keyed-hash codes (course ids stay)."""
    out = segments.copy()
    is_attr = out["segment"].str.startswith(ATTR_PREFIX)
    if is_attr.any():
        codes = pseudonymise(out.loc[is_attr, "segment"] + "=" + out.loc[is_attr, "value"], secret)
        out.loc[is_attr, "value"] = codes.to_numpy()
    return out


def _contribution_sample(
    fitted: FittedModels, test: pd.DataFrame, config: Config, secret: bytes
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A sample of test rows: contributions (for the SHAP plot) and a loggable copy of them.

    The loggable copy carries pseudonymised student ids and no attr_* columns.
    """
    rows = min(len(test), config.evaluation.shap_sample_rows)
    sample = test.sample(n=rows, random_state=config.model.seed) if rows < len(test) else test
    contrib = fitted.model.contributions(sample)
    loggable = contrib.drop(columns=[c for c in contrib.columns if c.startswith(ATTR_PREFIX)])
    loggable.insert(0, "student", pseudonymise(sample["student_id"], secret).to_numpy())
    loggable.insert(1, "course_id", sample["course_id"].to_numpy())
    loggable.insert(2, "as_of", sample["as_of"].to_numpy())
    return sample, contrib, loggable.reset_index(drop=True)


def _scorer_outputs(fitted: FittedModels, test: pd.DataFrame) -> tuple[dict, dict]:
    probs = {
        "model": fitted.model.predict_proba(test),
        "rule": fitted.rule.predict_proba(test),
        "logistic": fitted.logistic.predict_proba(test),
    }
    ranks = {**probs, "rule": fitted.rule.score(test)}
    return probs, ranks


def build_run_record(
    source: str | Path,
    frame: pd.DataFrame,
    split: TimeSplit,
    fitted: FittedModels,
    evaluations: dict[str, Evaluation],
    config: Config,
    secret: bytes,
):
    """Everything the MLflow run holds: params, tags, metrics, tables, figures (no raw ids)."""
    from pipelines.mlflow_store import RunRecord

    test = frame[split.test]
    y = test[LABEL_COLUMN].to_numpy().astype(int)
    probs, ranks = _scorer_outputs(fitted, test)
    fingerprint = data_fingerprint(source, frame, split)
    metrics: dict[str, float] = {}
    for name, ev in evaluations.items():
        metrics.update({f"{name}_{key}": value for key, value in ev.metrics.items()})
    for method, scores in fitted.info["calibration_selection"].items():
        for key, value in scores.items():
            metrics[f"calibration_{method}_{key}"] = value
    metrics["best_validation_score"] = fitted.info["best_validation_score"]
    for key, seconds in fitted.info["timings"].items():
        metrics[f"time_{key}"] = seconds
    step_metrics = {
        f"{name}_roc_auc_by_week": list(
            zip(ev.by_week["week"].tolist(), ev.by_week["roc_auc"].tolist(), strict=True)
        )
        for name, ev in evaluations.items()
    }
    by_week = pd.concat(
        [ev.by_week.assign(scorer=name) for name, ev in evaluations.items()], ignore_index=True
    )
    segments = pd.concat(
        [ev.segments.assign(scorer=name) for name, ev in evaluations.items()], ignore_index=True
    )
    importance = fitted.model.feature_importance()
    sample, contrib, loggable = _contribution_sample(fitted, test, config, secret)
    ev_cfg = config.evaluation
    figures = {
        "plots/roc.png": roc_figure(y, ranks),
        "plots/pr.png": pr_figure(y, ranks),
        "plots/calibration.png": calibration_figure(y, probs, ev_cfg.calibration_bins),
        "plots/lift.png": lift_figure(y, ranks, LIFT_POINTS),
        "plots/auc_by_week.png": auc_by_week_figure(
            {name: ev.by_week for name, ev in evaluations.items()}
        ),
        "plots/feature_importance.png": importance_figure(importance, ev_cfg.shap_top_features),
        "plots/shap_summary.png": shap_summary_figure(
            contrib, sample, ev_cfg.shap_top_features, config.model.seed
        ),
    }
    lift = pd.concat(
        [lift_curve(y, ranks[name], LIFT_POINTS).assign(scorer=name) for name in SCORERS],
        ignore_index=True,
    )
    feature_list = [
        {"name": n, "type": fitted.model.feature_types[n]} for n in fitted.model.feature_names
    ]
    record = RunRecord(
        run_name=f"{Path(source).name} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}",
        params=_params(config, fitted, split),
        tags={
            "source": str(Path(source).resolve()),
            "source_sha256": fingerprint["source_sha256"],
            "snapshot_keys_hash": fingerprint["snapshot_keys_hash"],
            "config_hash": config_hash(config),
            "train_window": _window(split, "train"),
            "test_window": _window(split, "test"),
            "split_method": config.split.method,
            "calibration": fitted.info["calibration"],
        },
        metrics=metrics,
        step_metrics=step_metrics,
        texts={
            "config/config.yaml": yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        },
        dicts={
            "data/fingerprint.json": fingerprint,
            "features/features.json": feature_list,
            "model/reference_summary.json": {
                "features": list(fitted.model.reference.get("features", {})),
                "bins": fitted.model.reference.get("bins"),
            },
            "evaluation/metrics.json": {n: ev.metrics for n, ev in evaluations.items()},
            "evaluation/calibration_selection.json": fitted.info["calibration_selection"],
        },
        tables={
            "evaluation/auc_by_week.csv": by_week,
            "evaluation/segments.csv": _masked_segments(segments, secret),
            "evaluation/feature_importance.csv": importance.rename_axis("feature").reset_index(),
            "evaluation/lift.csv": lift,
        },
        parquet={"explanations/contributions_sample.parquet": loggable},
        figures=figures,
    )
    return record


@dataclass
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
    config: Config,
    experiment: str | None = None,
) -> LoggedRun:
    """One MLflow run with params, config, fingerprint, metrics, plots and the model."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from pipelines import mlflow_store as store

    ws = Workspace.resolve().activate()
    client = store.connect(ws)
    name = experiment or config.registry.experiment
    experiment_id = store.ensure_experiment(client, name, ws)
    secret = store.workspace_secret(ws)
    record = build_run_record(source, frame, split, fitted, evaluations, config, secret)
    example = store.masked_input_example(
        frame[split.test], fitted.model, config.evaluation.input_example_rows
    )
    run_id, model_uri = store.log_training_run(client, experiment_id, record, fitted.model, example)
    return LoggedRun(run_id, model_uri, name, experiment_id)


def register_step(
    logged: LoggedRun,
    fitted: FittedModels,
    evaluations: dict[str, Evaluation],
    frame: pd.DataFrame,
    split: TimeSplit,
    config: Config,
) -> dict:
    """Register the version, alias it `challenger`, and apply the promotion rule.

    Crash safety: the version and the run are tagged with the decision first and the aliases move
    last, `champion` at the very end. A run killed at any point leaves the champion alias on a
    complete version whose promotion is recorded; a killed run's version at most lacks an alias.
    """
    from pipelines import mlflow_store as store

    ws = Workspace.resolve().activate()
    client = store.connect(ws)
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
            "test_window": _window(split, "test"),
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


def _window(split: TimeSplit, part: str) -> str:
    return f"{split.summary[part]['as_of_min'][:10]}..{split.summary[part]['as_of_max'][:10]}"


def _decision_dict(decision: PromotionDecision, champion: str | None) -> dict:
    return {
        "promoted": decision.promote,
        "reason": decision.reason,
        "metric": decision.metric,
        "challenger": decision.challenger_value,
        "champion": decision.champion_value,
        "champion_version": champion,
    }


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def train_pipeline(
    source: str | Path,
    config: Config,
    experiment: str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Build, split, fit, evaluate, log, register: the direct (no Prefect) path of `train`."""
    say = progress or _noop
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = round(now - clock, 3)
        clock = now

    duplicate_events = validate_step(source, config, say)
    lap("validate")
    frame = build_training_frame(source, config, say, duplicate_events)
    lap("features")
    say("splitting by time")
    split = split_step(frame, config)
    lap("split")
    say(
        f"fitting on {split.summary['train']['rows']:,} rows "
        f"(validation {split.summary['validation']['rows']:,})"
    )
    fitted = fit_step(frame, split, config)
    lap("fit")
    say(f"evaluating on {split.summary['test']['rows']:,} test rows")
    evaluations = evaluate_step(fitted, frame, split, config)
    lap("evaluate")
    say("logging the run to MLflow")
    logged = log_step(source, frame, split, fitted, evaluations, config, experiment)
    lap("log")
    say("registering the model")
    registered = register_step(logged, fitted, evaluations, frame, split, config)
    lap("register")
    return training_result(logged, registered, fitted, split, evaluations, config, timings)


def training_result(
    logged, registered, fitted, split, evaluations, config: Config, seconds: dict[str, float]
) -> dict[str, Any]:
    """What a training returns and `notalone train --json` prints (the direct path and the flow)."""
    name = config.registry.model_name
    return _clean(
        {
            "run_id": logged.run_id,
            "experiment": logged.experiment,
            "model_name": name,
            "version": registered["version"],
            "aliases": registered["aliases"],
            "promoted": registered["promoted"],
            "promotion": registered["decision"],
            "model_uri": f"models:/{name}/{registered['version']}",
            "calibration": fitted.info["calibration"],
            "best_iteration": fitted.info["best_iteration"],
            "split": {
                k: split.summary[k] for k in ("method", "boundary", "train", "validation", "test")
            },
            "metrics": {scorer: ev.metrics for scorer, ev in evaluations.items()},
            "seconds": seconds,
        }
    )


# ---------------------------------------------------------------------------------------------
# Commands

SHOWN_METRICS = (
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
    ("brier", "Brier"),
    ("log_loss", "log loss"),
    ("precision_{top}", "precision, top {pct}% per week"),
    ("recall_{top}", "recall, top {pct}% per week"),
    ("lift_{top}", "lift, top {pct}%"),
    ("precision_capacity", "precision at capacity"),
    ("recall_capacity", "recall at capacity"),
)


def _metric_rows(config: Config) -> list[tuple[str, str]]:
    top = top_label(config.evaluation.top_share)
    pct = round(config.evaluation.top_share * 100)
    return [(key.format(top=top), label.format(pct=pct)) for key, label in SHOWN_METRICS]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_result(result: dict, config: Config, console: Console) -> None:
    table = Table(
        title=f"test period {result['split']['test']['as_of_min'][:10]} .. "
        f"{result['split']['test']['as_of_max'][:10]}"
    )
    table.add_column("metric")
    for name in SCORERS:
        table.add_column(name, justify="right")
    for key, label in _metric_rows(config):
        table.add_row(label, *(_fmt(result["metrics"][name].get(key)) for name in SCORERS))
    console.print(table)
    decision = result["promotion"]
    console.print(
        f"run [bold]{result['run_id']}[/bold] · {result['model_name']} version "
        f"[bold]{result['version']}[/bold] · aliases: {', '.join(result['aliases'])} · "
        f"{decision['reason']}"
    )


def _flows():
    """`pipelines.flows` when it offers `train_flow`, else None (then the steps run directly)."""
    try:
        from pipelines import flows
    except ImportError:
        return None
    return flows if hasattr(flows, "train_flow") else None


def run_train(
    source: Path,
    config: Config,
    experiment: str | None = None,
    as_json: bool = False,
    use_prefect: bool = True,
) -> dict:
    """Train, evaluate, log and register; print a table (or JSON with --json) and return it."""
    Workspace.resolve().activate()
    source = Path(source)
    if not source.is_dir():
        raise NotaloneError(f"source folder not found: {source}")
    err = Console(stderr=True)
    flows = _flows() if use_prefect else None
    # Anything a library prints goes to stderr, so that stdout holds only the result (JSON).
    with contextlib.redirect_stdout(sys.stderr), err.status("training") as status:

        def progress(message: str) -> None:
            status.update(f"training: {message}")

        if flows is not None:
            with flows.reporting(progress):
                result = flows.train_flow(source=str(source), config=config, experiment=experiment)
        else:
            result = train_pipeline(source, config, experiment, progress)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        sys.stdout.flush()
    else:
        print_result(result, config, Console())
    return result


COMPARE_METRICS = ("pr_auc", "roc_auc", "brier", "precision_{top}")


def compare_table(
    runs: list, champion: str | None, model_name: str, config: Config
) -> pd.DataFrame:
    """One row per training run: model vs baselines on the main metrics, window, version."""
    top = top_label(config.evaluation.top_share)
    rows = []
    for run in runs:
        tags = run.data.tags
        metrics = run.data.metrics
        version = tags.get("registered_version")
        is_champion = (
            version is not None
            and version == champion
            and tags.get("registered_model") == model_name
        )
        row: dict[str, Any] = {
            "started": datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime(
                "%Y-%m-%d %H:%M"
            ),
            "run": run.info.run_name,
            "run_id": run.info.run_id,
            "version": version or "",
            "champion": "*" if is_champion else "",
            "decision": tags.get("promotion.promotion_decision", ""),
            "train_window": tags.get("train_window", ""),
            "test_window": tags.get("test_window", ""),
            "test_rows": metrics.get("model_rows"),
            "base_rate": metrics.get("model_base_rate"),
        }
        for metric in COMPARE_METRICS:
            key = metric.format(top=top)
            for scorer in SCORERS:
                row[f"{scorer}_{key}"] = metrics.get(f"{scorer}_{key}")
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:,.0f}"
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    for record in table.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in record) + " |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run_compare(
    experiment: str | None, last: int | None, out: Path | None, config: Config
) -> pd.DataFrame:
    """Print recent training runs (model vs baselines) and write compare.csv + compare.md."""
    from pipelines import mlflow_store as store

    ws = Workspace.resolve().activate()
    client = store.connect(ws)
    name = experiment or config.registry.experiment
    runs = store.recent_training_runs(client, name, last or config.registry.compare_last)
    if not runs:
        raise NotaloneError(f"experiment {name!r} has no training runs yet")
    champion = store.alias_version(client, config.registry.model_name, store.CHAMPION)
    table = compare_table(runs, champion, config.registry.model_name, config)
    folder = Path(out) if out is not None else ws.outputs / "compare"
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / "compare.csv", table.to_csv(index=False))
    _write_atomic(folder / "compare.md", f"# Training runs: {name}\n\n" + to_markdown(table))

    top = top_label(config.evaluation.top_share)
    shown = Table(
        title=f"recent training runs in {name!r}; champion: version {champion or '-'}",
        caption="metric cells: model / rule / logistic on the run's test rows",
    )
    for col in ("started", "ver", "champ", "test window"):
        shown.add_column(col, no_wrap=True)
    metrics = ("pr_auc", "roc_auc", "brier", f"precision_{top}")
    for metric in metrics:
        shown.add_column(metric, justify="right", no_wrap=True)
    for record in table.to_dict("records"):
        cells = [str(record[c]) for c in ("started", "version", "champion", "test_window")]
        for metric in metrics:
            cells.append("/".join(_fmt(record.get(f"{s}_{metric}")) for s in SCORERS))
        shown.add_row(*cells)
    console = Console()
    console.print(shown)
    console.print(f"wrote {folder / 'compare.csv'} and {folder / 'compare.md'}")
    return table


def run_promote(version: str, reason: str, by: str | None, config: Config) -> dict:
    """Move `champion` to VERSION by hand; record who, why and when in version tags."""
    from pipelines import mlflow_store as store

    ws = Workspace.resolve().activate()
    client = store.connect(ws)
    name = config.registry.model_name
    version = str(version)
    store.check_version(client, name, version)
    who = by or getpass.getuser()
    previous = store.alias_version(client, name, store.CHAMPION)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    store.set_alias(client, name, store.CHAMPION, version)
    store.tag_version(
        client,
        name,
        version,
        {
            "promoted_by": who,
            "promoted_reason": reason,
            "promoted_at": now,
            "promoted_from_version": previous or "none",
        },
    )
    if previous and previous != version:
        store.tag_version(
            client,
            name,
            previous,
            {"demoted_by": who, "demoted_reason": reason, "demoted_at": now},
        )
    Console().print(
        f"{name} version [bold]{version}[/bold] is now champion "
        f"(was {previous or 'none'}); by {who}: {reason}"
    )
    return {
        "model_name": name,
        "version": version,
        "previous": previous,
        "by": who,
        "reason": reason,
    }


def write_source_variant(
    source: str | Path,
    out: str | Path,
    course_prefixes: list[str] | None = None,
    event_types: list[str] | None = None,
    drop_attrs: list[str] | None = None,
) -> Path:
    """A copy of a source restricted for an experiment (written atomically to `out`).

    `course_prefixes` keeps the course runs whose id starts with one of them (e.g. "AAA" for the
    OULAD module AAA), `event_types` keeps only those event types (e.g. only submissions: a
    school without click data), `drop_attrs` removes attr_* columns from the enrollments.
    """
    from features.sources import atomic_dir, locate_tables, read_table, write_table

    tables = {name: read_table(source, name) for name in locate_tables(source)}
    if course_prefixes:
        prefixes = tuple(course_prefixes)
        keep = {c for c in tables["courses"]["course_id"].astype(str) if c.startswith(prefixes)}
        if not keep:
            raise NotaloneError(f"no course run of {source} starts with {', '.join(prefixes)}")
        for name, table in tables.items():
            if "course_id" in table.columns:
                tables[name] = table[table["course_id"].astype(str).isin(keep)]
    if event_types is not None and "events" in tables:
        events = tables["events"]
        tables["events"] = events[events["event_type"].astype(str).isin(event_types)]
    if drop_attrs:
        tables["enrollments"] = tables["enrollments"].drop(
            columns=[c for c in drop_attrs if c in tables["enrollments"].columns]
        )
    with atomic_dir(out) as tmp:
        for name, table in tables.items():
            write_table(tmp, name, table.reset_index(drop=True))
    return Path(out)
