"""Which labelled rows a fit learns from: every dropout, and a seeded share of the others.

Weekly snapshots of students who stay are many and alike (OULAD: 39 per dropout). A LightGBM fit
costs rows x trees, and its trees scale with its rows, so a fit on all of them costs the square of
the data. Keeping every dropout and at most `model.negatives_per_positive` other snapshots per
dropout loses little (docs/performance.md) and the kept negatives stand for the dropped ones:
LightGBM's `class_weight: balanced` rebalances the kept rows as it did all of them, and the
unweighted fits (`class_weight: none`, logistic regression) weight each kept negative by
1 / kept share. Early stopping, calibration, evaluation and the drift reference see every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from configs.schema import ModelConfig


@dataclass(frozen=True)
class LearningRows:
    """The rows to learn from (`positions` into the labels given), and the share of the
    negatives kept (1.0 when all are)."""

    positions: np.ndarray
    negative_share: float

    @property
    def sampled(self) -> bool:
        return self.negative_share < 1.0

    def kept_weights(self, y: np.ndarray) -> np.ndarray:
        """Per kept row, in `positions` order: 1 for a dropout, 1 / kept share for the others
        (unbiased sums)."""
        kept = np.asarray(y)[self.positions]
        return np.where(kept == 1, 1.0, 1.0 / self.negative_share)


def learning_rows(y: np.ndarray, config: ModelConfig) -> LearningRows:
    """Every dropout and a seeded Bernoulli draw of the others at the share that keeps about
    `negatives_per_positive` per dropout; all rows when there are no more than that (or the
    setting is 0). The same labels and seed give the same rows."""
    y = np.asarray(y)
    ratio = config.negatives_per_positive
    positives = int((y == 1).sum())
    negatives = len(y) - positives
    if not ratio or not positives or negatives <= ratio * positives:
        return LearningRows(np.arange(len(y)), 1.0)
    share = ratio * positives / negatives
    draw = np.random.default_rng(config.seed).random(len(y))
    keep = (y == 1) | (draw < share)
    kept_negatives = int(keep.sum()) - positives
    return LearningRows(np.flatnonzero(keep), max(kept_negatives, 1) / negatives)
