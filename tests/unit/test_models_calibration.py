"""Calibration: better probabilities than the raw model on a planted case; choice recorded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from models.calibration import choose_calibrator, fit_calibrator

CLIP = 1e-6


def planted(n: int, seed: int, shape: str):
    """Raw scores whose logistic is badly calibrated; labels drawn from the true probability."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 2, n)
    if shape == "logistic":
        true = 1 / (1 + np.exp(-(0.4 * raw - 2.0)))  # overconfident and shifted (class weights)
    else:
        true = np.where(raw > 1.0, 0.6, 0.03)  # a step: no sigmoid can follow it
    y = (rng.random(n) < true).astype(int)
    return raw, y


@pytest.mark.parametrize("shape", ["logistic", "step"])
def test_calibrated_probabilities_beat_raw_on_held_out_rows(shape):
    raw_fit, y_fit = planted(4000, 1, shape)
    raw_eval, y_eval = planted(4000, 2, shape)
    cal = choose_calibrator(raw_fit, y_fit, ("isotonic", "sigmoid"), 5, "brier", 0, CLIP)
    raw_brier = brier_score_loss(y_eval, 1 / (1 + np.exp(-raw_eval)))
    cal_brier = brier_score_loss(y_eval, cal.transform(raw_eval))
    assert cal_brier < raw_brier * 0.8
    assert cal.method in ("isotonic", "sigmoid")
    assert set(cal.selection) == {"raw", "isotonic", "sigmoid"}
    chosen = cal.selection[cal.method]["brier"]
    assert chosen == min(cal.selection[m]["brier"] for m in ("isotonic", "sigmoid"))


def test_step_shape_chooses_isotonic():
    raw, y = planted(6000, 3, "step")
    cal = choose_calibrator(raw, y, ("isotonic", "sigmoid"), 5, "brier", 0, CLIP)
    assert cal.method == "isotonic"


def test_logistic_shape_chooses_sigmoid_by_log_loss():
    raw, y = planted(6000, 4, "logistic")
    cal = choose_calibrator(raw, y, ("isotonic", "sigmoid"), 5, "log_loss", 0, CLIP)
    assert cal.method == "sigmoid"


def test_only_configured_methods_are_tried():
    raw, y = planted(2000, 5, "logistic")
    cal = choose_calibrator(raw, y, ("isotonic",), 3, "brier", 0, CLIP)
    assert cal.method == "isotonic"
    assert "sigmoid" not in cal.selection


def test_too_few_positives_falls_back_to_first_method():
    raw = np.linspace(-3, 3, 50)
    y = np.zeros(50, dtype=int)
    y[-1] = 1
    cal = choose_calibrator(raw, y, ("sigmoid", "isotonic"), 5, "brier", 0, CLIP)
    assert cal.method == "sigmoid"
    assert np.isnan(cal.selection["sigmoid"]["brier"])


def test_probabilities_are_clipped_and_monotone():
    raw, y = planted(2000, 6, "logistic")
    for method in ("isotonic", "sigmoid"):
        cal = fit_calibrator(method, raw, y, 0.01)
        grid = np.linspace(-10, 10, 101)
        prob = cal.transform(grid)
        assert prob.min() >= 0.01 and prob.max() <= 0.99
        assert (np.diff(prob) >= -1e-12).all()


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibrator("beta", np.zeros(4), np.array([0, 1, 0, 1]), CLIP)


def test_isotonic_tie_break_keeps_the_raw_order():
    raw, y = planted(3000, 7, "step")
    plain = fit_calibrator("isotonic", raw, y, CLIP)
    broken = fit_calibrator("isotonic", raw, y, CLIP, tie_break=1e-6)
    grid = np.sort(np.random.default_rng(0).normal(0, 2, 500))
    assert (np.diff(plain.transform(grid)) == 0).any(), "isotonic has plateaus"
    assert (np.diff(broken.transform(grid)) > 0).all(), "the tie-break orders every plateau"
    assert np.abs(broken.transform(grid) - plain.transform(grid)).max() <= 1e-6 + 1e-12
