"""Time-ordered split of labelled snapshots into training, validation and test rows.

Reported metrics must come from later data than the model learned from, so there is no random
split. Two methods (config `split.method`):

- `course_start`: course runs are ordered by start. The test period is every run starting on or
  after `test_from` (e.g. 2014-01-01 on OULAD: train on the 2013 runs, test on the 2014 runs), or,
  without `test_from`, the latest runs holding about `test_share` of the labelled *snapshots*
  (runs sharing a start date go together). When no start date leaves at most `max_test_share`
  of the snapshots to test (many runs share the latest start date, as all six OULAD 2013J runs
  do), the split falls back to `cutoff` by snapshot date (`course_start_fallback: cutoff`) or
  stops with an error naming the setting (`error`). Validation is the latest `validation_share`
  of the training runs (ties by id).
- `cutoff`: snapshots at or after `cutoff` (default: the date leaving `test_share` of the rows
  after it) are tested. With `embargo`, training keeps only snapshots whose label window closes
  by the cutoff, so no training label looks into the test period; validation is the latest
  `validation_share` of the training period, embargoed the same way.

Only labelled rows take part; unlabelled snapshots are never trained or tested on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import SplitConfig
from features.catalog import LABEL_COLUMN
from features.errors import NotaloneError

PARTS = ("train", "validation", "test")


class SplitError(NotaloneError):
    """The data cannot be split by time as configured."""


@dataclass(frozen=True)
class PartSummary:
    """One part of the split: rows, dropouts, course runs and its date ranges (ISO strings)."""

    rows: int
    positives: int
    course_runs: int
    as_of_min: str | None
    as_of_max: str | None
    course_start_min: str | None
    course_start_max: str | None

    def __getitem__(self, key: str) -> Any:  # read like the former dict
        return getattr(self, key)


@dataclass(frozen=True)
class SplitSummary:
    """What the split did, for logging. `method` is the method used (after any fallback)."""

    method: str
    boundary: str
    unlabelled_rows: int
    labelled_rows: int
    train: PartSummary
    validation: PartSummary
    test: PartSummary
    test_share: float  # share of the labelled snapshots in the test period
    validation_from: str | None = None
    test_runs: tuple[str, ...] = ()
    validation_runs: tuple[str, ...] = ()
    fallback_reason: str | None = None

    def __getitem__(self, key: str) -> Any:
        """`summary["train"]["rows"]` as before; parts come back as plain dicts (JSON-safe)."""
        value = getattr(self, key)
        return asdict(value) if isinstance(value, PartSummary) else value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if hasattr(self, key) else default

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["test_runs"] = list(self.test_runs)
        out["validation_runs"] = list(self.validation_runs)
        return out


@dataclass(frozen=True)
class TimeSplit:
    """Boolean row masks over the frame that was split, plus a description for logging."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    summary: SplitSummary

    def mask(self, part: str) -> np.ndarray:
        return getattr(self, part)

    def frames(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return frame[self.train], frame[self.validation], frame[self.test]


def to_utc(value: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _runs(frame: pd.DataFrame, labelled: np.ndarray) -> pd.DataFrame:
    runs = (
        frame.loc[labelled, ["course_id", "course_start"]]
        .drop_duplicates("course_id")
        .sort_values(["course_start", "course_id"], kind="stable")
        .reset_index(drop=True)
    )
    return runs


class _NoRunBoundary(Exception):
    """No course-start boundary leaves a test period of at most max_test_share."""


def _run_boundary(
    frame: pd.DataFrame, labelled: np.ndarray, runs: pd.DataFrame, cfg: SplitConfig
) -> pd.Timestamp:
    """The start date whose later runs hold about `test_share` of the labelled snapshots.

    Candidates are the distinct start dates after the first; among those leaving at most
    `max_test_share` of the snapshots to test, the one closest to `test_share` wins (the later
    one on a tie).
    """
    rows_per_run = frame.loc[labelled, "course_id"].value_counts()
    per_start = (
        runs.assign(rows=runs["course_id"].map(rows_per_run).fillna(0).to_numpy())
        .groupby("course_start", sort=True)["rows"]
        .sum()
    )
    share_from = per_start[::-1].cumsum()[::-1] / per_start.sum()  # share starting on/after
    candidates = share_from.iloc[1:]
    fitting = candidates[candidates <= cfg.max_test_share]
    if fitting.empty:
        latest = share_from.index[-1]
        raise _NoRunBoundary(
            f"the runs starting on the latest start date {latest.date()} hold "
            f"{share_from.iloc[-1]:.0%} of the labelled snapshots, more than "
            f"split.max_test_share = {cfg.max_test_share:g}"
        )
    distance = (fitting - cfg.test_share).abs()
    return distance[distance == distance.min()].index.max()


def _split_course_start(
    frame: pd.DataFrame, labelled: np.ndarray, cfg: SplitConfig, horizon: pd.Timedelta
) -> dict:
    runs = _runs(frame, labelled)
    if len(runs) < 2:
        raise SplitError(
            f"splitting by course start needs at least 2 course runs with labelled snapshots, "
            f"found {len(runs)}; use split.method: cutoff"
        )
    if cfg.test_from is not None:
        boundary = to_utc(cfg.test_from)
    else:
        boundary = _run_boundary(frame, labelled, runs, cfg)
    test_runs = runs[runs["course_start"] >= boundary]
    fit_runs = runs[runs["course_start"] < boundary]
    if test_runs.empty:
        raise SplitError(
            f"split.test_from = {cfg.test_from}: no course run starts on or after "
            f"{boundary.date()}, nothing to test on"
        )
    if fit_runs.empty:
        raise SplitError(
            f"split.test_from = {cfg.test_from}: no course run starts before {boundary.date()}, "
            "nothing to train on (move split.test_from later)"
        )
    course = frame["course_id"].to_numpy()
    fit = labelled & np.isin(course, fit_runs["course_id"].to_numpy())
    out = {"test": labelled & np.isin(course, test_runs["course_id"].to_numpy())}
    if len(fit_runs) == 1:
        # One training run: its latest snapshots validate (embargoed like a cutoff split).
        as_of = frame["as_of"]
        val_from = _date_at_share(as_of[fit], cfg.validation_share)
        out["validation"] = fit & (as_of >= val_from).to_numpy()
        train = fit & (as_of < val_from).to_numpy()
        if cfg.embargo:
            train &= (as_of + horizon <= val_from).to_numpy()
        out.update(train=train, validation_from=val_from)
    else:
        n_val = min(len(fit_runs) - 1, max(1, round(cfg.validation_share * len(fit_runs))))
        val_runs = fit_runs.iloc[len(fit_runs) - n_val :]
        out["validation"] = labelled & np.isin(course, val_runs["course_id"].to_numpy())
        out["train"] = fit & ~out["validation"]
    out["boundary"] = boundary
    return out


def _date_at_share(as_of: pd.Series, share_after: float) -> pd.Timestamp:
    """The snapshot date leaving about `share_after` of the rows on or after it."""
    dates = as_of.sort_values(kind="stable").reset_index(drop=True)
    position = min(len(dates) - 1, math.floor(len(dates) * (1 - share_after)))
    return dates.iloc[position]


def _split_cutoff(
    frame: pd.DataFrame, labelled: np.ndarray, cfg: SplitConfig, horizon: pd.Timedelta
) -> dict:
    as_of = frame["as_of"]
    lab_as_of = as_of[labelled]
    if lab_as_of.nunique() < 3:
        raise SplitError("splitting by cutoff needs labelled snapshots on at least 3 dates")
    cutoff = to_utc(cfg.cutoff) if cfg.cutoff else _date_at_share(lab_as_of, cfg.test_share)
    test = labelled & (as_of >= cutoff).to_numpy()
    if not test.any():
        raise SplitError(
            f"split.cutoff = {cfg.cutoff}: no labelled snapshot on or after {cutoff.date()}, "
            "nothing to test on"
        )
    before = labelled & (as_of < cutoff).to_numpy()
    if cfg.embargo:
        before &= (as_of + horizon <= cutoff).to_numpy()
    if not before.any():
        raise SplitError(
            f"split.cutoff = {cfg.cutoff or cutoff.date()}: no labelled snapshot closes its label "
            f"window before {cutoff.date()}, nothing to train on"
        )
    val_from = _date_at_share(as_of[before], cfg.validation_share)
    validation = before & (as_of >= val_from).to_numpy()
    train = before & (as_of < val_from).to_numpy()
    if cfg.embargo:
        train &= (as_of + horizon <= val_from).to_numpy()
    return {
        "train": train,
        "validation": validation,
        "test": test,
        "boundary": cutoff,
        "validation_from": val_from,
    }


def _describe(frame: pd.DataFrame, masks: dict[str, np.ndarray]) -> dict[str, PartSummary]:
    out: dict[str, PartSummary] = {}
    label = frame[LABEL_COLUMN].to_numpy()
    for part in PARTS:
        m = masks[part]
        rows = frame.loc[m]

        def iso(col: str, how: str, rows=rows) -> str | None:
            return getattr(rows[col], how)().isoformat() if len(rows) else None

        out[part] = PartSummary(
            rows=int(m.sum()),
            positives=int(np.nansum(label[m])),
            course_runs=int(rows["course_id"].nunique()),
            as_of_min=iso("as_of", "min"),
            as_of_max=iso("as_of", "max"),
            course_start_min=iso("course_start", "min"),
            course_start_max=iso("course_start", "max"),
        )
    return out


def split_by_time(frame: pd.DataFrame, cfg: SplitConfig, horizon_days: int) -> TimeSplit:
    """Split the labelled rows of a feature frame by time (see the module docstring)."""
    for col in ("course_id", "course_start", "as_of", LABEL_COLUMN):
        if col not in frame.columns:
            raise SplitError(f"feature frame has no {col!r} column")
    labelled = frame[LABEL_COLUMN].notna().to_numpy()
    if not labelled.any():
        raise SplitError("no labelled snapshot: the data ends before any label window closes")
    horizon = pd.Timedelta(days=horizon_days)
    method, fallback_reason = cfg.method, None
    if method == "course_start":
        try:
            masks = _split_course_start(frame, labelled, cfg, horizon)
        except _NoRunBoundary as exc:
            if cfg.course_start_fallback == "error":
                raise SplitError(
                    f"{exc}: no course-start split tests less than most of the data; set "
                    "split.test_from, raise split.max_test_share, or set "
                    "split.course_start_fallback: cutoff"
                ) from None
            fallback_reason = f"{exc}; split by snapshot date instead (split.test_share)"
            method = "cutoff"
            masks = _split_cutoff(frame, labelled, cfg.model_copy(update={"cutoff": None}), horizon)
    else:
        masks = _split_cutoff(frame, labelled, cfg, horizon)
    label = frame[LABEL_COLUMN].to_numpy()
    for part in PARTS:
        m = masks[part]
        if not m.any():
            raise SplitError(
                f"the {part} part of the split is empty; adjust split.test_share, "
                "split.validation_share, split.test_from or split.cutoff"
            )
        classes = np.unique(label[m])
        if len(classes) < 2:
            raise SplitError(
                f"the {part} part has only label {classes[0]:g}: nothing to learn or measure "
                "(adjust split.test_share / split.validation_share)"
            )
    parts = _describe(frame, masks)
    by_run = method == "course_start"
    summary = SplitSummary(
        method=method,
        boundary=masks["boundary"].isoformat(),
        unlabelled_rows=int((~labelled).sum()),
        labelled_rows=int(labelled.sum()),
        train=parts["train"],
        validation=parts["validation"],
        test=parts["test"],
        test_share=float(masks["test"].sum() / labelled.sum()),
        validation_from=(
            masks["validation_from"].isoformat() if "validation_from" in masks else None
        ),
        test_runs=tuple(sorted(frame.loc[masks["test"], "course_id"].unique())) if by_run else (),
        validation_runs=(
            tuple(sorted(frame.loc[masks["validation"], "course_id"].unique())) if by_run else ()
        ),
        fallback_reason=fallback_reason,
    )
    return TimeSplit(masks["train"], masks["validation"], masks["test"], summary)
