"""The dropout model as one picklable object: LightGBM booster + calibration + its input contract.

Training, MLflow logging and scoring all pass this object around. It refuses frames whose feature
columns or types differ from what it was trained on (`ModelMismatch`), so a scorer never silently
feeds a model the wrong inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from features.catalog import KEY_COLUMNS, LABEL_COLUMN, META_COLUMNS
from features.errors import NotaloneError
from models.calibration import Calibrator

ATTR_PREFIX = "attr_"
FLOAT = "float"
CATEGORY = "category"
NON_FEATURE_COLUMNS = frozenset((*KEY_COLUMNS, *META_COLUMNS, LABEL_COLUMN))


class ModelMismatch(NotaloneError):
    """The frame's feature columns or types differ from the model's."""

    def __init__(self, message: str, missing=(), extra=(), wrong_types=()):
        super().__init__(message)
        self.missing = list(missing)
        self.extra = list(extra)
        self.wrong_types = list(wrong_types)


def is_categorical_dtype(dtype: Any) -> bool:
    return isinstance(dtype, pd.CategoricalDtype) or ptypes.is_string_dtype(dtype)


def is_numeric_dtype(dtype: Any) -> bool:
    return (ptypes.is_numeric_dtype(dtype) or ptypes.is_bool_dtype(dtype)) and not isinstance(
        dtype, pd.CategoricalDtype
    )


def infer_feature_types(frame: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """ "float" for numeric columns, "category" for category/string columns (attr_* strings)."""
    types: dict[str, str] = {}
    for col in columns:
        dtype = frame[col].dtype
        if is_numeric_dtype(dtype):
            types[col] = FLOAT
        elif is_categorical_dtype(dtype) or ptypes.is_object_dtype(dtype):
            types[col] = CATEGORY
        else:
            raise ModelMismatch(
                f"column {col!r} has dtype {dtype}, which is neither numeric nor categorical",
                wrong_types=[col],
            )
    return types


def training_categories(frame: pd.DataFrame, types: dict[str, str]) -> dict[str, list[str]]:
    """Sorted categories of each categorical column as seen in `frame` (the training rows)."""
    cats: dict[str, list[str]] = {}
    for col, kind in types.items():
        if kind == CATEGORY:
            values = frame[col].dropna().astype(str).unique()
            cats[col] = sorted(str(v) for v in values)
    return cats


def cast_features(
    frame: pd.DataFrame,
    feature_names: list[str],
    feature_types: dict[str, str],
    categories: dict[str, list[str]],
) -> pd.DataFrame:
    """Model matrix: the columns in order, floats as float64, categoricals on fixed categories.

    Values of a categorical column not seen in training become missing (LightGBM's missing branch).
    """
    out = {}
    for col in feature_names:
        values = frame[col]
        if feature_types[col] == CATEGORY:
            known = categories[col]
            as_str = values.astype("str")  # missing stays missing
            as_str = as_str.where(as_str.isin(known))
            out[col] = pd.Categorical(as_str, categories=known)
        else:
            out[col] = values.astype("float64").to_numpy()
    return pd.DataFrame(out, index=frame.index, columns=feature_names)


def check_frame(
    frame: pd.DataFrame,
    feature_names: list[str],
    feature_types: dict[str, str],
    ignored: tuple[str, ...] = (),
) -> None:
    """Raise `ModelMismatch` naming missing/extra feature columns and wrong types; `ignored`
    columns are known to the model and left out on purpose (`model.exclude_features`)."""
    present = list(frame.columns)
    missing = [c for c in feature_names if c not in frame.columns]
    known = set(feature_names) | NON_FEATURE_COLUMNS | set(ignored)
    extra = [c for c in present if c not in known]
    wrong = []
    for col in feature_names:
        if col not in frame.columns:
            continue
        dtype = frame[col].dtype
        expected = feature_types[col]
        ok = (
            is_numeric_dtype(dtype)
            if expected == FLOAT
            else (is_categorical_dtype(dtype) or ptypes.is_object_dtype(dtype))
        )
        if not ok:
            wrong.append(f"{col} (model: {expected}, frame: {dtype})")
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append("missing columns: " + ", ".join(missing))
        if extra:
            parts.append("columns the model does not know: " + ", ".join(extra))
        if wrong:
            parts.append("wrong types: " + ", ".join(wrong))
        raise ModelMismatch(
            "the model does not match the features: " + "; ".join(parts),
            missing=missing,
            extra=extra,
            wrong_types=wrong,
        )


@dataclass
class DropoutModel:
    """Calibrated LightGBM dropout model with the input contract it was trained on."""

    booster: lgb.Booster
    calibrator: Calibrator
    feature_names: list[str]
    feature_types: dict[str, str]
    categories: dict[str, list[str]]
    num_threads: int
    reference: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    # Features of the frame left out on purpose (`model.exclude_features`); a class-level
    # default, so models pickled before the setting existed read as ignoring none.
    ignored_features: tuple[str, ...] = ()
    kind = "lightgbm"

    def check(self, frame: pd.DataFrame) -> None:
        """Raise `ModelMismatch` naming missing/extra feature columns and wrong types."""
        check_frame(frame, self.feature_names, self.feature_types, self.ignored_features)

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Select the model columns in order and cast them as in training (checks first)."""
        self.check(frame)
        return cast_features(frame, self.feature_names, self.feature_types, self.categories)

    def raw_margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated LightGBM log-odds."""
        x = self.prepare(frame)
        if len(x) == 0:
            return np.empty(0, dtype=float)
        return np.asarray(
            self.booster.predict(x, raw_score=True, num_threads=self.num_threads), dtype=float
        )

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated P(dropout within the horizon), shape (n,)."""
        return self.calibrator.transform(self.raw_margin(frame))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-feature log-odds contributions (TreeSHAP) plus "bias"; rows sum to the raw margin."""
        x = self.prepare(frame)
        columns = [*self.feature_names, "bias"]
        if len(x) == 0:
            return pd.DataFrame(columns=columns, index=frame.index, dtype=float)
        contrib = self.booster.predict(x, pred_contrib=True, num_threads=self.num_threads)
        return pd.DataFrame(np.asarray(contrib), columns=columns, index=frame.index)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature, descending."""
        gain = self.booster.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.feature_names, name="gain").sort_values(ascending=False)
