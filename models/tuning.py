"""Time-ordered hyper-parameter search for LightGBM (Optuna), never a random split.

Every trial trains on the split's training rows and is scored on its validation slice, the
latest part of the training period; the test rows stay untouched, so the reported metrics stay
honest. The objective is the early-stopping metric at its best round (average precision by
default). The sampler is seeded from `model.seed`: the same frames and config give the same
study. The search space is `model.tuning` in the config. `study_trials` gives the trials as
plain records for logging (MLflow, JSON).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd
from threadpoolctl import threadpool_limits

from configs.schema import Config
from models.model import CATEGORY, cast_features, infer_feature_types, training_categories
from models.train import _labels, fit_booster, model_inputs


def _suggest(trial: optuna.Trial, name: str, spec: list) -> Any:
    low, high = spec[0], spec[1]
    log = len(spec) > 2 and spec[2] == "log"
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(name, low, high, log=log)
    return trial.suggest_float(name, float(low), float(high), log=log)


def tune_lightgbm(
    train: pd.DataFrame, validation: pd.DataFrame, config: Config, n_trials: int | None = None
) -> optuna.Study:
    """Search `model.tuning.space` on (train -> validation); returns the finished study.

    `study.best_params` are LightGBM parameters to merge into `model.params`
    (`tuned_config`); each trial records its best round as the user attribute
    `best_iteration`.
    """
    tuning = config.model.tuning
    names = model_inputs(train, config)
    types = infer_feature_types(train, names)
    cat_cols = [c for c in names if types[c] == CATEGORY]
    cats = training_categories(pd.concat([train[cat_cols], validation[cat_cols]]), types)
    train_x = cast_features(train, names, types, cats)
    valid_x = cast_features(validation, names, types, cats)
    train_y, valid_y = _labels(train), _labels(validation)

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in tuning.space.items()}
        trial_config = tuned_config(config, params)
        _, info = fit_booster(train_x, train_y, valid_x, valid_y, trial_config)
        trial.set_user_attr("best_iteration", info["best_iteration"])
        score = info["best_validation_score"]
        return score if math.isfinite(score) else float("-inf")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.model.seed),
        study_name=tuning.study_name,
    )
    with threadpool_limits(limits=config.model.num_threads):
        study.optimize(objective, n_trials=n_trials or tuning.n_trials)
    return study


def tuned_config(config: Config, params: dict[str, Any]) -> Config:
    """`config` with `params` merged into `model.params` (a new frozen config)."""
    model = config.model.model_copy(update={"params": {**config.model.params, **params}})
    return config.model_copy(update={"model": model})


def study_trials(study: optuna.Study) -> list[dict[str, Any]]:
    """The trials as plain records: number, value, state, params, best_iteration, seconds."""
    out = []
    for t in study.trials:
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        out.append(
            {
                "number": t.number,
                "value": t.value,
                "state": t.state.name,
                "params": dict(t.params),
                "best_iteration": t.user_attrs.get("best_iteration"),
                "seconds": seconds,
            }
        )
    return out
