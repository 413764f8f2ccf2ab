"""Baselines evaluated on the same test rows as the model, in every run.

- `rule`: what a curator does without a model — look at who has been silent longest (days since
  the last submission or activity, whichever is more recent; never active = silent since
  enrolment), ties broken by missed deadlines. The score ranks; its probabilities come from a
  sigmoid fitted on the validation slice (monotone, so the ranking is the rule's own).
- `logistic`: logistic regression on standardised, median-imputed numeric features (with missing
  indicators) and one-hot attr_* categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from configs.schema import Config, EvaluationConfig
from features.catalog import LABEL_COLUMN
from models.calibration import Calibrator, fit_calibrator
from models.model import CATEGORY
from models.sampling import learning_rows

MISSING_CATEGORY = "(missing)"


def _first_present(frame: pd.DataFrame, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in frame.columns]


def rule_score(frame: pd.DataFrame, cfg: EvaluationConfig) -> np.ndarray:
    """Higher = riskier: days since the latest sign of life, then missed deadlines."""
    recency_cols = _first_present(frame, cfg.rule_recency)
    if not recency_cols:
        raise ValueError(f"the rule needs one of {cfg.rule_recency} in the feature frame")
    recency = frame[recency_cols].astype(float).min(axis=1, skipna=True)
    for fallback in _first_present(frame, cfg.rule_fallback):
        recency = recency.fillna(frame[fallback].astype(float))
    recency = recency.fillna(0.0).to_numpy()
    if cfg.rule_tiebreak in frame.columns:
        tiebreak = frame[cfg.rule_tiebreak].astype(float).fillna(0.0).to_numpy()
    else:
        tiebreak = np.zeros(len(frame))
    # Lexicographic order (recency first) as one number: dense rank of recency, then tie-break.
    _, recency_rank = np.unique(recency, return_inverse=True)
    spread = float(tiebreak.max() - tiebreak.min()) + 1.0 if len(tiebreak) else 1.0
    return recency_rank.astype(float) * spread + (
        tiebreak - (tiebreak.min() if len(tiebreak) else 0)
    )


@dataclass
class RuleBaseline:
    evaluation: EvaluationConfig
    calibrator: Calibrator | None = None

    def fit(self, validation: pd.DataFrame, clip: float) -> RuleBaseline:
        score = rule_score(validation, self.evaluation)
        self.calibrator = fit_calibrator(
            "sigmoid", score, validation[LABEL_COLUMN].to_numpy(), clip
        )
        return self

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return rule_score(frame, self.evaluation)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.calibrator is not None, "fit the rule first"
        return self.calibrator.transform(self.score(frame))


def _start_coefficients(start: LogisticBaseline | None):
    """(input names after encoding, coef_, intercept_) of a fitted baseline, else None."""
    if start is None or start.pipeline is None:
        return None
    columns = start.pipeline.named_steps["columns"]
    solver = start.pipeline.named_steps["logistic"]
    return columns.get_feature_names_out().tolist(), solver.coef_, solver.intercept_


@dataclass
class LogisticBaseline:
    feature_names: list[str]
    feature_types: dict[str, str]
    pipeline: Pipeline | None = None

    def _matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for col in self.feature_names:
            if self.feature_types[col] == CATEGORY:
                values = frame[col].astype("str")
                out[col] = values.where(values.notna(), MISSING_CATEGORY).astype(object)
            else:
                out[col] = frame[col].astype("float64")
        return pd.DataFrame(out, index=frame.index)

    def fit(
        self, train: pd.DataFrame, config: Config, start: LogisticBaseline | None = None
    ) -> LogisticBaseline:
        """Fit on `train`: the rows `models.sampling` keeps, weighted. `start`: a baseline
        fitted on the same inputs (the evaluated one) whose coefficients start the solver (the
        served refit on every row then needs a few iterations, not hundreds); the optimum
        reached is the same."""
        numeric = [c for c in self.feature_names if self.feature_types[c] != CATEGORY]
        categorical = [c for c in self.feature_names if self.feature_types[c] == CATEGORY]
        numeric_steps = Pipeline(
            [
                (
                    "impute",
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                ),
                ("scale", StandardScaler()),
            ]
        )
        transformers = [("num", numeric_steps, numeric)]
        if categorical:
            transformers.append(
                ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)
            )
        self.pipeline = Pipeline(
            [
                ("columns", ColumnTransformer(transformers)),
                (
                    "logistic",
                    LogisticRegression(
                        C=config.model.logistic.C,
                        max_iter=config.model.logistic.max_iter,
                        random_state=config.model.seed,
                    ),
                ),
            ]
        )
        y = train[LABEL_COLUMN].to_numpy().astype(int)
        rows = learning_rows(y, config.model)
        if rows.sampled:
            train, weights = train.iloc[rows.positions], rows.kept_weights(y)
            y = y[rows.positions]
        else:
            weights = None
        x = self._matrix(train)
        started = _start_coefficients(start)
        if started is not None:
            columns = self.pipeline.named_steps["columns"]
            encoded = columns.fit_transform(x)
            if columns.get_feature_names_out().tolist() == started[0]:
                solver = self.pipeline.named_steps["logistic"]
                solver.set_params(warm_start=True)
                solver.coef_, solver.intercept_ = started[1].copy(), started[2].copy()
                solver.fit(encoded, y, sample_weight=weights)
                return self
        self.pipeline.fit(x, y, logistic__sample_weight=weights)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.pipeline is not None, "fit the logistic baseline first"
        return self.pipeline.predict_proba(self._matrix(frame))[:, 1]

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(frame)
