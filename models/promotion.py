"""The promotion rule: when a newly trained version replaces the champion (pure decision)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

PROMOTED_NO_CHAMPION = "no champion yet"
PROMOTED_BETTER = "beats the champion on the same test rows"
PROMOTED_INCOMPATIBLE = "the champion cannot score the current features"
KEPT_NOT_BETTER = "does not beat the champion on the same test rows"


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    metric: str
    challenger_value: float
    champion_value: float | None


def decide_promotion(
    metric: str,
    challenger_value: float,
    champion_value: float | None,
    min_improvement: float,
    champion_exists: bool,
    champion_compatible: bool = True,
) -> PromotionDecision:
    """Promote when there is no champion, when the champion cannot score the current features,
    or when the challenger is better by more than `min_improvement` (higher is better)."""
    if not champion_exists:
        return PromotionDecision(True, PROMOTED_NO_CHAMPION, metric, challenger_value, None)
    if not champion_compatible or champion_value is None:
        return PromotionDecision(True, PROMOTED_INCOMPATIBLE, metric, challenger_value, None)
    better = not math.isnan(challenger_value) and (
        math.isnan(champion_value) or challenger_value > champion_value + min_improvement
    )
    reason = PROMOTED_BETTER if better else KEPT_NOT_BETTER
    return PromotionDecision(better, reason, metric, challenger_value, champion_value)


CANDIDATES = ("model", "logistic")


@dataclass(frozen=True)
class ChampionChoice:
    """Which served model competes for champion, chosen on the held-out window.

    `scorer` is "model" (LightGBM) or "logistic"; `values` holds every scorer's metric on the
    same test rows (model, logistic, rule); `model_loses` is True when LightGBM is not the best
    of the three, and `message` says so in words.
    """

    scorer: str
    metric: str
    value: float
    values: dict[str, float]
    model_loses: bool
    beats_rule: bool
    message: str


def choose_champion(
    values: dict[str, float], metric: str, allow_logistic: bool, min_improvement: float = 0.0
) -> ChampionChoice:
    """The better of LightGBM and logistic regression on `metric` (higher is better).

    `values`: the metric per scorer on the same test window ("model", "logistic", "rule").
    Logistic regression is chosen only when `allow_logistic` and it is better than LightGBM by
    more than `min_improvement`; with `allow_logistic` False LightGBM stays the candidate even
    when it loses, and the message says it lost.
    """
    missing = [s for s in ("model", "logistic", "rule") if s not in values]
    if missing:
        raise ValueError(f"choose_champion needs a value for {', '.join(missing)}")
    model, logistic, rule = (float(values[s]) for s in ("model", "logistic", "rule"))

    def better(a: float, b: float, margin: float = 0.0) -> bool:
        return not math.isnan(a) and (math.isnan(b) or a > b + margin)

    logistic_wins = better(logistic, model, min_improvement)
    scorer = "logistic" if allow_logistic and logistic_wins else "model"
    value = logistic if scorer == "logistic" else model
    losses = [
        name
        for name, v in (("logistic regression", logistic), ("the rule", rule))
        if not better(model, v)
    ]
    model_loses = bool(losses)
    if not model_loses:
        message = (
            f"LightGBM beats logistic regression and the rule on {metric} "
            f"({model:.4f} vs {logistic:.4f} and {rule:.4f})"
        )
    else:
        message = (
            f"LightGBM LOSES to {' and '.join(losses)} on {metric} on the same test window "
            f"(LightGBM {model:.4f}, logistic {logistic:.4f}, rule {rule:.4f})"
        )
        if scorer == "logistic":
            message += "; logistic regression is the candidate"
        elif logistic_wins:
            message += "; LightGBM stays the candidate (model.allow_logistic_champion: false)"
    beats_rule = better(value, rule)
    if not beats_rule:
        message += f"; the candidate does not beat the rule ({value:.4f} vs {rule:.4f})"
    return ChampionChoice(
        scorer=scorer,
        metric=metric,
        value=value,
        values={"model": model, "logistic": logistic, "rule": rule},
        model_loses=model_loses,
        beats_rule=beats_rule,
        message=message,
    )


def unseen_by_champion(as_of: pd.Series, champion_metadata: dict) -> np.ndarray:
    """Test rows the champion cannot have learned from (snapshots after its latest labelled one).

    A champion refit on every labelled snapshot has seen the older part of a new test window,
    so comparing on all test rows would flatter it. Champions without `learned_as_of_max` (from
    before issue 12) learned from their split only: every row counts.
    """
    learned = champion_metadata.get("learned_as_of_max")
    if not learned:
        return np.ones(len(as_of), dtype=bool)
    return (pd.to_datetime(as_of, utc=True) > pd.Timestamp(learned)).to_numpy()
