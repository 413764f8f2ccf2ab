"""What a training run records in MLflow: params, tags, metrics, tables, figures, fingerprint.

Built from the frame, the split, the fitted scorers and their evaluations; no raw student id and
no attr_* value reaches the record (ids are pseudonymised with the workspace secret).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from configs.schema import Config
from features.catalog import KEY_COLUMNS, LABEL_COLUMN
from models.evaluation import Evaluation, lift_curve
from models.model import ATTR_PREFIX
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
from models.split import TimeSplit
from models.train import SCORERS, FittedModels, config_hash
from pipelines.mlflow_store import RunRecord

LIFT_POINTS = 20  # points on the cumulative lift chart (5 % steps)
HASH_CHUNK_BYTES = 1 << 20


def window(split: TimeSplit, part: str) -> str:
    """The as-of dates a part of the split spans, as `YYYY-MM-DD..YYYY-MM-DD`."""
    summary = getattr(split.summary, part)
    return f"{summary.as_of_min[:10]}..{summary.as_of_max[:10]}"


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
            "n_features": fitted.info.n_features,
            "best_iteration": fitted.info.best_iteration,
            "scale_pos_weight": round(fitted.info.scale_pos_weight, 6),
            "calibration": fitted.info.calibration,
            "rows_train": split.summary.train.rows,
            "rows_validation": split.summary.validation.rows,
            "rows_test": split.summary.test.rows,
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


def _scorer_outputs(
    fitted: FittedModels, test: pd.DataFrame, evaluations: dict[str, Evaluation]
) -> tuple[dict, dict]:
    """Each scorer's probabilities and ranking scores on the test rows: those the evaluation
    computed when it kept them (predicting 300k rows again costs seconds), else predicted."""
    kept = [evaluations.get(name) for name in SCORERS]
    if all(ev is not None and ev.prob is not None and len(ev.prob) == len(test) for ev in kept):
        probs = {name: ev.prob for name, ev in zip(SCORERS, kept, strict=True)}
        return probs, {name: ev.rank for name, ev in zip(SCORERS, kept, strict=True)}
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
    test = frame[split.test]
    y = test[LABEL_COLUMN].to_numpy().astype(int)
    probs, ranks = _scorer_outputs(fitted, test, evaluations)
    fingerprint = data_fingerprint(source, frame, split)
    metrics: dict[str, float] = {}
    for name, ev in evaluations.items():
        metrics.update({f"{name}_{key}": value for key, value in ev.metrics.items()})
    for method, scores in fitted.info.calibration_selection.items():
        for key, value in scores.items():
            metrics[f"calibration_{method}_{key}"] = value
    metrics["best_validation_score"] = fitted.info.best_validation_score
    for key, seconds in fitted.info.timings.items():
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
            "train_window": window(split, "train"),
            "test_window": window(split, "test"),
            "split_method": split.summary.method,
            "calibration": fitted.info.calibration,
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
            "evaluation/calibration_selection.json": fitted.info.calibration_selection,
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
