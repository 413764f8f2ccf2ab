"""`notalone effect [--plan] [--json]`: did the lists help? The hold-out's comparison of listed
and control students (interventions.effect), and how long the experiment needs (`--plan`).

Outcomes come from the source (enrollments.unenrolled_at, courses.end_at); arms and contacts from
the curator workspace (contacts of the source's own `interventions` table count too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from configs.schema import Config
from features.sources import write_text_atomic
from interventions.effect import Comparison
from pipelines.commands.common import activate
from pipelines.schedule import parse_as_of
from pipelines.score_steps import effect_result
from webapp.db import EFFECT_FILE


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}"


def describe(c: Comparison, level: float) -> str:
    """One line: rates (standardised over the strata), effect with its interval, per contacted
    student, MDE, the strata counted and left out, verdict."""
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
    strata = f"; over {c.strata} strata of the draw" if c.strata > 1 else ""
    if c.dropped:
        strata += (
            f" ({c.dropped:,} enrolments in {c.strata_dropped} strata without both arms left out)"
        )
    return f"{c.outcome} [{c.band}]: {rates}{effect}{per}{mde}{strata}. {c.verdict}."


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
