"""Test-period metrics for a score: what a curator would get from it, week by week.

Pure functions over arrays. "Each week's population" is every test snapshot taken in the same
calendar week; the top share and the curator capacity are applied per week (and per curator for
capacity), as the weekly lists would be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from configs.schema import Config

SMALL_GROUPS = "(small groups)"
MISSING = "(missing)"  # the segment value of rows with no value


def _both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and 0 < y.sum() < len(y)


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC (average precision); NaN when only one class is present."""
    y = np.asarray(y, dtype=int)
    if not _both_classes(y):
        return {"roc_auc": math.nan, "pr_auc": math.nan}
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
    }


def rank_roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC from average ranks (Mann-Whitney U): equal to sklearn's, without its overhead.

    Segment tables compute it for dozens of small groups, where the validation per call dominates.
    """
    y = np.asarray(y, dtype=int)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(score, method="average")
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def probability_metrics(y: np.ndarray, prob: np.ndarray, clip: float) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(prob, dtype=float), clip, 1 - clip)
    return {
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "mean_prob": float(p.mean()),
    }


def week_of(as_of: pd.Series) -> np.ndarray:
    """Calendar week (Monday start) of each snapshot, as an integer key."""
    days = (as_of - pd.Timestamp("1970-01-05", tz="UTC")).dt.days.to_numpy()  # a Monday
    return days // 7


def top_in_groups(score: np.ndarray, groups: np.ndarray, share: float | None, k: int | None):
    """Boolean mask of the rows flagged in each group: top ceil(share * n) or top k by score.

    Ties are broken by row order, so the mask is deterministic.
    """
    score = np.asarray(score, dtype=float)
    n = len(score)
    flagged = np.zeros(n, dtype=bool)
    if n == 0:
        return flagged
    # Sort by group, then by descending score; stable so equal scores keep row order.
    order = np.lexsort((np.arange(n), -score, groups))
    sorted_groups = np.asarray(groups)[order]
    starts = np.r_[0, np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1]
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    if share is not None:
        limit = np.ceil(share * sizes).astype(int)
    else:
        limit = np.full(len(sizes), int(k or 0))
    flagged[order] = rank < np.repeat(limit, sizes)
    return flagged


def flagged_metrics(y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    n_flag = int(flagged.sum())
    n_pos = int(y.sum())
    hits = int(y[flagged].sum())
    precision = hits / n_flag if n_flag else math.nan
    base = n_pos / len(y) if len(y) else math.nan
    return {
        "precision": precision,
        "recall": hits / n_pos if n_pos else math.nan,
        "lift": precision / base if base and not math.isnan(precision) else math.nan,
        "flagged": float(n_flag),
    }


def auc_by_week_of_course(
    y: np.ndarray, score: np.ndarray, week_of_course: np.ndarray, min_rows: int
) -> pd.DataFrame:
    rows = []
    y = np.asarray(y, dtype=int)
    for week in np.unique(week_of_course):
        m = week_of_course == week
        if m.sum() < min_rows or not _both_classes(y[m]):
            continue
        rows.append(
            {
                "week": int(week),
                "rows": int(m.sum()),
                "base_rate": float(y[m].mean()),
                **ranking_metrics(y[m], score[m]),
            }
        )
    return pd.DataFrame(rows, columns=["week", "rows", "base_rate", "roc_auc", "pr_auc"])


def segment_table(
    y: np.ndarray,
    score: np.ndarray,
    flagged: np.ndarray,
    segments: dict[str, pd.Series],
    min_size: int,
) -> pd.DataFrame:
    """Per segment value: rows, base rate, ROC-AUC and the share flagged in the weekly top share.

    Values with fewer than `min_size` rows are pooled into one "(small groups)" row, so that no
    small group (and no rare attribute value) is singled out.
    """
    y = np.asarray(y, dtype=int)
    out = []
    for name, values in segments.items():
        # Group by integer codes (one factorize), not by comparing strings once per value.
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        names = np.array([str(u) for u in uniques] + [MISSING], dtype=object)
        codes = np.where(codes < 0, len(uniques), codes)
        counts = np.bincount(codes, minlength=len(names))
        # Distinct values may print alike ("1" and 1): merge them by their printed name.
        labels, label_of_code = np.unique(names, return_inverse=True)
        label_counts = np.bincount(label_of_code, weights=counts, minlength=len(labels))
        small = (label_counts < min_size) & (label_counts > 0)
        shown = np.where(small, SMALL_GROUPS, labels).astype(object)
        # Rows ordered by an integer id per shown name (in name order): sorting 300k strings
        # per segment cost seconds.
        shown_names, shown_id = np.unique(shown, return_inverse=True)
        group = shown_id[label_of_code][codes]
        order = np.argsort(group, kind="stable")
        ids, starts = np.unique(group[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for value, lo, hi in zip(shown_names[ids], starts, ends, strict=True):
            rows = order[lo:hi]
            if value == SMALL_GROUPS and len(rows) < min_size:
                continue  # even pooled, too small to report
            out.append(
                {
                    "segment": name,
                    "value": value,
                    "rows": int(len(rows)),
                    "base_rate": float(y[rows].mean()),
                    "roc_auc": rank_roc_auc(y[rows], score[rows]),
                    "flagged_share": float(flagged[rows].mean()),
                }
            )
    return pd.DataFrame(
        out, columns=["segment", "value", "rows", "base_rate", "roc_auc", "flagged_share"]
    )


def segment_values(values: pd.Series, max_values: int, bins: int) -> pd.Series:
    """Groups for a segment column: its values, or quantile bins for a many-valued number."""
    if not pd.api.types.is_numeric_dtype(values.dtype) or values.nunique() <= max_values:
        return values
    binned = pd.qcut(values, q=bins, duplicates="drop")
    # Bin labels as text, converted once per bin rather than once per row.
    return binned.cat.rename_categories([str(c) for c in binned.cat.categories])


@dataclass
class Evaluation:
    """Metrics of one scorer on the test rows plus the tables behind them."""

    metrics: dict[str, float]
    by_week: pd.DataFrame
    segments: pd.DataFrame
    flagged: np.ndarray = field(repr=False)
    prob: np.ndarray | None = field(default=None, repr=False)  # the scorer's probabilities
    rank: np.ndarray | None = field(default=None, repr=False)  # ...and what ordered the rows


def top_label(share: float) -> str:
    return f"top{round(share * 100)}"


def evaluate_scores(
    test: pd.DataFrame,
    y: np.ndarray,
    prob: np.ndarray,
    config: Config,
    rank_score: np.ndarray | None = None,
) -> Evaluation:
    """All test metrics for one scorer. `rank_score` (default `prob`) orders the rows."""
    ev = config.evaluation
    score = np.asarray(prob if rank_score is None else rank_score, dtype=float)
    y = np.asarray(y, dtype=int)
    metrics: dict[str, float] = {"rows": float(len(y)), "base_rate": float(y.mean())}
    metrics.update(ranking_metrics(y, score))
    metrics.update(probability_metrics(y, prob, config.model.prob_clip))
    weeks = week_of(test["as_of"])
    tag = top_label(ev.top_share)
    flagged = top_in_groups(score, weeks, share=ev.top_share, k=None)
    for key, value in flagged_metrics(y, flagged).items():
        metrics[f"{key}_{tag}"] = value
    curator_code, curator_names = pd.factorize(test["curator_id"].astype("str").fillna("(none)"))
    week_code = pd.factorize(weeks)[0]
    # One integer per (week, curator): factorising a MultiIndex of 300k strings cost seconds.
    week_curator = week_code.astype(np.int64) * max(len(curator_names), 1) + curator_code
    at_capacity = top_in_groups(score, week_curator, share=None, k=config.scoring.capacity)
    for key, value in flagged_metrics(y, at_capacity).items():
        metrics[f"{key}_capacity"] = value
    week_of_course = ((test["as_of"] - test["course_start"]).dt.days // 7).to_numpy()
    by_week = auc_by_week_of_course(y, score, week_of_course, ev.min_week_rows)
    segments = {"course_id": test["course_id"]}
    for col in test.columns:
        if col.startswith("attr_"):
            segments[col] = segment_values(
                test[col], ev.segment_max_values, ev.segment_numeric_bins
            )
    seg = segment_table(y, score, flagged, segments, ev.min_segment_size)
    for name in segments:
        part = seg[seg["segment"] == name]
        shares = part["flagged_share"]
        if len(part) > 1 and shares.min() > 0:
            metrics[f"flag_ratio_{name}"] = float(shares.max() / shares.min())
    return Evaluation(
        metrics=metrics,
        by_week=by_week,
        segments=seg,
        flagged=flagged,
        prob=np.asarray(prob, dtype=float),
        rank=score,
    )


def lift_curve(y: np.ndarray, score: np.ndarray, points: int) -> pd.DataFrame:
    """Cumulative lift at each of `points` shares of the population ranked by score."""
    y = np.asarray(y, dtype=int)
    order = np.lexsort((np.arange(len(y)), -np.asarray(score, dtype=float)))
    hits = np.cumsum(y[order])
    base = y.mean() if len(y) else math.nan
    shares = np.linspace(1 / points, 1, points)
    idx = np.maximum(np.ceil(shares * len(y)).astype(int) - 1, 0)
    precision = hits[idx] / (idx + 1)
    return pd.DataFrame({"share": shares, "precision": precision, "lift": precision / base})


def calibration_table(y: np.ndarray, prob: np.ndarray, bins: int) -> pd.DataFrame:
    """Mean predicted vs observed rate in equal-count bins of the predicted probability."""
    y = np.asarray(y, dtype=float)
    prob = np.asarray(prob, dtype=float)
    order = np.argsort(prob, kind="stable")
    chunks = np.array_split(order, bins)
    rows = [
        {"predicted": float(prob[c].mean()), "observed": float(y[c].mean()), "rows": len(c)}
        for c in chunks
        if len(c)
    ]
    return pd.DataFrame(rows, columns=["predicted", "observed", "rows"])
