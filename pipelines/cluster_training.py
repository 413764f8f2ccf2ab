"""LightGBM grown on a Dask cluster (lightgbm.dask) with the same early stopping as at home.

lightgbm.dask evaluates a validation set only on the rows each worker holds, so LightGBM's own
early stopping would stop workers at different rounds. Instead the trees grow in stages (each
stage grown again from scratch to at least `early_stopping_rounds` more trees, so that bagging
and feature sampling follow one random stream as in a local fit), the client scores the
validation slice tree by tree with the configured metric, and growth stops exactly where
`lgb.early_stopping` would: when the best round is that many rounds behind. The model keeps the
trees up to the best round, as locally; the refit on train + validation grows that many trees.
"""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from configs.schema import Config
from features.catalog import LABEL_COLUMN
from features.errors import NotaloneError
from models.model import CATEGORY, FLOAT, cast_features
from models.train import learning_set
from pipelines.dask_store import client_at, fit_lightgbm, parts_on_workers, worker_addresses
from pipelines.feature_partitions import FeatureDataset, read_rows

# LightGBM metric name -> (score of labels and raw margins, higher is better)
_METRICS = {
    "average_precision": (lambda y, m: average_precision_score(y, m), True),
    "auc": (lambda y, m: roc_auc_score(y, m), True),
    "binary_logloss": (lambda y, m: log_loss(y, 1 / (1 + np.exp(-m)), labels=[0, 1]), False),
}


def model_matrix_types(x: pd.DataFrame) -> tuple[dict[str, str], dict[str, list]]:
    """The feature types and categories of a model matrix (`cast_features` output)."""
    types, cats = {}, {}
    for col, dtype in x.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            types[col], cats[col] = CATEGORY, [str(c) for c in dtype.categories]
        else:
            types[col] = FLOAT
    return types, cats


def training_rows(
    files: list[str],
    segments: list[list[np.ndarray]],
    names: list[str],
    types: dict[str, str],
    cats: dict[str, list],
) -> tuple[pd.DataFrame, pd.Series]:
    """On a worker: its rows of the feature dataset as the model matrix and the labels, exactly
    as the client casts them (`cast_features` on the same types and categories)."""
    frame = read_rows(files, segments, [*names, LABEL_COLUMN, "as_of"])
    x = cast_features(frame, names, types, cats)
    y = pd.Series(frame[LABEL_COLUMN].to_numpy().astype(int), index=x.index, name="label")
    return x, y


def worker_calls(
    x: pd.DataFrame, dataset: FeatureDataset, workers: int
) -> list[tuple[list[str], list[list[np.ndarray]]]]:
    """The rows of `x` (frame positions in its index) as at most `workers` calls of whole part
    files (whole course runs), each (files, segments of packed row masks)."""
    segments = dataset.segment_masks(x.index.to_numpy())
    used = [i for i in range(len(dataset.files)) if any(seg[i].any() for seg in segments)]
    groups = [g for g in np.array_split(np.asarray(used, dtype=int), max(1, workers)) if len(g)]
    return [
        ([dataset.files[i] for i in g], [[seg[i] for i in g] for seg in segments]) for g in groups
    ]


class ClusterBoosterFitter:
    """A `models.train.BoosterFitter` growing the trees on the cluster at `address`, from the
    feature dataset the frame was read from: each worker reads its part files itself (the rows
    the client chose, by packed masks); the client sends only paths and masks.

    The frames the fitter is given must keep the dataset frame's positions as their index
    (`split.frames(frame)` does)."""

    def __init__(self, address: str, dataset: FeatureDataset, ports: tuple[int, int] | None = None):
        self.address = address
        self.dataset = dataset
        self.ports = ports  # LightGBM's listening port range (first, count); None: random

    def _parts(self) -> int:
        with client_at(self.address) as client:
            return max(1, len(worker_addresses(client)))

    def fit(self, train_x, train_y, valid_x, valid_y, config: Config, runs):
        metric = config.model.early_stopping_metric
        if metric not in _METRICS:
            raise NotaloneError(
                f"model.early_stopping_metric {metric!r} is not supported on a Dask cluster; "
                f"use one of {sorted(_METRICS)}"
            )
        score_of, higher = _METRICS[metric]
        # The workers read the kept rows (by the frame positions kept).
        params, train_x, _ = learning_set(train_x, train_y, config)
        grow = {k: v for k, v in params.items() if k != "metric"}
        calls = self._calls(train_x)
        patience = config.model.early_stopping_rounds
        limit = config.model.num_boost_round
        margin = np.zeros(len(valid_x))
        history: list[float] = []
        best, best_score = 0, -math.inf if higher else math.inf
        booster: lgb.Booster | None = None
        with parts_on_workers(self.address, training_rows, calls) as parts:
            while len(history) < limit and len(history) - best < patience:
                done = len(history)
                # Grown again from scratch to `total` trees, not continued from `booster`: a
                # continued fit restarts LightGBM's bagging and feature-sampling streams, so its
                # trees would differ from a local fit's; from scratch, the first `done` trees are
                # those already scored. Doubling keeps the extra work under one more fit.
                total = min(limit, max(done + patience, 2 * done))
                booster = fit_lightgbm(parts, train_x.iloc[:0], grow, total, self.ports)
                for i in range(done, booster.current_iteration()):
                    margin += booster.predict(
                        valid_x, raw_score=True, start_iteration=i, num_iteration=1
                    )
                    score = float(score_of(valid_y, margin))
                    history.append(score)
                    if (score > best_score) if higher else (score < best_score):
                        best, best_score = i + 1, score
                    if len(history) - best >= patience:
                        break
                if booster.current_iteration() == done:  # no tree could be grown
                    break
        assert booster is not None
        best = best or booster.current_iteration()
        if best < booster.current_iteration():
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        info = {
            "best_iteration": int(best),
            "best_validation_score": best_score if history else float("nan"),
            "scale_pos_weight": float(params.get("scale_pos_weight", 1.0)),
            "params": params,
            "learned_rows": len(train_x),
            "distributed": {"partitions": len(calls), "scheduler": self.address},
        }
        return booster, info

    def refit(self, x, y, rounds: int, config: Config, runs):
        params, x, _ = learning_set(x, y, config)
        params.pop("metric", None)
        with parts_on_workers(self.address, training_rows, self._calls(x)) as parts:
            return fit_lightgbm(parts, x.iloc[:0], params, rounds, self.ports)

    def _calls(self, x: pd.DataFrame) -> list[tuple]:
        types, cats = model_matrix_types(x)
        names = list(x.columns)
        return [
            (files, segments, names, types, cats)
            for files, segments in worker_calls(x, self.dataset, self._parts())
        ]


def lightgbm_ports(config: Config) -> tuple[int, int] | None:
    """`dask.lightgbm_port_base` and `lightgbm_port_count` as a range, or None (random ports)."""
    base = config.dask.lightgbm_port_base
    return None if base is None else (base, config.dask.lightgbm_port_count)
