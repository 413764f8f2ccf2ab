"""Risk and contributions computed per part of the week's feature dataset on a Dask cluster:
each task reads its part file itself (by path; for contributions only the rows to explain, by
a packed mask), so the client sends locations and gathers only risks and contributions. The
ranking and the outputs stay on the client (the lists are small)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.dask_store import map_calls
from pipelines.feature_partitions import FeatureDataset, read_part


def _risk(file: str, mask, offset: int, model) -> np.ndarray:
    return np.asarray(model.predict_proba(read_part(file, mask, offset)), dtype="float64")


def _contributions(file: str, mask, offset: int, model) -> pd.DataFrame:
    return model.contributions(read_part(file, mask, offset))


def _check_rows(frame: pd.DataFrame, dataset: FeatureDataset) -> None:
    if len(frame) != len(dataset.order):
        raise ValueError(
            f"the frame has {len(frame):,} rows but its dataset {len(dataset.order):,}: "
            "score the frame read from the dataset"
        )


def predict_on_cluster(model, frame: pd.DataFrame, address: str, dataset: FeatureDataset):
    """Calibrated risk per row of `frame` (read from `dataset`), in its row order, predicted on
    the workers, one task per part file."""
    _check_rows(frame, dataset)
    bounds = dataset.bounds()
    calls = [(f, None, int(bounds[i])) for i, f in enumerate(dataset.files)]
    risks = map_calls(address, _risk, calls, model)
    in_parts = np.concatenate(risks) if risks else np.empty(0)
    return in_parts[dataset.order]


def contributions_on_cluster(
    model, frame: pd.DataFrame, rows: pd.Index, address: str, dataset: FeatureDataset
) -> pd.DataFrame:
    """The model's contributions for the rows `rows` of `frame` (read from `dataset`; labels
    are positions), in that order, computed on the workers: each task reads only those rows of
    its part file."""
    _check_rows(frame, dataset)
    if len(rows) == 0:
        return model.contributions(frame.iloc[:0])
    (masks,) = dataset.segment_masks(np.sort(np.asarray(rows, dtype=np.int64)))
    bounds = dataset.bounds()
    calls = [(f, masks[i], int(bounds[i])) for i, f in enumerate(dataset.files) if masks[i].any()]
    parts = map_calls(address, _contributions, calls, model)
    found = pd.concat(parts)
    found.index = dataset.frame_positions()[found.index.to_numpy()]
    return found.loc[rows]
