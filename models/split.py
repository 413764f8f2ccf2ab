"""Time-ordered split of labelled snapshots into training, validation and test rows.

Reported metrics must come from later data than the model learned from, so there is no random
split. Two methods (config `split.method`):

- `course_start`: course runs are ordered by start. The test period is every run starting on or
  after `test_from` (e.g. 2014-01-01 on OULAD: train on the 2013 runs, test on the 2014 runs), or,
  without `test_from`, the latest `test_share` of runs (runs sharing the boundary start date all
  go to test). Validation is the latest `validation_share` of the training runs (ties by id).
- `cutoff`: snapshots at or after `cutoff` (default: the date leaving `test_share` of the rows
  after it) are tested. With `embargo`, training keeps only snapshots whose label window closes
  by the cutoff, so no training label looks into the test period; validation is the latest
  `validation_share` of the training period, embargoed the same way.

Only labelled rows take part; unlabelled snapshots are never trained or tested on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from configs.schema import SplitConfig
from features.catalog import LABEL_COLUMN
from features.errors import NotaloneError

PARTS = ("train", "validation", "test")


class SplitError(NotaloneError):
    """The data cannot be split by time as configured."""


@dataclass
class TimeSplit:
    """Boolean row masks over the frame that was split, plus a description for logging."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    summary: dict = field(default_factory=dict)

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
        n_test = max(1, round(cfg.test_share * len(runs)))
        boundary = runs["course_start"].iloc[len(runs) - n_test]
    test_runs = runs[runs["course_start"] >= boundary]
    fit_runs = runs[runs["course_start"] < boundary]
    if test_runs.empty:
        raise SplitError(f"no course run starts on or after {boundary.date()}: nothing to test on")
    if fit_runs.empty:
        raise SplitError(
            f"no course run starts before {boundary.date()}: nothing to train on "
            "(lower split.test_share or move split.test_from)"
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
    before = labelled & (as_of < cutoff).to_numpy()
    if cfg.embargo:
        before &= (as_of + horizon <= cutoff).to_numpy()
    if not before.any():
        raise SplitError(f"no labelled snapshot closes its label window before {cutoff.date()}")
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


def _describe(frame: pd.DataFrame, masks: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    label = frame[LABEL_COLUMN].to_numpy()
    for part in PARTS:
        m = masks[part]
        rows = frame.loc[m]
        out[part] = {
            "rows": int(m.sum()),
            "positives": int(np.nansum(label[m])),
            "course_runs": int(rows["course_id"].nunique()),
            "as_of_min": rows["as_of"].min().isoformat() if len(rows) else None,
            "as_of_max": rows["as_of"].max().isoformat() if len(rows) else None,
            "course_start_min": rows["course_start"].min().isoformat() if len(rows) else None,
            "course_start_max": rows["course_start"].max().isoformat() if len(rows) else None,
        }
    return out


def split_by_time(frame: pd.DataFrame, cfg: SplitConfig, horizon_days: int) -> TimeSplit:
    """Split the labelled rows of a feature frame by time (see the module docstring)."""
    for col in ("course_id", "course_start", "as_of", LABEL_COLUMN):
        if col not in frame.columns:
            raise SplitError(f"feature frame has no {col!r} column")
    labelled = frame[LABEL_COLUMN].notna().to_numpy()
    if not labelled.any():
        raise SplitError("no labelled snapshot: the data ends before any label window closes")
    if cfg.method == "course_start":
        masks = _split_course_start(frame, labelled, cfg, pd.Timedelta(days=horizon_days))
    else:
        masks = _split_cutoff(frame, labelled, cfg, pd.Timedelta(days=horizon_days))
    label = frame[LABEL_COLUMN].to_numpy()
    for part in PARTS:
        m = masks[part]
        if not m.any():
            raise SplitError(f"the {part} part of the split is empty; adjust the split config")
        classes = np.unique(label[m])
        if len(classes) < 2:
            raise SplitError(
                f"the {part} part has only label {classes[0]:g}: nothing to learn or measure"
            )
    summary = {
        "method": cfg.method,
        "boundary": masks["boundary"].isoformat(),
        "unlabelled_rows": int((~labelled).sum()),
        **_describe(frame, masks),
    }
    if "validation_from" in masks:
        summary["validation_from"] = masks["validation_from"].isoformat()
    if cfg.method == "course_start":
        summary["test_runs"] = sorted(frame.loc[masks["test"], "course_id"].unique().tolist())
        summary["validation_runs"] = sorted(
            frame.loc[masks["validation"], "course_id"].unique().tolist()
        )
    return TimeSplit(masks["train"], masks["validation"], masks["test"], summary)
