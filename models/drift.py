"""Drift guard at scoring: how far this week's inputs and scores are from the training data.

The model carries a training reference (`models.reference`): bin edges and shares of its most
important features and of the score. `check_drift` puts this week's values into the same bins
and computes the population stability index (PSI) per feature and for the score.

Two things would make PSI cry wolf on a healthy week, and both are handled here:

- **Course stage.** A weekly snapshot holds the course runs that happen to be running, each at
  one stage, while training pools every week of every run. Features such as "days since the
  last submission" and the score itself depend on the stage, so a pooled reference flags an
  ordinary week. A reference built by `build_drift_reference` keeps the shares per stage bucket
  (of `drift.stage_feature`), and the expected shares are mixed to this week's stage mix.
  Calendar features (`drift.skip_features`) describe the calendar, not the data: not checked.
- **Sample size.** A week of 100 students varies by chance; PSI of a sample of n rows drawn from
  the training distribution itself has a known spread. The limit of a row is the larger of
  `drift.psi_threshold` and the `drift.noise_quantile` of that spread (simulated), so a small
  school is not warned about noise.

Plain functions: no IO, no MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import Config, DriftConfig
from models.model import ATTR_PREFIX, CATEGORY
from models.reference import psi, shares_like, summarise_categorical, summarise_numeric

SCORE = "score"  # the name of the score's row
FEATURE_KIND = "feature"
SCORE_KIND = "score"
DRIFT_COLUMNS = ["name", "kind", "psi", "limit", "drifted"]
_DTYPES = {"name": "str", "kind": "str", "psi": "float64", "limit": "float64", "drifted": "bool"}


@dataclass(frozen=True)
class DriftCheck:
    """One week's drift check: a row per checked input (features by importance, the score last).

    `table` columns: name, kind ("feature" | "score"), psi, limit (the PSI above which the row
    counts as drifted), drifted. `psi` is NaN when there was nothing to compare (no rows).
    """

    table: pd.DataFrame
    threshold: float
    rows: int
    has_reference: bool
    stage_matched: bool

    @property
    def drifted(self) -> pd.DataFrame:
        return self.table[self.table["drifted"].to_numpy(dtype=bool)]

    @property
    def count(self) -> int:
        return int(self.table["drifted"].sum())

    @property
    def max_psi(self) -> float:
        values = self.table["psi"].to_numpy(dtype="float64")
        values = values[~np.isnan(values)]
        return float(values.max()) if len(values) else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-friendly counts and the drifted inputs (names and PSI only: no values)."""
        return {
            "checked": len(self.table),
            "drifted": self.count,
            "threshold": self.threshold,
            "max_psi": _rounded(self.max_psi),
            "rows": self.rows,
            "stage_matched": self.stage_matched,
            "has_reference": self.has_reference,
            "drifted_inputs": [
                {"name": str(r.name), "psi": _rounded(r.psi), "limit": _rounded(r.limit)}
                for r in self.drifted.itertuples(index=False)
            ],
        }


def _rounded(value: float, digits: int = 4) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), digits)


# --------------------------------------------------------------------------------- training


def drift_features(
    names_by_importance: Sequence[str], feature_types: dict[str, str], config: DriftConfig
) -> list[str]:
    """The features a reference summarises: the most important ones (first `top_features`),
    leaving out `skip_features` (calendar) and categorical attr_* (their values must not travel
    with the model beyond the category list it needs to score)."""
    chosen = []
    for name in names_by_importance:
        if _skipped(name, config.skip_features):
            continue
        if name.startswith(ATTR_PREFIX) and feature_types.get(name) == CATEGORY:
            continue
        chosen.append(name)
    return chosen[: config.top_features]


def _skipped(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def build_drift_reference(
    model,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    validation_scores,
    config: Config,
    train_scores=None,
) -> dict:
    """The training reference for drift checks, with shares per course-stage bucket.

    Same layout as `models.train.build_reference` (so `psi_against` still works on its
    entries), plus `stage` (the stage feature and its bucket edges) and, per entry, `rows`
    (training rows summarised), `by_stage` (the share vector — bins, [unseen,] missing — of each
    stage bucket) and `stage_rows`. Features are summarised on the training rows, the score on
    the validation rows (out of sample). Counts and shares only: no row travels with the model.
    """
    cfg = config.drift
    names = drift_features(list(model.feature_importance().index), model.feature_types, cfg)
    features = {}
    for col in names:
        if model.feature_types[col] == CATEGORY:
            features[col] = summarise_categorical(train[col].astype("str"))
        else:
            features[col] = summarise_numeric(train[col], cfg.bins)
        features[col]["rows"] = len(train)
    validation_scores = np.asarray(validation_scores, dtype="float64")
    score = summarise_numeric(validation_scores, cfg.bins)
    if train_scores is not None:
        # Bin edges over every score the model gave in training, so that stages the validation
        # rows never reached (filled from training scores below) are not one open-ended bin;
        # the pooled shares stay the validation rows' (out of sample).
        all_scores = np.r_[validation_scores, np.asarray(train_scores, dtype="float64")]
        score["edges"] = summarise_numeric(all_scores, cfg.bins)["edges"]
        score["shares"], score["missing_share"] = shares_like(score, validation_scores)
    score["rows"] = len(validation_scores)
    reference: dict[str, Any] = {
        "bins": cfg.bins,
        "features_from": "training rows",
        "score_from": "validation rows, out of sample",
        "features": features,
        "score": score,
    }
    stage = cfg.stage_feature
    if stage and stage in train.columns and stage in validation.columns:
        edges = summarise_numeric(train[stage], cfg.stage_bins)["edges"]
        reference["stage"] = {"feature": stage, "edges": edges}
        train_buckets = stage_buckets(edges, train[stage])
        for col, entry in features.items():
            values = train[col].astype("str") if entry["kind"] == "categorical" else train[col]
            _add_strata(entry, values, train_buckets, len(edges) + 1)
        _add_strata(
            score, validation_scores, stage_buckets(edges, validation[stage]), len(edges) + 1
        )
        if train_scores is not None:
            # A time split takes validation rows from the latest runs, which have not reached
            # their late stages: there the training rows' own scores are the only reference.
            filled = _fill_sparse_strata(
                score, train_scores, train_buckets, cfg.min_validation_stage_rows
            )
            if filled:
                score["in_sample_stages"] = filled
    return reference


def _fill_sparse_strata(entry: dict, values, buckets: np.ndarray, min_rows: int) -> list[int]:
    """Stage buckets with fewer than `min_rows` rows take `values` of that bucket instead (when
    there are more of them); returns the buckets filled."""
    values = pd.Series(np.asarray(values, dtype="float64")).reset_index(drop=True)
    filled = []
    for b, rows in enumerate(entry["stage_rows"]):
        candidates = values[buckets == b]
        if rows < min_rows and len(candidates) > rows:
            entry["by_stage"][b] = full_shares(entry, candidates)
            entry["stage_rows"][b] = len(candidates)
            filled.append(b)
    return filled


def stage_buckets(edges: Sequence[float], values) -> np.ndarray:
    """Stage bucket per row (0 .. len(edges)); -1 where the stage is missing."""
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    bucket = np.searchsorted(np.asarray(edges, dtype=float), arr, side="left")
    return np.where(np.isnan(arr), -1, bucket)


def _add_strata(entry: dict, values, buckets: np.ndarray, n_buckets: int) -> None:
    values = pd.Series(values).reset_index(drop=True)
    entry["by_stage"], entry["stage_rows"] = [], []
    for b in range(n_buckets):
        rows = values[buckets == b]
        entry["by_stage"].append(full_shares(entry, rows) if len(rows) else [])
        entry["stage_rows"].append(len(rows))


# ---------------------------------------------------------------------------------- scoring


def full_shares(entry: dict, values) -> list[float]:
    """Shares of `values` in the entry's bins (categories, unseen), then the missing share."""
    shares, missing = shares_like(entry, values)
    return [*shares, missing]


def pooled_shares(entry: dict) -> list[float]:
    """The entry's training shares in the layout of `full_shares`."""
    shares = list(entry["shares"])
    if entry["kind"] == "categorical":
        shares.append(0.0)  # the "unseen category" bin
    return [*shares, float(entry["missing_share"])]


@dataclass(frozen=True)
class _Component:
    """One part of the expected distribution: its weight, shares and training rows (0: unknown)."""

    weight: float
    shares: np.ndarray
    rows: int


def _components(entry: dict, stage_weights: np.ndarray | None) -> list[_Component]:
    """The expected distribution as a weighted mix: one component per stage bucket (this week's
    share of rows in it) plus the pooled shares for rows without a stage, or pooled alone."""
    pooled = np.asarray(pooled_shares(entry), dtype=float)
    pooled_rows = int(entry.get("rows") or 0)
    by_stage = entry.get("by_stage")
    if stage_weights is None or not by_stage:
        return [_Component(1.0, pooled, pooled_rows)]
    rows = entry.get("stage_rows") or [0] * len(by_stage)
    parts = []
    for weight, shares, n in zip(stage_weights[:-1], by_stage, rows, strict=True):
        if weight > 0:
            # A bucket without training rows falls back to the pooled shares.
            if shares:
                parts.append(_Component(float(weight), np.asarray(shares, dtype=float), int(n)))
            else:
                parts.append(_Component(float(weight), pooled, pooled_rows))
    if stage_weights[-1] > 0:
        parts.append(_Component(float(stage_weights[-1]), pooled, pooled_rows))
    return parts


def expected_shares(entry: dict, stage_weights: np.ndarray | None) -> np.ndarray:
    """Training shares mixed to this week's stage mix (`stage_weights`: one weight per bucket
    and, last, the weight of rows with a missing stage); pooled when there are no strata."""
    parts = _components(entry, stage_weights)
    return np.sum([p.weight * p.shares for p in parts], axis=0)


def noise_limit(
    entry: dict,
    stage_weights: np.ndarray | None,
    rows: int,
    floor: float,
    quantile: float,
    draws: int,
    seed: int,
) -> float:
    """The `quantile` of the PSI between two samples of one distribution: the week's `rows`
    and the training rows behind the reference (when the reference records them). That is how
    large PSI gets by chance alone."""
    parts = _components(entry, stage_weights)
    if rows <= 0 or draws <= 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    expected = np.zeros((draws, len(parts[0].shares)))
    for part in parts:
        p = _probabilities(part.shares)
        if p is None:
            return float("nan")
        sample = rng.multinomial(part.rows, p, size=draws) / part.rows if part.rows else p
        expected += part.weight * sample
    p = _probabilities(np.sum([q.weight * q.shares for q in parts], axis=0))
    if p is None:
        return float("nan")
    actual = rng.multinomial(rows, p, size=draws) / rows
    e = np.maximum(expected, floor)
    a = np.maximum(actual, floor)
    values = np.sum((a - e) * np.log(a / e), axis=1)
    return float(np.quantile(values, quantile))


def _probabilities(shares: np.ndarray) -> np.ndarray | None:
    p = np.asarray(shares, dtype=float)
    if np.isnan(p).any() or (p < 0).any() or p.sum() <= 0:
        return None
    return p / p.sum()


def check_drift(
    reference: dict | None,
    frame: pd.DataFrame,
    scores,
    config: DriftConfig,
    seed: int = 0,
) -> DriftCheck:
    """PSI of the reference's features (first `top_features` not in `skip_features`) and of
    the score against training; a row is drifted when its PSI exceeds its limit.

    A missing or empty reference gives an empty table (`has_reference` False): nothing to
    compare with, which the caller reports. A reference feature absent from `frame` is an error
    (the scorer checks the model's columns before this runs).
    """
    scores = np.asarray(scores, dtype="float64")
    rows = len(frame)
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})
    if not reference or (not reference.get("features") and not reference.get("score")):
        return DriftCheck(empty, config.psi_threshold, rows, False, False)
    if len(scores) != rows:
        raise ValueError(f"{len(scores)} scores for {rows} rows")
    entries = {
        name: entry
        for name, entry in reference.get("features", {}).items()
        if not _skipped(name, config.skip_features)
    }
    entries = dict(list(entries.items())[: config.top_features])
    absent = [name for name in entries if name not in frame.columns]
    if absent:
        raise ValueError("drift check: the frame lacks reference features " + ", ".join(absent))

    weights = _stage_weights(reference.get("stage"), frame)
    records = []
    for index, (name, entry) in enumerate(entries.items()):
        values = frame[name]
        if entry["kind"] == "categorical":
            values = values.astype("str")  # missing stays missing
        records.append(_row(name, FEATURE_KIND, entry, values, weights, config, seed + index, rows))
    if reference.get("score"):
        records.append(
            _row(
                SCORE,
                SCORE_KIND,
                reference["score"],
                scores,
                weights,
                config,
                seed + len(entries),
                rows,
            )
        )
    table = pd.DataFrame.from_records(records, columns=DRIFT_COLUMNS).astype(_DTYPES)
    return DriftCheck(table, config.psi_threshold, rows, True, weights is not None)


def _stage_weights(stage: dict | None, frame: pd.DataFrame) -> np.ndarray | None:
    if not stage or stage.get("feature") not in frame.columns or len(frame) == 0:
        return None
    buckets = stage_buckets(stage["edges"], frame[stage["feature"]])
    n_buckets = len(stage["edges"]) + 1
    counts = np.bincount(np.where(buckets < 0, n_buckets, buckets), minlength=n_buckets + 1)
    return counts / len(frame)


def _row(
    name: str,
    kind: str,
    entry: dict,
    values,
    weights: np.ndarray | None,
    config: DriftConfig,
    seed: int,
    rows: int,
) -> tuple:
    if rows == 0:
        return (name, kind, float("nan"), float("nan"), False)
    expected = expected_shares(entry, weights)
    value = psi(list(expected), full_shares(entry, values), config.psi_floor)
    limit = config.psi_threshold
    if config.noise_quantile is not None:
        noise = noise_limit(
            entry,
            weights,
            rows,
            config.psi_floor,
            config.noise_quantile,
            config.noise_draws,
            seed,
        )
        limit = max(limit, noise) if not np.isnan(noise) else limit
    drifted = bool(not np.isnan(value) and value > limit)
    return (name, kind, float(value), float(limit), drifted)
