"""The whole model side of a training run, as one plain function (no IO, no MLflow).

split by time -> (optional time-ordered tuning) -> fit and evaluate on the split -> choose the
candidate (LightGBM or logistic regression, against the rule too) -> refit the served models on
every labelled snapshot. `pipelines/training.py` may call the steps one by one instead; this is
the order they go in (the OULAD protocol benchmark uses it as is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from configs.schema import Config
from models.promotion import ChampionChoice, choose_champion
from models.split import TimeSplit, split_by_time
from models.train import FittedModels, ServedModels, evaluate_models, fit_models, refit_served

HEADLINE_METRICS = ("rows", "base_rate", "roc_auc", "pr_auc", "brier", "log_loss")


@dataclass
class ChampionRun:
    split: TimeSplit
    fitted: FittedModels
    evaluations: dict
    choice: ChampionChoice
    served: ServedModels
    config: Config
    tuning: Any = None
    trials: list[dict] = field(default_factory=list)

    def scorers(self) -> dict:
        """predict_proba of the served candidates and of the rule, by scorer name."""
        return {
            "model": self.served.model.predict_proba,
            "logistic": self.served.logistic.predict_proba,
            "rule": self.served.rule.predict_proba,
        }

    def summary(self) -> dict[str, Any]:
        metric = self.config.evaluation.promote_metric
        return {
            "split": self.split.summary.as_dict(),
            "held_out": {
                s: {k: ev.metrics[k] for k in HEADLINE_METRICS if k in ev.metrics}
                for s, ev in self.evaluations.items()
            },
            "choice": {
                "scorer": self.choice.scorer,
                "metric": metric,
                "values": self.choice.values,
                "message": self.choice.message,
            },
            "served": self.served.info.as_dict(),
            "served_summary": self.served.info.describe(),
            "best_iteration": self.fitted.info.best_iteration,
            "params": self.config.model.params,
            "tuning_trials": len(self.trials),
        }


def train_champion(frame: pd.DataFrame, config: Config, tune_trials: int = 0) -> ChampionRun:
    """Split, (tune), fit, evaluate, choose and refit on all labelled snapshots."""
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    train, validation, test = split.frames(frame)
    tuning, trials = None, []
    if tune_trials:
        from models.tuning import study_trials, tune_lightgbm, tuned_config

        tuning = tune_lightgbm(train, validation, config, n_trials=tune_trials)
        trials = study_trials(tuning)
        config = tuned_config(config, tuning.best_params)
    fitted = fit_models(train, validation, config)
    evaluations = evaluate_models(fitted, test, config)
    metric = config.evaluation.promote_metric
    choice = choose_champion(
        {s: ev.metrics[metric] for s, ev in evaluations.items()},
        metric,
        allow_logistic=config.model.allow_logistic_champion,
        min_improvement=config.evaluation.min_improvement,
    )
    served = refit_served(frame, fitted, config)
    return ChampionRun(split, fitted, evaluations, choice, served, config, tuning, trials)
