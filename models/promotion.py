"""The promotion rule: when a newly trained version replaces the champion (pure decision)."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
