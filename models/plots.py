"""Evaluation plots as matplotlib Figures (no pyplot state, no file IO; callers save or log them).

Curves take `scorers`: a mapping name -> score array on the same test rows, so the model and the
baselines appear on one chart. No plot shows student identifiers or attr_* values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from models.evaluation import calibration_table, lift_curve

FIGSIZE = (6.0, 4.5)


def _figure(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def roc_figure(y: np.ndarray, scorers: dict[str, np.ndarray]) -> Figure:
    fig, ax = _figure("ROC on the test period", "false positive rate", "true positive rate")
    for name, score in scorers.items():
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, score):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.legend(loc="lower right")
    return fig


def pr_figure(y: np.ndarray, scorers: dict[str, np.ndarray]) -> Figure:
    fig, ax = _figure("Precision-recall on the test period", "recall", "precision")
    for name, score in scorers.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(y, score):.3f})")
    ax.axhline(float(np.mean(y)), color="grey", linestyle=":", linewidth=1, label="base rate")
    ax.legend(loc="upper right")
    return fig


def calibration_figure(y: np.ndarray, probs: dict[str, np.ndarray], bins: int) -> Figure:
    fig, ax = _figure("Calibration on the test period", "mean predicted", "observed dropout rate")
    top = 0.0
    for name, prob in probs.items():
        table = calibration_table(y, prob, bins)
        ax.plot(table["predicted"], table["observed"], marker="o", label=name)
        top = max(top, float(table["predicted"].max()), float(table["observed"].max()))
    ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="perfect")
    ax.legend(loc="upper left")
    return fig


def lift_figure(y: np.ndarray, scorers: dict[str, np.ndarray], points: int) -> Figure:
    fig, ax = _figure("Cumulative lift", "share of students flagged", "lift over base rate")
    for name, score in scorers.items():
        curve = lift_curve(y, score, points)
        ax.plot(curve["share"], curve["lift"], marker=".", label=name)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.legend(loc="upper right")
    return fig


def auc_by_week_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    fig, ax = _figure("ROC-AUC by week of course", "week of course", "ROC-AUC")
    for name, table in tables.items():
        if len(table):
            ax.plot(table["week"], table["roc_auc"], marker=".", label=name)
    ax.legend(loc="lower right")
    return fig


def importance_figure(importance: pd.Series, top: int) -> Figure:
    shown = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(FIGSIZE[0], max(FIGSIZE[1], 0.3 * len(shown))), layout="constrained")
    ax = fig.subplots()
    ax.barh(shown.index, shown.to_numpy())
    ax.set_title("Feature importance (total gain)")
    ax.set_xlabel("gain")
    return fig


def shap_summary_figure(
    contributions: pd.DataFrame, values: pd.DataFrame, top: int, seed: int
) -> Figure:
    """SHAP-style summary: per top feature, each row's contribution, coloured by feature value.

    Categorical columns (attr_*) are drawn grey: their values are not shown.
    """
    contrib = contributions.drop(columns=["bias"], errors="ignore")
    order = contrib.abs().mean().sort_values(ascending=False).index[:top][::-1]
    fig = Figure(figsize=(FIGSIZE[0] + 1, max(FIGSIZE[1], 0.35 * len(order))), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(seed)
    for i, col in enumerate(order):
        x = contrib[col].to_numpy(dtype=float)
        jitter = rng.uniform(-0.3, 0.3, len(x))
        v = values[col] if col in values.columns else None
        if v is not None and pd.api.types.is_numeric_dtype(v.dtype):
            arr = v.to_numpy(dtype=float)
            lo, hi = np.nanpercentile(arr, [5, 95]) if np.isfinite(arr).any() else (0.0, 1.0)
            colour = np.clip((arr - lo) / ((hi - lo) or 1.0), 0, 1)
            colour = np.where(np.isnan(colour), 0.5, colour)
            ax.scatter(x, i + jitter, c=colour, cmap="coolwarm", s=4, alpha=0.6, vmin=0, vmax=1)
        else:
            ax.scatter(x, i + jitter, color="grey", s=4, alpha=0.6)
    ax.set_yticks(range(len(order)), list(order))
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_title("Contributions to the dropout log-odds (red = high feature value)")
    ax.set_xlabel("contribution (log-odds)")
    return fig


def weekly_series_figure(
    weekly: pd.DataFrame, columns: dict[str, str], title: str, ylabel: str
) -> Figure:
    """Metrics of a backtest over its weeks: one line per `columns` entry (column -> label)."""
    fig, ax = _figure(title, "as of", ylabel)
    for column, label in columns.items():
        ax.plot(pd.to_datetime(weekly["as_of"]), weekly[column], marker="o", label=label)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    return fig


def lead_time_figure(lead_weeks: pd.Series) -> Figure:
    """How many weeks before leaving the dropouts who were reached were first listed."""
    fig, ax = _figure("Lead time: first listing to leaving", "weeks", "dropouts")
    values = lead_weeks.dropna().to_numpy(dtype=float)
    if len(values):
        ax.hist(values, bins=np.arange(0, max(values.max(), 1) + 2) - 0.5)
    return fig
