"""Probability calibration of a ranking score: isotonic or sigmoid (Platt), chosen on validation.

A model trained with class weights ranks well but its raw probabilities are inflated; the curator
list shows probabilities, so they are calibrated on the validation slice. The method is chosen by
cross-fitting on that slice (each fold's calibrator is scored on the rows it did not see), because
choosing by the in-sample fit would always favour the more flexible isotonic map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import StratifiedKFold

METHODS = ("isotonic", "sigmoid")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))


@dataclass
class Calibrator:
    """A fitted monotone map from a raw score to P(dropout)."""

    method: str
    clip: float
    tie_break: float = 0.0
    isotonic: IsotonicRegression | None = None
    center: float = 0.0
    scale: float = 1.0
    slope: float = 1.0
    intercept: float = 0.0
    selection: dict[str, dict[str, float]] = field(default_factory=dict)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            assert self.isotonic is not None
            # Isotonic maps whole ranges of scores to one value; a tiny increasing term keeps the
            # model's own order inside those plateaus, so ranking loses nothing to calibration.
            base = np.clip(self.isotonic.predict(raw), self.clip, 1.0 - self.clip - self.tie_break)
            return base + self.tie_break * _sigmoid(raw)
        prob = _sigmoid(self.slope * (raw - self.center) / self.scale + self.intercept)
        return np.clip(prob, self.clip, 1.0 - self.clip)


def fit_calibrator(
    method: str, raw: np.ndarray, y: np.ndarray, clip: float, tie_break: float = 0.0
) -> Calibrator:
    """Fit one calibration method on (raw score, 0/1 label)."""
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=float)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(raw, y)
        return Calibrator(method=method, clip=clip, tie_break=tie_break, isotonic=iso)
    if method == "sigmoid":
        # Standardise so that lbfgs converges whatever the score's scale (margins, day counts).
        center = float(np.mean(raw))
        scale = float(np.std(raw)) or 1.0
        z = ((raw - center) / scale).reshape(-1, 1)
        lr = LogisticRegression(C=np.inf)  # Platt scaling: unpenalised
        lr.fit(z, y)
        return Calibrator(
            method=method,
            clip=clip,
            center=center,
            scale=scale,
            slope=float(lr.coef_[0, 0]),
            intercept=float(lr.intercept_[0]),
        )
    raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")


def probability_scores(y: np.ndarray, prob: np.ndarray, clip: float) -> dict[str, float]:
    prob = np.clip(np.asarray(prob, dtype=float), clip, 1.0 - clip)
    return {
        "brier": float(brier_score_loss(y, prob)),
        "log_loss": float(log_loss(y, prob, labels=[0, 1])),
    }


def choose_calibrator(
    raw: np.ndarray,
    y: np.ndarray,
    methods: Sequence[str],
    folds: int,
    select_by: str,
    seed: int,
    clip: float,
    tie_break: float = 0.0,
) -> Calibrator:
    """Pick the method with the best cross-fitted `select_by` score, refit it on all rows.

    `selection` on the result records every candidate's cross-fitted Brier score and log loss,
    plus `raw` (the uncalibrated logistic of the score) for comparison.
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=int)
    if not methods:
        raise ValueError("no calibration method configured")
    n_pos = int(y.sum())
    n_neg = int(len(y) - n_pos)
    n_folds = min(folds, n_pos, n_neg)
    selection: dict[str, dict[str, float]] = {"raw": probability_scores(y, _sigmoid(raw), clip)}
    if n_folds < 2:
        # Too few positives to cross-fit: keep the first configured method, say so in `selection`.
        chosen = fit_calibrator(methods[0], raw, y, clip, tie_break)
        selection[methods[0]] = {"brier": float("nan"), "log_loss": float("nan")}
        chosen.selection = selection
        return chosen
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for method in methods:
        oof = np.empty(len(y), dtype=float)
        for fit_idx, eval_idx in splitter.split(raw.reshape(-1, 1), y):
            cal = fit_calibrator(method, raw[fit_idx], y[fit_idx], clip, tie_break)
            oof[eval_idx] = cal.transform(raw[eval_idx])
        selection[method] = probability_scores(y, oof, clip)
    best = min(methods, key=lambda m: (selection[m][select_by], methods.index(m)))
    chosen = fit_calibrator(best, raw, y, clip, tie_break)
    chosen.selection = selection
    return chosen
