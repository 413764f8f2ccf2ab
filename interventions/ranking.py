"""Who makes each curator's list this week: capacity, rule triggers, cooldown, highest risk.

Order within a curator (highest expected benefit first, with the risk as the benefit):

1. students held back by the cooldown are not eligible: contacted (any curator, any action)
   within `cooldown_days` before T, unless their risk rose by at least `risk_jump` since the
   previous scoring. With `cooldown_applies_to_triggers` (default) this holds for rule triggers
   too: a curator who wrote three days ago has acted on the signal, and writing again this week
   would be pressure, not support;
2. rule triggers come first and are always listed - when triggers alone exceed the capacity, the
   highest-risk triggers are listed;
3. then the highest risk;
4. ties broken by student_id, then course_id, so the same inputs give the same lists.

With a `section` column (`interventions.winback`), each curator's list has two parts ranked
apart: early warning (capacity as above) first, then win-back (`scoring.winback_capacity`,
ordered by `section_priority`, smaller first, then risk). A win-back student never takes an
early-warning slot; `rank` restarts at 1 in each section.

Everyone stays in the ranking: `listed`, `rank` (1..capacity, missing when not listed) and
`hold_back` ("cooldown" or "capacity", missing when listed) say what happened to whom.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from configs.schema import ScoringConfig
from interventions.winback import EARLY_WARNING, WIN_BACK

HOLD_COOLDOWN = "cooldown"
HOLD_CAPACITY = "capacity"
KEYS = ["student_id", "course_id"]


def risk_change(
    keys: pd.DataFrame, risk: np.ndarray, previous: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """(previous_risk, change): the student's risk in the previous scoring (NaN when none) and
    risk now minus it."""
    n = len(keys)
    if previous is None or previous.empty:
        prev = np.full(n, np.nan)
    else:
        lookup = previous.drop_duplicates(KEYS).set_index(KEYS)["risk"]
        index = pd.MultiIndex.from_arrays([keys[k].astype("str") for k in KEYS])
        prev = lookup.reindex(index).to_numpy(dtype="float64", na_value=np.nan)
    return prev, np.asarray(risk, dtype="float64") - prev


def last_contact(keys: pd.DataFrame, contacts: pd.DataFrame | None) -> np.ndarray:
    """Latest contact time per row (`contacts`: student_id, course_id, ts); NaT when none."""
    if contacts is None or contacts.empty:
        return pd.Series(pd.NaT, index=keys.index, dtype="datetime64[us, UTC]").to_numpy()
    latest = contacts.groupby(KEYS, sort=False)["ts"].max()
    index = pd.MultiIndex.from_arrays([keys[k].astype("str") for k in KEYS])
    return latest.reindex(index).to_numpy()


def capacities(curators: pd.Series, config: ScoringConfig) -> np.ndarray:
    """Each row's curator capacity (per-curator override, else the default)."""
    if not config.curator_capacity:
        return np.full(len(curators), config.capacity, dtype=np.int64)
    override = curators.map(config.curator_capacity)
    return override.fillna(config.capacity).to_numpy(dtype=np.int64)


def in_cooldown(last_contact_at: np.ndarray, as_of: datetime, config: ScoringConfig) -> np.ndarray:
    """Contacted in [T - cooldown_days, T)."""
    ts = pd.Series(pd.to_datetime(last_contact_at, utc=True))
    start = pd.Timestamp(as_of) - timedelta(days=config.cooldown_days)
    return ((ts >= start) & (ts < pd.Timestamp(as_of))).to_numpy(dtype=bool)


def sorted_codes(values: pd.Series) -> np.ndarray:
    """Integer codes in the lexicographic order of the values (fast sort keys for strings)."""
    codes, _ = pd.factorize(values.astype("str"), sort=True)
    return codes


def section_codes(table: pd.DataFrame) -> np.ndarray:
    """0 for early warning (also when there is no `section` column), 1 for win-back."""
    if "section" not in table.columns:
        return np.zeros(len(table), dtype=np.int64)
    section = table["section"].astype("str").to_numpy(dtype=object, na_value=None)
    return (section == WIN_BACK).astype(np.int64)


def rank_for_curators(table: pd.DataFrame, as_of: datetime, config: ScoringConfig) -> pd.DataFrame:
    """Apply cooldown and capacity per curator (and per section, when `table` has `section`).

    `table` needs curator_id, student_id, course_id, risk, change, triggered, last_contact_at;
    optionally section (early_warning | win_back) and section_priority (smaller first within a
    section). Returns (same index) in_cooldown, cooldown_lifted (contacted but the risk jumped),
    eligible, listed, rank (Int64, 1.. within the section, missing when not listed), hold_back,
    and curator_order (0-based position within the curator's whole ordering, early warning
    first, for stable sorting of outputs).
    """
    n = len(table)
    risk = table["risk"].to_numpy(dtype="float64", na_value=np.nan)
    change = table["change"].to_numpy(dtype="float64", na_value=np.nan)
    triggered = table["triggered"].to_numpy(dtype=bool)
    cooling = in_cooldown(table["last_contact_at"].to_numpy(), as_of, config)
    with np.errstate(invalid="ignore"):
        jumped = change >= config.risk_jump  # NaN (no previous scoring) is no jump
    lifted = cooling & jumped
    held = cooling & ~jumped
    if not config.cooldown_applies_to_triggers:
        held &= ~triggered
    eligible = ~held

    section = section_codes(table)
    priority = (
        table["section_priority"].to_numpy(dtype="float64", na_value=np.inf)
        if "section_priority" in table.columns
        else np.zeros(n)
    )
    # lexsort: last key is primary. Missing risks sort last.
    sort_risk = np.where(np.isnan(risk), -np.inf, risk)
    curator_code = sorted_codes(table["curator_id"])
    order = np.lexsort(
        (
            sorted_codes(table["course_id"]),
            sorted_codes(table["student_id"]),
            -sort_risk,
            priority,
            ~triggered,
            ~eligible,
            section,
            curator_code,
        )
    )
    position = _positions(curator_code, order)  # within the curator's whole ordering
    in_section = _positions(curator_code * 2 + section, order)  # within (curator, section)
    cap = np.where(section == 1, config.winback_capacity, capacities(table["curator_id"], config))
    listed = eligible & (in_section < cap)
    rank = pd.array(np.where(listed, in_section + 1, 0), dtype="Int64")
    rank[~listed] = pd.NA
    hold = np.where(held, HOLD_COOLDOWN, np.where(listed, None, HOLD_CAPACITY))
    return pd.DataFrame(
        {
            "in_cooldown": cooling,
            "cooldown_lifted": lifted,
            "eligible": eligible,
            "listed": listed,
            "rank": rank,
            "hold_back": pd.Series(hold, index=table.index, dtype="str"),
            "curator_order": position,
        },
        index=table.index,
    )


def _positions(group_code: np.ndarray, order: np.ndarray) -> np.ndarray:
    """0-based position of each row within its group, in `order` (groups contiguous in it)."""
    n = len(order)
    grouped = group_code[order]
    new_group = np.ones(n, dtype=bool)
    if n:
        new_group[1:] = grouped[1:] != grouped[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - group_start
    return position


CSV_COLUMNS = (
    "section",
    "rank",
    "student",
    "course",
    "risk",
    "change",
    "reasons",
    "tier",
    "action",
    "message",
)


def format_risk(values: pd.Series, decimals: int, signed: bool = False) -> pd.Series:
    """Fixed-precision text ("" when missing), so lists are byte-identical across re-runs."""
    spec = f"{{:{'+' if signed else ''}.{decimals}f}}"
    x = values.astype("float64").round(decimals) + 0.0  # no "-0.000"
    return x.map(lambda v: "" if np.isnan(v) else spec.format(v)).astype("str")


def curator_lists(
    ranking: pd.DataFrame, tiers: dict[str, str], actions: dict[str, str], decimals: int
) -> pd.DataFrame:
    """Listed students in list order (curator, section, rank) with the curator CSV columns (all
    text) and `curator_id`. `section` is early_warning or win_back (early_warning when the
    ranking has no sections). Tier and action are shown with their labels."""
    listed = ranking[ranking["listed"]].assign(_section=lambda f: section_codes(f))
    listed = listed.sort_values(["curator_id", "_section", "rank"], kind="stable")
    section = (
        listed["section"].astype("str")
        if "section" in listed.columns
        else pd.Series(EARLY_WARNING, index=listed.index, dtype="str")
    )
    out = pd.DataFrame(
        {
            "curator_id": listed["curator_id"].astype("str"),
            "section": section,
            "rank": listed["rank"].astype("int64").astype("str"),
            "student": listed["student_id"].astype("str"),
            "course": listed["course_id"].astype("str"),
            "risk": format_risk(listed["risk"], decimals),
            "change": format_risk(listed["change"], decimals, signed=True),
            "reasons": listed["reasons"].astype("str").fillna(""),
            "tier": listed["tier"].map(tiers).astype("str").fillna(""),
            "action": listed["action"].map(actions).astype("str").fillna(""),
            "message": listed["message"].astype("str").fillna(""),
        }
    )
    return out.reset_index(drop=True)
