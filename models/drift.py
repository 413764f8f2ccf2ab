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
- **Exact course weeks and whole course runs.** With `drift.stage_width_days` the strata are the
  weeks of course (`floor(days_since_start / width)`), not quantile buckets: the number of
  deadlines passed, and so the few values `on_time_share` takes, is the same within a week of
  a course. A week the training runs never reached falls back to the pooled shares. A scoring
  week holds a handful of course runs, each with its own character (module, schedule, whether
  the source records clicks for it), so the chance spread is simulated by drawing that many
  training runs of the same course week (`stage_runs` in the reference: per run, its row count
  and shares; no identifiers), not independent rows.
- **The end of a course run.** Who can still leave follows how close the run's end is, which
  the week of course does not say for runs of different length (week 31 is the end of a 34-week
  run, not of a 38-week one). With `drift.score_end_weeks` the score's strata are the weeks of
  course but, in a run's last weeks, the whole weeks to its end (`frame_buckets`); and
  `drift.score_nil_risk` keeps risks that are all nil (the calibrator's clip and its lowest
  steps, where nobody can leave) in one bin.

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
from models.reference import (
    psi,
    share_codes,
    share_slots,
    shares_like,
    summarise_categorical,
    summarise_numeric,
)

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
    (rows summarised), `by_stage` (the share vector — bins, [unseen,] missing — of each stage
    bucket), `stage_rows` and, with `drift.noise_by_run`, `stage_runs` (per bucket, [rows,
    *shares] of each course run). Features are summarised on the training and validation rows,
    the score on the validation rows (out of sample). Counts and shares only: no row travels
    with the model.
    """
    cfg = config.drift
    names = drift_features(list(model.feature_importance().index), model.feature_types, cfg)
    # Features describe the data of the training period, not the model: every row it holds
    # (train and validation: the served trees learn from both), so that each course week has
    # all the runs that reached it.
    # The served models pass one frame as both (every labelled row): summarise it once.
    seen = (
        train.reset_index(drop=True)
        if validation is train
        else pd.concat([train, validation], ignore_index=True)
    )
    stage = cfg.stage_feature
    staged = bool(stage and stage in train.columns and stage in validation.columns)
    seen_stage = _stage_of(cfg, seen) if staged else None
    features = {}
    for col in names:
        if model.feature_types[col] == CATEGORY:
            features[col] = summarise_categorical(seen[col].astype("str"))
        elif _centred(col, cfg, seen):
            seen[col] = centre_by_run(seen[col], seen[cfg.run_column], seen_stage)
            features[col] = summarise_numeric(seen[col], cfg.bins)
            features[col]["centred"] = True
        else:
            features[col] = summarise_numeric(seen[col], cfg.bins)
        features[col]["rows"] = len(seen)
    validation_scores = np.asarray(validation_scores, dtype="float64")
    score = summarise_numeric(validation_scores, cfg.bins)
    if train_scores is not None:
        # Bin edges over every score the model gave in training, so that stages the validation
        # rows never reached (filled from training scores below) are not one open-ended bin;
        # the pooled shares stay the validation rows' (out of sample).
        all_scores = np.r_[validation_scores, np.asarray(train_scores, dtype="float64")]
        score["edges"] = summarise_numeric(all_scores, cfg.bins)["edges"]
    if cfg.score_nil_risk is not None:
        # Risks below it are all "no risk" to the lists: no edge between them (else the point
        # mass at the calibrator's clip and its lowest steps make bins of their own).
        score["edges"] = [e for e in score["edges"] if e >= cfg.score_nil_risk]
    score["shares"], score["missing_share"] = shares_like(score, validation_scores)
    score["rows"] = len(validation_scores)
    reference: dict[str, Any] = {
        "bins": cfg.bins,
        "features_from": "training and validation rows",
        "score_from": "validation rows, out of sample",
        "features": features,
        "score": score,
    }
    if staged:
        if cfg.stage_width_days is not None:
            weeks = np.floor(pd.to_numeric(seen[stage], errors="coerce") / cfg.stage_width_days)
            top = int(np.nanmax(weeks)) + 1 if weeks.notna().any() else 0
            reference["stage"] = {
                "feature": stage,
                "width": cfg.stage_width_days,
                "buckets": max(top, 0),
            }
        else:
            edges = summarise_numeric(train[stage], cfg.stage_bins)["edges"]
            reference["stage"] = {"feature": stage, "edges": edges}
        n_buckets = bucket_count(reference["stage"])
        train_buckets = stage_buckets(reference["stage"], train[stage])
        valid_buckets = stage_buckets(reference["stage"], validation[stage])
        seen_buckets = stage_buckets(reference["stage"], seen[stage])
        by_run = cfg.noise_by_run and cfg.run_column in seen.columns
        for col, entry in features.items():
            values = seen[col].astype("str") if entry["kind"] == "categorical" else seen[col]
            _add_strata(entry, values, seen_buckets, n_buckets)
            if by_run:
                _add_run_strata(entry, values, seen_buckets, seen[cfg.run_column], n_buckets, cfg)
        score_stage = cfg.score_stage_feature
        end = cfg.course_length_feature
        if (
            score_stage
            and cfg.score_stage_width is not None
            and score_stage in train.columns
            and score_stage in validation.columns
        ):
            # The score depends on how close the end of the course is (nobody unenrols in the
            # last weeks), which the week of course does not say for runs of different length.
            top = np.floor(
                pd.to_numeric(seen[score_stage], errors="coerce") / cfg.score_stage_width
            )
            reference["score_stage"] = {
                "feature": score_stage,
                "width": cfg.score_stage_width,
                "buckets": max(int(np.nanmax(top)) + 1, 0) if top.notna().any() else 0,
            }
        elif (
            not score_stage
            and cfg.score_end_weeks is not None
            and "width" in reference["stage"]
            and end
            and end in train.columns
            and end in validation.columns
        ):
            # The weeks of course, but in a run's last weeks the weeks to its end: there the
            # score follows how close the end is (who can still leave before it), which the
            # week of course does not say for runs of different length.
            reference["score_stage"] = {**reference["stage"], "end_feature": end}
            reference["score_stage"]["end_weeks"] = cfg.score_end_weeks
        if "score_stage" in reference:
            n_buckets = bucket_count(reference["score_stage"])
            train_buckets = frame_buckets(reference["score_stage"], train)
            valid_buckets = frame_buckets(reference["score_stage"], validation)
        _add_strata(score, validation_scores, valid_buckets, n_buckets)
        if by_run and cfg.run_column in validation.columns:
            _add_run_strata(
                score, validation_scores, valid_buckets, validation[cfg.run_column], n_buckets, cfg
            )
        if train_scores is not None:
            # A time split takes validation rows from the latest runs, which have not reached
            # their late stages: there the training rows' own scores are the only reference.
            runs = train[cfg.run_column] if by_run else None
            filled = _fill_sparse_strata(
                score, train_scores, train_buckets, cfg.min_validation_stage_rows, runs, cfg
            )
            if filled:
                score["in_sample_stages"] = filled
    return reference


def _stage_of(cfg: DriftConfig, frame: pd.DataFrame) -> np.ndarray:
    """The raw stage value per row (grouping key for run-centring)."""
    return pd.to_numeric(frame[cfg.stage_feature], errors="coerce").to_numpy(dtype=float)


def _centred(name: str, cfg: DriftConfig, frame: pd.DataFrame) -> bool:
    return _skipped(name, cfg.run_centred_features) and cfg.run_column in frame.columns


def centre_by_run(values, runs, stage: np.ndarray | None) -> pd.Series:
    """Each value minus the median of its course run at the same stage (the same snapshot of
    the run): what is left is how students differ within their run, not where the run's
    schedule is. Missing values stay missing."""
    x = pd.to_numeric(pd.Series(values).reset_index(drop=True), errors="coerce").astype(float)
    keys = [pd.Series(runs).astype("str").reset_index(drop=True)]
    if stage is not None:
        keys.append(pd.Series(stage).reset_index(drop=True).fillna(-1.0))
    median = x.groupby(keys, sort=False).transform("median")
    return x - median


def _add_run_strata(
    entry: dict, values, buckets: np.ndarray, runs, n_buckets: int, cfg: DriftConfig
) -> None:
    """Per stage bucket, one [rows, *shares] per course run with at least `min_run_rows` rows
    there (at most `max_stage_runs`, the largest): how much whole runs differ at that stage."""
    codes, slots = share_codes(entry, values), share_slots(entry)
    run_codes, run_names = pd.factorize(pd.Series(runs).astype("str").reset_index(drop=True))
    # Runs in name order, so that the same rows give the same reference whatever their order.
    rank = np.empty(len(run_names), dtype=np.int64)
    rank[np.argsort(np.asarray(run_names, dtype=object), kind="stable")] = np.arange(len(rank))
    run_codes = rank[run_codes]
    n_runs = len(run_names)
    entry["stage_runs"] = []
    for b in range(n_buckets):
        rows = np.flatnonzero(buckets == b)
        parts = []
        if len(rows) and n_runs:
            counts = np.bincount(
                run_codes[rows] * slots + codes[rows], minlength=n_runs * slots
            ).reshape(n_runs, slots)
            sizes = counts.sum(axis=1)
            kept = np.flatnonzero(sizes >= cfg.min_run_rows)
            # The largest runs when there are too many (ties: the first by name).
            kept = kept[np.argsort(-sizes[kept], kind="stable")][: cfg.max_stage_runs]
            for run in np.sort(kept):
                n = int(sizes[run])
                parts.append([float(n), *(float(c / n) for c in counts[run])])
        entry["stage_runs"].append(parts)


def _fill_sparse_strata(
    entry: dict,
    values,
    buckets: np.ndarray,
    min_rows: int,
    runs=None,
    cfg: DriftConfig | None = None,
) -> list[int]:
    """Stage buckets with fewer than `min_rows` rows take `values` of that bucket instead (when
    there are more of them), and their per-run strata too when `runs` is given; returns the
    buckets filled."""
    values = pd.Series(np.asarray(values, dtype="float64")).reset_index(drop=True)
    filled = []
    by_run = None
    if runs is not None and cfg is not None and "stage_runs" in entry:
        by_run = {"kind": entry["kind"], "edges": entry.get("edges", [])}
        _add_run_strata(by_run, values, buckets, runs, len(entry["stage_rows"]), cfg)
    for b, rows in enumerate(entry["stage_rows"]):
        candidates = values[buckets == b]
        if rows < min_rows and len(candidates) > rows:
            entry["by_stage"][b] = full_shares(entry, candidates)
            entry["stage_rows"][b] = len(candidates)
            if by_run is not None:
                entry["stage_runs"][b] = by_run["stage_runs"][b]
            filled.append(b)
        elif by_run is not None and len(entry["stage_runs"][b]) < cfg.min_score_runs:
            # Too few validation runs to tell how much runs differ: the training runs' own
            # scores of that stage join them (for the chance spread only; shares stay).
            entry["stage_runs"][b] = entry["stage_runs"][b] + by_run["stage_runs"][b]
    return filled


def bucket_count(stage: dict) -> int:
    """Stage buckets of a reference's stage: weeks of course (then, with `end_weeks`, one per
    week to the course end), or quantile buckets."""
    if "width" in stage:
        return int(stage["buckets"]) + int(stage.get("end_weeks") or 0)
    return len(stage["edges"]) + 1


def frame_buckets(stage: dict, frame: pd.DataFrame) -> np.ndarray:
    """Stage bucket per row of `frame` (-1: none). With `end_feature` (the course length in
    days) a row in the last `end_weeks` weeks of its course run is in bucket `buckets + k`,
    k whole weeks (of `width` days) before the run's end; the others in their week of course.
    A frame without the course length gets the weeks of course."""
    buckets = stage_buckets(stage, frame[stage["feature"]])
    end = stage.get("end_feature")
    if not end or end not in frame.columns:
        return buckets
    elapsed = pd.to_numeric(frame[stage["feature"]], errors="coerce").to_numpy(dtype=float)
    length = pd.to_numeric(frame[end], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        to_end = np.floor((length - elapsed) / float(stage["width"]))
    last = (to_end >= 0) & (to_end < int(stage["end_weeks"]))
    return np.where(last, int(stage["buckets"]) + np.nan_to_num(to_end), buckets).astype(np.int64)


def stage_buckets(stage: dict | Sequence[float], values) -> np.ndarray:
    """Stage bucket per row (0 .. buckets - 1); -1 where the stage is missing or (weeks of
    course) outside the weeks the training rows reached. `stage` is the reference's stage (or,
    as before, a list of quantile edges)."""
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    if isinstance(stage, dict) and "width" in stage:
        with np.errstate(invalid="ignore"):
            week = np.floor(arr / float(stage["width"]))
        outside = np.isnan(week) | (week < 0) | (week >= int(stage["buckets"]))
        return np.where(outside, -1, np.nan_to_num(week, nan=-1)).astype(np.int64)
    edges = stage["edges"] if isinstance(stage, dict) else stage
    bucket = np.searchsorted(np.asarray(edges, dtype=float), arr, side="left")
    return np.where(np.isnan(arr), -1, bucket)


def _add_strata(entry: dict, values, buckets: np.ndarray, n_buckets: int) -> None:
    codes, slots = share_codes(entry, values), share_slots(entry)
    inside = (buckets >= 0) & (buckets < n_buckets)
    counts = np.bincount(
        buckets[inside] * slots + codes[inside], minlength=n_buckets * slots
    ).reshape(n_buckets, slots)
    entry["by_stage"], entry["stage_rows"] = [], []
    for row in counts:
        n = int(row.sum())
        entry["by_stage"].append([float(c / n) for c in row] if n else [])
        entry["stage_rows"].append(n)


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


def run_noise_limit(
    entry: dict,
    stage_weights: np.ndarray,
    runs: np.ndarray,
    rows: int,
    floor: float,
    quantile: float,
    draws: int,
    seed: int,
) -> float:
    """The `quantile` of the PSI of a week made like this one from the training data itself: in
    each stage bucket, as many training runs of that bucket as this week has there (drawn with
    replacement), mixed by their rows, then this week's rows drawn from that mix. Buckets with
    fewer than two training runs (and the pooled slot) draw rows from their shares only."""
    if rows <= 0 or draws <= 0:
        return float("nan")
    expected = np.maximum(expected_shares(entry, stage_weights), floor)
    rng = np.random.default_rng(seed)
    actual = np.zeros((draws, len(expected)))
    by_stage = entry.get("by_stage") or []
    stage_runs = entry.get("stage_runs") or []
    pooled = np.asarray(pooled_shares(entry), dtype=float)
    for b, weight in enumerate(stage_weights):
        n_b = int(round(weight * rows))
        if n_b <= 0:
            continue
        parts = stage_runs[b] if b < len(stage_runs) else []
        if len(parts) >= 2:
            table = np.asarray(parts, dtype=float)
            sizes, shares = table[:, 0], table[:, 1:]
            picked = rng.integers(len(parts), size=(draws, max(int(runs[b]), 1)))
            mixed = (sizes[picked][:, :, None] * shares[picked]).sum(axis=1)
            p = mixed / mixed.sum(axis=1, keepdims=True)
        else:
            base = by_stage[b] if b < len(by_stage) and by_stage[b] else pooled
            p = _probabilities(np.asarray(base, dtype=float))
            if p is None:
                return float("nan")
            p = np.broadcast_to(p, (draws, len(p)))
        if np.isnan(p).any():
            return float("nan")
        actual += weight * rng.multinomial(n_b, p) / n_b
    a = np.maximum(actual, floor)
    values = np.sum((a - expected) * np.log(a / expected), axis=1)
    return float(np.quantile(values, quantile))


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
    runs = _runs_per_bucket(reference.get("stage"), frame, config.run_column)
    records = []
    stage = reference.get("stage")
    for index, (name, entry) in enumerate(entries.items()):
        values = frame[name]
        if entry["kind"] == "categorical":
            values = values.astype("str")  # missing stays missing
        elif entry.get("centred"):
            if config.run_column not in frame.columns:
                raise ValueError(f"drift check: the frame lacks {config.run_column!r}")
            raw = None
            if stage and stage.get("feature") in frame.columns:
                raw = pd.to_numeric(frame[stage["feature"]], errors="coerce").to_numpy(float)
            values = centre_by_run(values, frame[config.run_column], raw)
        records.append(
            _row(name, FEATURE_KIND, entry, values, weights, config, seed + index, rows, runs)
        )
    if reference.get("score"):
        score_weights, score_runs = weights, runs
        if reference.get("score_stage"):
            score_weights = _stage_weights(reference["score_stage"], frame)
            score_runs = _runs_per_bucket(reference["score_stage"], frame, config.run_column)
        records.append(
            _row(
                SCORE,
                SCORE_KIND,
                reference["score"],
                scores,
                score_weights,
                config,
                seed + len(entries),
                rows,
                score_runs,
            )
        )
    table = pd.DataFrame.from_records(records, columns=DRIFT_COLUMNS).astype(_DTYPES)
    return DriftCheck(table, config.psi_threshold, rows, True, weights is not None)


def _week_buckets(stage: dict | None, frame: pd.DataFrame) -> np.ndarray | None:
    """Each row's stage bucket, the pooled slot (= bucket count) where it has none."""
    if not stage or stage.get("feature") not in frame.columns or len(frame) == 0:
        return None
    buckets = frame_buckets(stage, frame)
    return np.where(buckets < 0, bucket_count(stage), buckets)


def _stage_weights(stage: dict | None, frame: pd.DataFrame) -> np.ndarray | None:
    buckets = _week_buckets(stage, frame)
    if buckets is None:
        return None
    counts = np.bincount(buckets, minlength=bucket_count(stage) + 1)
    return counts / len(frame)


def _runs_per_bucket(stage: dict | None, frame: pd.DataFrame, run_column: str) -> np.ndarray | None:
    """How many course runs of this week are in each stage bucket (last: the pooled slot)."""
    buckets = _week_buckets(stage, frame)
    if buckets is None or run_column not in frame.columns:
        return None
    pairs = pd.DataFrame({"b": buckets, "run": frame[run_column].astype("str").to_numpy()})
    counts = pairs.drop_duplicates().groupby("b").size()
    out = np.zeros(bucket_count(stage) + 1, dtype=np.int64)
    out[counts.index.to_numpy(dtype=np.int64)] = counts.to_numpy()
    return out


def _row(
    name: str,
    kind: str,
    entry: dict,
    values,
    weights: np.ndarray | None,
    config: DriftConfig,
    seed: int,
    rows: int,
    runs: np.ndarray | None = None,
) -> tuple:
    if rows == 0:
        return (name, kind, float("nan"), float("nan"), False)
    expected = expected_shares(entry, weights)
    value = psi(list(expected), full_shares(entry, values), config.psi_floor)
    limit = config.psi_threshold
    if config.noise_quantile is not None and runs is not None and entry.get("stage_runs"):
        noise = run_noise_limit(
            entry,
            weights,
            runs,
            rows,
            config.psi_floor,
            config.noise_quantile,
            config.noise_draws,
            seed,
        )
        limit = max(limit, noise) if not np.isnan(noise) else limit
    elif config.noise_quantile is not None:
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
