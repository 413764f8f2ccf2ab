"""LightGBM grown on a Dask cluster (lightgbm.dask) with the same early stopping as at home.

lightgbm.dask evaluates a validation set only on the rows each worker holds, so LightGBM's own
early stopping would stop workers at different rounds. Instead the trees grow in stages of
`early_stopping_rounds` (each stage continues the previous Booster), the client scores the
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
from features.errors import NotaloneError
from models.train import lgb_params
from pipelines.dask_store import client_at, fit_lightgbm, worker_addresses

# LightGBM metric name -> (score of labels and raw margins, higher is better)
_METRICS = {
    "average_precision": (lambda y, m: average_precision_score(y, m), True),
    "auc": (lambda y, m: roc_auc_score(y, m), True),
    "binary_logloss": (lambda y, m: log_loss(y, 1 / (1 + np.exp(-m)), labels=[0, 1]), False),
}


def split_by_runs(
    x: pd.DataFrame, y: np.ndarray, runs: np.ndarray, parts: int
) -> tuple[list[pd.DataFrame], list[pd.Series]]:
    """Rows cut into at most `parts` groups of whole course runs (runs in first-seen order)."""
    codes, uniques = pd.factorize(runs)
    part_of_run = np.arange(len(uniques)) * max(1, parts) // max(1, len(uniques))
    part = part_of_run[codes]
    xs, ys = [], []
    labels = pd.Series(y, index=x.index, name="label")
    for p in np.unique(part):
        take = np.flatnonzero(part == p)
        xs.append(x.iloc[take])
        ys.append(labels.iloc[take])
    return xs, ys


class ClusterBoosterFitter:
    """A `models.train.BoosterFitter` growing the trees on the cluster at `address`."""

    def __init__(self, address: str):
        self.address = address

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
        n_pos = int(train_y.sum())
        params = lgb_params(config, n_pos, len(train_y) - n_pos)
        grow = {k: v for k, v in params.items() if k != "metric"}
        xs, ys = split_by_runs(train_x, train_y, runs, self._parts())
        patience = config.model.early_stopping_rounds
        limit = config.model.num_boost_round
        margin = np.zeros(len(valid_x))
        history: list[float] = []
        best, best_score = 0, -math.inf if higher else math.inf
        booster: lgb.Booster | None = None
        while len(history) < limit and len(history) - best < patience:
            done = len(history)
            step = min(patience, limit - done)
            booster = fit_lightgbm(self.address, xs, ys, grow, step, init_model=booster)
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
            "distributed": {"partitions": len(xs), "scheduler": self.address},
        }
        return booster, info

    def refit(self, x, y, rounds: int, config: Config, runs):
        n_pos = int(y.sum())
        params = lgb_params(config, n_pos, len(y) - n_pos)
        params.pop("metric", None)
        xs, ys = split_by_runs(x, y, runs, self._parts())
        return fit_lightgbm(self.address, xs, ys, params, rounds)
