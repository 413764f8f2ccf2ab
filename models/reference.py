"""Distribution summaries of the training data, kept in the model for drift checks at scoring.

A numeric summary holds interior bin edges (training quantiles) and the share of rows per bin plus
the share missing; a categorical one holds the categories and their shares. `shares_like` puts new
values into the same bins, and `psi` compares the two share vectors.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def summarise_numeric(values: Iterable[float], bins: int) -> dict:
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    present = arr[~np.isnan(arr)]
    if len(present):
        quantiles = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])
        edges = sorted({float(q) for q in quantiles})
    else:
        edges = []
    entry = {"kind": "numeric", "edges": edges, "shares": [], "missing_share": 0.0}
    entry["shares"], entry["missing_share"] = _numeric_shares(edges, arr)
    return entry


def summarise_categorical(values: Iterable[object]) -> dict:
    series = pd.Series(values, dtype=object)
    n = len(series)
    counts = series.dropna().astype(str).value_counts().sort_index()
    return {
        "kind": "categorical",
        "categories": [str(c) for c in counts.index],
        "shares": [float(c / n) if n else 0.0 for c in counts.to_numpy()],
        "missing_share": float(series.isna().mean()) if n else 0.0,
    }


def _numeric_shares(edges: list[float], arr: np.ndarray) -> tuple[list[float], float]:
    n = len(arr)
    if n == 0:
        return [0.0] * (len(edges) + 1), 0.0
    missing = np.isnan(arr)
    # Bin i holds (edge[i-1], edge[i]]; the first bin is open below, the last open above.
    idx = np.searchsorted(np.asarray(edges, dtype=float), arr[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return [float(c / n) for c in counts], float(missing.mean())


def shares_like(entry: dict, values: Iterable[object]) -> tuple[list[float], float]:
    """Shares of `values` in the bins (or categories) of a summary, and the missing share.

    Categories unseen in training are counted together as one extra last bin.
    """
    if entry["kind"] == "numeric":
        arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
        return _numeric_shares(entry["edges"], arr)
    series = pd.Series(values, dtype=object)
    n = len(series)
    if n == 0:
        return [0.0] * (len(entry["categories"]) + 1), 0.0
    present = series.dropna().astype(str)
    counts = present.value_counts()
    known = [float(counts.get(c, 0) / n) for c in entry["categories"]]
    unseen = float((~present.isin(entry["categories"])).sum() / n)
    return [*known, unseen], float(series.isna().mean())


def share_codes(entry: dict, values: Iterable[object]) -> np.ndarray:
    """Each value's slot in the layout of a summary's full share vector: its bin (or category),
    then, for categorical summaries, one slot for unseen categories, then one for missing.

    Counting the codes (`np.bincount`) gives the same shares as `shares_like`, for any grouping
    of the rows at once (per course week, per run) without splitting the values."""
    if entry["kind"] == "numeric":
        arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
        edges = np.asarray(entry["edges"], dtype=float)
        codes = np.searchsorted(edges, arr, side="left")
        codes[np.isnan(arr)] = len(edges) + 1
        return codes.astype(np.int64)
    series = pd.Series(values, dtype=object)
    categories = list(entry["categories"])
    missing = series.isna().to_numpy()
    positions = pd.Index(categories).get_indexer(series.astype(str))
    codes = np.where(positions < 0, len(categories), positions)
    codes[missing] = len(categories) + 1
    return codes.astype(np.int64)


def share_slots(entry: dict) -> int:
    """The length of a summary's full share vector (`share_codes` values are below it)."""
    if entry["kind"] == "numeric":
        return len(entry["edges"]) + 2
    return len(entry["categories"]) + 2


def psi(expected: list[float], actual: list[float], floor: float) -> float:
    """Population stability index; shares below `floor` are raised to it (empty bins)."""
    size = max(len(expected), len(actual))
    e = np.maximum(np.pad(np.asarray(expected, float), (0, size - len(expected))), floor)
    a = np.maximum(np.pad(np.asarray(actual, float), (0, size - len(actual))), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_against(entry: dict, values: Iterable[object], floor: float) -> float:
    """PSI of new `values` against a training summary, the missing share counted as a bin."""
    actual, actual_missing = shares_like(entry, values)
    expected = list(entry["shares"])
    if entry["kind"] == "categorical":
        expected.append(0.0)  # the "unseen category" bin of `shares_like`
    return psi([*expected, entry["missing_share"]], [*actual, actual_missing], floor)
