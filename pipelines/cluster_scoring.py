"""Risk and contributions computed per partition of course runs on a Dask cluster; the ranking
and the outputs stay on the client (the lists are small)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.dask_store import map_parts


def parts_by_course_run(frame: pd.DataFrame, parts: int) -> list[np.ndarray]:
    """Row positions of `frame` cut into at most `parts` groups of whole course runs."""
    codes, uniques = pd.factorize(frame["course_id"])
    if not len(uniques):
        return [np.arange(len(frame))]
    part_of_run = np.arange(len(uniques)) * max(1, parts) // len(uniques)
    part = part_of_run[codes]
    return [np.flatnonzero(part == p) for p in np.unique(part)]


def _risk(part: pd.DataFrame, model) -> np.ndarray:
    return np.asarray(model.predict_proba(part), dtype="float64")


def _contributions(part: pd.DataFrame, model) -> pd.DataFrame:
    return model.contributions(part)


def predict_on_cluster(model, frame: pd.DataFrame, address: str, parts: int) -> np.ndarray:
    """Calibrated risk per row of `frame`, in its row order, predicted on the workers."""
    positions = parts_by_course_run(frame, parts)
    results = map_parts(address, _risk, [frame.iloc[p] for p in positions], model)
    risk = np.empty(len(frame), dtype="float64")
    for where, values in zip(positions, results, strict=True):
        risk[where] = values
    return risk


def contributions_on_cluster(model, frame: pd.DataFrame, address: str, parts: int) -> pd.DataFrame:
    """The model's contributions for the rows of `frame`, in its order, computed on the workers."""
    if frame.empty:
        return model.contributions(frame)
    positions = parts_by_course_run(frame, parts)
    results = map_parts(address, _contributions, [frame.iloc[p] for p in positions], model)
    return pd.concat(results).loc[frame.index]
