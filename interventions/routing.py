"""Support tier and first action from YAML rules (`scoring.triggers`, `scoring.rules`).

Conditions are evaluated vectorised over a frame of students (features at T) and, for `reason`
conditions, over their top reason groups. The school's playbook triggers decide first (they
always fire, whatever the model says); then the first routing rule that holds; else the default
tier and action.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from configs.schema import ScoringCondition, ScoringConfig
from features.errors import NotaloneError

DEFAULT_RULE = "default"


class RoutingError(NotaloneError):
    """A trigger or routing rule names a feature the feature frame does not have."""


def walk(condition: ScoringCondition) -> Iterator[ScoringCondition]:
    yield condition
    for child in (*(condition.all_of or ()), *(condition.any_of or ())):
        yield from walk(child)


def condition_features(config: ScoringConfig) -> set[str]:
    """Every feature a trigger or rule reads (including the features triggers show)."""
    names = {t.feature for t in config.triggers}
    names |= {t.severity for t in config.triggers if t.severity is not None}
    for rule in (*config.triggers, *config.rules):
        names |= {c.feature for c in walk(rule.when) if c.feature is not None}
    return names


def check_rule_features(config: ScoringConfig, columns: Sequence[str]) -> None:
    """Raise a clear error when triggers or rules name features the frame lacks."""
    missing = sorted(condition_features(config) - set(columns))
    if missing:
        raise RoutingError(
            "scoring.triggers / scoring.rules use features the feature frame does not have: "
            + ", ".join(missing)
            + " (check the names against `notalone features` output and features.windows_days)"
        )


def evaluate(
    condition: ScoringCondition,
    frame: pd.DataFrame,
    reason_groups: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean per row. `reason_groups` is an n x k array of the rows' reason groups (missing
    entries None); without it every `reason` condition is False. A missing feature value fails
    every comparison."""
    n = len(frame)
    if condition.all_of is not None:
        out = np.ones(n, dtype=bool)
        for child in condition.all_of:
            out &= evaluate(child, frame, reason_groups)
        return out
    if condition.any_of is not None:
        out = np.zeros(n, dtype=bool)
        for child in condition.any_of:
            out |= evaluate(child, frame, reason_groups)
        return out
    if condition.reason is not None:
        if reason_groups is None or reason_groups.size == 0:
            return np.zeros(n, dtype=bool)
        return (reason_groups == condition.reason).any(axis=1)
    x = frame[condition.feature].to_numpy(dtype="float64", na_value=np.nan)
    op, v = condition.op, condition.value
    if op == "missing":
        return np.isnan(x)
    if op == "present":
        return ~np.isnan(x)
    with np.errstate(invalid="ignore"):
        if op == ">=":
            return x >= v
        if op == ">":
            return x > v
        if op == "<=":
            return x <= v
        if op == "<":
            return x < v
        if op == "==":
            return x == v
        return ~np.isnan(x) & (x != v)


def fire_triggers(frame: pd.DataFrame, config: ScoringConfig) -> pd.DataFrame:
    """One boolean column `trigger_<name>` per playbook trigger (features only), plus
    `triggered` (any) and `triggers` (names of those that fired, comma-separated)."""
    out = pd.DataFrame(index=frame.index)
    names = np.full(len(frame), "", dtype=object)
    any_fired = np.zeros(len(frame), dtype=bool)
    for trigger in config.triggers:
        fired = evaluate(trigger.when, frame)
        out[f"trigger_{trigger.name}"] = fired
        names = np.where(
            fired, np.where(any_fired, names + "," + trigger.name, trigger.name), names
        )
        any_fired |= fired
    out["triggered"] = any_fired
    out["triggers"] = pd.Series(np.where(any_fired, names, None), index=frame.index, dtype="str")
    return out


WIN_BACK_RULE = "win_back"


def route(
    frame: pd.DataFrame,
    fired: pd.DataFrame,
    reason_groups: np.ndarray | None,
    config: ScoringConfig,
    section: pd.Series | None = None,
) -> pd.DataFrame:
    """Columns tier, action and routed_by (trigger or rule name, or "default") per row.

    Rows whose `section` (same index as `frame`) is "win_back" go to `scoring.winback_tier` /
    `winback_action` (routed_by "win_back") before any trigger or rule."""
    n = len(frame)
    tier = np.full(n, config.default_tier, dtype=object)
    action = np.full(n, config.default_action, dtype=object)
    routed_by = np.full(n, DEFAULT_RULE, dtype=object)
    decided = np.zeros(n, dtype=bool)
    if section is not None:
        decided = section.reindex(frame.index).astype("str").to_numpy(dtype=object) == WIN_BACK_RULE
        tier[decided], action[decided] = config.winback_tier, config.winback_action
        routed_by[decided] = WIN_BACK_RULE
    for trigger in config.triggers:
        take = fired[f"trigger_{trigger.name}"].to_numpy(dtype=bool) & ~decided
        tier[take], action[take], routed_by[take] = trigger.tier, trigger.action, trigger.name
        decided |= take
    for rule in config.rules:
        if decided.all():
            break
        take = evaluate(rule.when, frame, reason_groups) & ~decided
        tier[take], action[take], routed_by[take] = rule.tier, rule.action, rule.name
        decided |= take
    return pd.DataFrame(
        {
            "tier": pd.Series(tier, index=frame.index, dtype="str"),
            "action": pd.Series(action, index=frame.index, dtype="str"),
            "routed_by": pd.Series(routed_by, index=frame.index, dtype="str"),
        },
        index=frame.index,
    )


def tiers_and_actions(config: ScoringConfig) -> tuple[set[str], set[str]]:
    """Every tier and action the config can produce (to check the message files cover them)."""
    rules = (*config.triggers, *config.rules)
    tiers = {config.default_tier, config.winback_tier, *(r.tier for r in rules)}
    actions = {config.default_action, config.winback_action, *(r.action for r in rules)}
    return tiers, actions
