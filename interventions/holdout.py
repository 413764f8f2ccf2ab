"""The randomised hold-out: who of the students who would be listed goes into the control arm.

- Each enrolment is drawn once, the first week it would be listed; its arm is kept for good (the
  caller stores it before any list is written and passes stored arms back in later weeks).
- The draw is blocked by (curator x risk band): in a block of n new students,
  floor(share x n) plus one more with probability of the remainder go to control, so every
  student has exactly `control_share` chance and each curator's lists lose about that share.
- Who in a block goes to control is decided by a hash of (seed, student, course): the same seed
  and the same students give the same arms, on any machine, without a random state to keep.
- A control student is on no list for `weeks_out` weeks from the draw; the freed slots go to the
  next students in the curator's order (who are then drawn in turn, so the listed arm is not
  made of lower-risk fill-ins only).
- Cases routed to an exempt tier (technical support by default) are never held out.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from configs.schema import ExperimentConfig, ScoringConfig
from interventions.ranking import capacities, section_codes, sorted_codes

ARM_CONTROL = "control"
ARM_LISTED = "listed"
HOLD_CONTROL = "control"  # hold_back of a control student
KEYS = ["student_id", "course_id"]
ARM_COLUMNS = [
    "student_id",
    "course_id",
    "arm",
    "assigned_at",
    "release_at",
    "curator_id",
    "risk_band",
    "risk",
]


def utc(t) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def unit_hash(seed: int, *parts: pd.Series) -> np.ndarray:
    """A uniform number in [0, 1) per row from BLAKE2b of the seed and the parts (stable across
    processes and machines, unlike Python's `hash`)."""
    joined = pd.Series(str(seed), index=parts[0].index, dtype="str")
    for part in parts:
        joined = joined + "|" + part.astype("str")
    digests = [
        int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")
        for s in joined.tolist()
    ]
    return np.asarray(digests, dtype=np.float64) / 2.0**64


def risk_band(risk: np.ndarray | pd.Series, cuts: list[float]) -> pd.Series:
    """Band label per risk: "<0.30", "0.30-0.60", ">=0.60" for cuts [0.3, 0.6]."""
    edges = [f"{c:.2f}" for c in cuts]
    inner = [f"{a}-{b}" for a, b in zip(edges, edges[1:], strict=False)]
    labels = [f"<{edges[0]}", *inner, f">={edges[-1]}"] if cuts else ["all"]
    values = np.asarray(risk, dtype="float64")
    codes = np.searchsorted(np.asarray(cuts, dtype="float64"), values, side="right")
    index = risk.index if isinstance(risk, pd.Series) else None
    return pd.Series(np.asarray(labels, dtype=object)[codes], index=index, dtype="str")


def draw_arms(
    candidates: pd.DataFrame, as_of: datetime, config: ExperimentConfig, round_: int = 0
) -> pd.DataFrame:
    """Arms for `candidates` (student_id, course_id, curator_id, risk; enrolments without an arm
    yet), drawn in (curator x risk band) blocks. Returns ARM_COLUMNS, one row per candidate.
    `round_`: the week's draw round (fill-ins are drawn in later rounds; each round's extra
    draws are independent of the others', else a block's fill-ins would all follow one coin)."""
    c = candidates.reset_index(drop=True)
    band = risk_band(c["risk"].to_numpy("float64"), config.risk_bands)
    u = unit_hash(config.seed, c["student_id"], c["course_id"])
    control = np.zeros(len(c), dtype=bool)
    if config.control_share > 0 and len(c):
        block = c["curator_id"].astype("str") + "|" + band
        when = as_of.date().isoformat()
        for key, rows in block.groupby(block, sort=True).groups.items():
            rows = np.asarray(rows)
            expected = config.control_share * len(rows)
            k = int(np.floor(expected))
            # one more with the probability of the remainder, from the block's own hash
            extra = unit_hash(config.seed, pd.Series([f"block|{key}|{when}|{round_}"]))
            k += int(extra[0] < expected - k)
            chosen = rows[np.argsort(u[rows], kind="stable")[:k]]
            control[chosen] = True
    assigned = utc(as_of)
    return pd.DataFrame(
        {
            "student_id": c["student_id"].astype("str"),
            "course_id": c["course_id"].astype("str"),
            "arm": pd.Series(np.where(control, ARM_CONTROL, ARM_LISTED), dtype="str"),
            "assigned_at": pd.Series([assigned] * len(c), dtype="datetime64[us, UTC]"),
            "release_at": pd.Series(
                [assigned + timedelta(weeks=config.weeks_out)] * len(c),
                dtype="datetime64[us, UTC]",
            ),
            "curator_id": c["curator_id"].astype("str"),
            "risk_band": band,
            "risk": c["risk"].astype("float64"),
        },
        columns=ARM_COLUMNS,
    )


def withhold(ranking: pd.DataFrame, control: np.ndarray, scoring: ScoringConfig) -> pd.DataFrame:
    """The ranking with the `control` rows on no list (hold_back "control", not eligible) and
    each curator's capacity (per section: early warning, win-back) filled by the next eligible
    students in `curator_order`."""
    out = ranking.copy()
    control = np.asarray(control, dtype=bool)
    eligible = out["eligible"].to_numpy(dtype=bool) & ~control
    section = section_codes(out)
    curator = sorted_codes(out["curator_id"])
    order = np.lexsort((out["curator_order"].to_numpy(dtype=np.int64), ~eligible, section, curator))
    n = len(out)
    group = (curator * 2 + section)[order]
    new_group = np.ones(n, dtype=bool)
    if n:
        new_group[1:] = group[1:] != group[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - group_start  # within (curator, section)
    cap = np.where(
        section == 1,
        scoring.winback_capacity,
        capacities(out["curator_id"].astype("str"), scoring),
    )
    listed = eligible & (position < cap)
    rank = pd.array(np.where(listed, position + 1, 0), dtype="Int64")
    rank[~listed] = pd.NA
    hold = out["hold_back"].astype("object").to_numpy().copy()
    hold[listed] = None
    hold[~listed & eligible] = "capacity"
    hold[control] = HOLD_CONTROL
    out["eligible"] = eligible
    out["listed"] = listed
    out["rank"] = rank
    out["hold_back"] = pd.Series(hold, index=out.index, dtype="str")
    if scoring.explain != "all":
        out["explained"] = listed
    return out


def holdout_ranking(
    ranking: pd.DataFrame,
    arms: pd.DataFrame,
    exempt: np.ndarray,
    as_of: datetime,
    config: ExperimentConfig,
    scoring: ScoringConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranking with control students withheld, the new arms to store).

    `arms`: the stored arms (ARM_COLUMNS; empty when none). A stored control arm holds the
    student out while assigned_at <= as_of < release_at; `exempt` rows (technical support) are
    never held out and never drawn. Listed students without an arm are drawn; when that frees
    slots, the students filling them are drawn in turn, until every listed non-exempt student
    has an arm.
    """
    exempt = np.asarray(exempt, dtype=bool)
    if config.control_share == 0:
        return ranking, pd.DataFrame(columns=ARM_COLUMNS)
    keys = pd.MultiIndex.from_arrays([ranking[k].astype("str") for k in KEYS])
    now = utc(as_of)
    known = pd.DataFrame(columns=ARM_COLUMNS) if arms is None else arms
    stored = known.drop_duplicates(KEYS).set_index(KEYS)
    has_arm = keys.isin(stored.index)
    # out from the draw until release (re-scoring an earlier week: a later draw does not apply)
    out_now = stored[
        (stored["arm"] == ARM_CONTROL)
        & (pd.to_datetime(stored["assigned_at"], utc=True) <= now)
        & (pd.to_datetime(stored["release_at"], utc=True) > now)
    ].index
    control = keys.isin(out_now) & ~exempt
    new_arms = []
    current = withhold(ranking, control, scoring)
    for round_ in itertools.count():
        to_draw = current["listed"].to_numpy(dtype=bool) & ~has_arm & ~exempt
        if not to_draw.any():
            break
        drawn = draw_arms(
            current.loc[to_draw, [*KEYS, "curator_id", "risk"]], as_of, config, round_
        )
        new_arms.append(drawn)
        has_arm |= to_draw
        drawn_control = drawn.loc[drawn["arm"] == ARM_CONTROL].set_index(KEYS).index
        if len(drawn_control) == 0:
            break
        control |= keys.isin(drawn_control)
        current = withhold(ranking, control, scoring)
    new = pd.concat(new_arms, ignore_index=True) if new_arms else pd.DataFrame(columns=ARM_COLUMNS)
    return current, new
