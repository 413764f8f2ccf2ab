"""`notalone effect [--plan] [--json]`: did the lists help? The hold-out's comparison of listed
and control students (interventions.effect), and how long the experiment needs (`--plan`).

Outcomes come from the source (enrollments.unenrolled_at, courses.end_at); arms and contacts from
the curator workspace (contacts of the source's own `interventions` table count too).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from configs.schema import Config
from features.sources import all_contacts, read_table, write_text_atomic
from interventions.effect import (
    Comparison,
    as_records,
    measure_effect,
    outcomes,
    plan,
)
from interventions.holdout import ARM_CONTROL
from pipelines import workspace_store
from pipelines.commands.common import activate
from pipelines.schedule import parse_as_of
from webapp.db import EFFECT_FILE


def horizon_days(config: Config) -> int:
    return config.experiment.horizon_days or config.snapshots.horizon_days


def effect_result(
    source: Path, config: Config, workspace, as_of: datetime | None = None
) -> dict[str, Any]:
    """Comparisons (overall and per risk band, both outcomes) and the plan, as plain data."""
    when = as_of or datetime.now(UTC)
    arms = workspace_store.experiment_arms(workspace)
    enrollments = read_table(source, "enrollments")
    courses = read_table(source, "courses")
    contacts = [workspace_store.all_contacts(workspace), all_contacts(source)]
    contacts = (
        pd.concat([c for c in contacts if c is not None and len(c)], ignore_index=True)
        if any(c is not None and len(c) for c in contacts)
        else None
    )
    table = outcomes(arms, enrollments, courses, contacts, when, horizon_days(config))
    comparisons = measure_effect(table, config.experiment)
    return {
        "as_of": pd.Timestamp(when).isoformat(),
        "drawn": len(arms),
        "control": int((arms["arm"] == ARM_CONTROL).sum()),
        "comparisons": as_records(comparisons),
        "plan": asdict(plan_for(arms, table, enrollments, config)),
    }


def plan_for(arms: pd.DataFrame, table: pd.DataFrame, enrollments: pd.DataFrame, config: Config):
    """The sizing from what the hold-out has seen: draws per week so far (else curators x
    capacity x the new share), the control arm's dropout once it has `min_per_arm` matured."""
    exp = config.experiment
    if len(arms):
        weeks = pd.to_datetime(arms["assigned_at"], utc=True).dt.normalize().nunique()
        new_per_week = len(arms) / max(weeks, 1)
    else:
        curators = enrollments["curator_id"].astype("str").nunique()
        new_per_week = curators * config.scoring.capacity * exp.plan_new_share
    matured = table[(table["arm"] == ARM_CONTROL) & table["dropout_matured"]]
    base = float(matured["dropout"].mean()) if len(matured) >= exp.min_per_arm else None
    if base is not None and not exp.plan_effect < base < 1:
        base = None
    return plan(
        new_per_week=new_per_week, config=exp, horizon_days=horizon_days(config), base_rate=base
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}"


def describe(c: Comparison, level: float) -> str:
    """One line: rates, effect with its interval, per contacted student, MDE, verdict."""
    rates = (
        f"listed {c.rate_listed * 100:.1f} % of {c.n_listed:,}, control "
        f"{c.rate_control * 100:.1f} % of {c.n_control:,}"
        if c.rate_listed is not None and c.rate_control is not None
        else f"listed {c.n_listed:,}, control {c.n_control:,}"
    )
    effect = (
        f"; {_pct(c.effect)} points ({level:.0%} CI {_pct(c.low)} to {_pct(c.high)})"
        if c.effect is not None
        else ""
    )
    per = (
        f"; per contacted student {_pct(c.per_contacted)} ({_pct(c.per_contacted_low)} to "
        f"{_pct(c.per_contacted_high)}, {c.contact_rate:.0%} contacted)"
        if c.per_contacted is not None
        else ""
    )
    mde = "" if c.mde == float("inf") else f"; detectable now: {c.mde * 100:.1f} points"
    return f"{c.outcome} [{c.band}]: {rates}{effect}{per}{mde}. {c.verdict}."


def run_effect(
    *, source: Path, config: Config, as_of: str | None, plan_only: bool, as_json: bool
) -> dict[str, Any]:
    workspace = activate()
    result = effect_result(source, config, workspace, parse_as_of(as_of) if as_of else None)
    # the lead's page shows the latest measure (the app does not read the source)
    write_text_atomic(workspace.root / EFFECT_FILE, json.dumps(result, indent=2, default=str))
    if as_json:
        shown = {k: v for k, v in result.items() if not (plan_only and k == "comparisons")}
        print(json.dumps(shown, indent=2, default=str))
        return result
    if not plan_only:
        print(
            f"hold-out: {result['drawn']:,} enrolments drawn, {result['control']:,} in control "
            f"(as of {result['as_of'][:10]})"
        )
        level = config.experiment.confidence
        for c in result["comparisons"]:
            print(describe(Comparison(**c), level))
    print(result["plan"]["text"])
    return result
