"""Did the lists help? Dropout of listed against control students, and how long it takes to know.

- Outcomes per drawn enrolment: dropped out within the horizon after its draw (matured once the
  horizon has passed), and still enrolled at course end (matured once the course has ended).
- The effect is listed minus control (intention to treat: everyone drawn counts in its arm,
  contacted or not), per risk band and overall, stratified like the draw: strata of
  `experiment.strata` (risk band x draw week by default), the difference sum_s w_s (p_listed_s -
  p_control_s) with w_s the stratum's share of the counted enrolments, its variance sum_s w_s^2
  (var_listed_s + var_control_s). The draw's realised control share differs between its blocks
  and weeks, so a pooled comparison would mix arms of different risk. A stratum without a control
  or a listed enrolment is dropped (and counted). The interval is Agresti-Caffo spread over the
  strata (one success and one failure per arm in all, w_s of each in stratum s), each stratum's
  variance at least the one from its rate over both arms (stable in small strata): it keeps its
  coverage with small arms and rates near 0.
- The effect per contacted student is the intention-to-treat effect divided by the share of the
  listed arm contacted during its weeks out (Bloom's estimator; the contact rate taken as known).
- An effect is claimed only when the interval at `claim_alpha` (95 % by default: wider than
  the 90 % one shown) excludes zero; otherwise the verdict is "not enough evidence yet" while the
  minimum detectable effect is above `plan_effect` or an arm is small, else "no evidence of an
  effect". So no verdict says more than its interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

import numpy as np
import pandas as pd

from configs.schema import ExperimentConfig
from interventions.holdout import ARM_CONTROL, ARM_LISTED, KEYS, utc

OVERALL = "all"
# experiment.strata -> the column of `outcomes` holding it
STRATUM_COLUMNS = {"risk_band": "risk_band", "week": "week", "curator": "curator_id"}
DROPOUT = "dropout"
ENROLLED_AT_END = "enrolled_at_end"
NOT_ENOUGH = "not enough evidence yet"
NO_EVIDENCE = "no evidence of an effect"
# (outcome, sign of the effect) -> claim. Dropout down is good; enrolled at end up is good.
CLAIMS = {
    (DROPOUT, -1): "the lists lowered dropout",
    (DROPOUT, 1): "listed students dropped out more",
    (ENROLLED_AT_END, 1): "more listed students were still enrolled at course end",
    (ENROLLED_AT_END, -1): "fewer listed students were still enrolled at course end",
}
# Each verdict's key in the message files (configs/messages/*.yaml `effect.verdicts`): the
# English texts above are the command line's and the JSON's; pages and reports translate keys.
VERDICT_KEYS = {
    NOT_ENOUGH: "not_enough",
    NO_EVIDENCE: "no_evidence",
    CLAIMS[(DROPOUT, -1)]: "dropout_lower",
    CLAIMS[(DROPOUT, 1)]: "dropout_higher",
    CLAIMS[(ENROLLED_AT_END, 1)]: "enrolled_more",
    CLAIMS[(ENROLLED_AT_END, -1)]: "enrolled_fewer",
}


def z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def outcomes(
    arms: pd.DataFrame,
    enrollments: pd.DataFrame,
    courses: pd.DataFrame,
    contacts: pd.DataFrame | None,
    as_of: datetime,
    horizon_days: int,
) -> pd.DataFrame:
    """One row per drawn enrolment: arm, its draw's stratum (risk_band, week of the draw,
    curator_id), dropout / dropout_matured, enrolled_at_end /
    end_matured, contacted (a contact between its draw and its release; listed arm only counts).
    `enrollments`: student_id, course_id, unenrolled_at; `courses`: course_id, end_at;
    `contacts`: student_id, course_id, ts. Nothing at or after `as_of` is known yet: a source
    holding later rows (a replayed or simulated term) gives what was known at `as_of`."""
    now = utc(as_of)
    a = arms[[*KEYS, "arm", "risk_band", "curator_id", "assigned_at", "release_at"]].copy()
    for k in [*KEYS, "curator_id", "risk_band"]:
        a[k] = a[k].astype("str")
    e = enrollments[[*KEYS, "unenrolled_at"]].astype({"student_id": "str", "course_id": "str"})
    c = courses[["course_id", "end_at"]].astype({"course_id": "str"})
    t = a.merge(e, on=KEYS, how="left").merge(c, on="course_id", how="left")
    assigned = pd.to_datetime(t["assigned_at"], utc=True)
    unenrolled = pd.to_datetime(t["unenrolled_at"], utc=True)
    unenrolled = unenrolled.where(unenrolled < now)
    end = pd.to_datetime(t["end_at"], utc=True)
    horizon_end = assigned + timedelta(days=horizon_days)
    left_in_horizon = unenrolled.notna() & (unenrolled >= assigned) & (unenrolled < horizon_end)
    left_before_end = unenrolled.notna() & (unenrolled < end)
    t["dropout"] = left_in_horizon.to_numpy(dtype=bool)
    # matured: the horizon has passed, or the student already left inside it
    t["dropout_matured"] = ((horizon_end <= now) | left_in_horizon).to_numpy(dtype=bool)
    t["enrolled_at_end"] = (~left_before_end).to_numpy(dtype=bool)
    t["end_matured"] = ((end.notna() & (end <= now)) | left_before_end).to_numpy(dtype=bool)
    t["contacted"] = False
    if contacts is not None and len(contacts):
        k = contacts[[*KEYS, "ts"]].astype({"student_id": "str", "course_id": "str"})
        m = t[[*KEYS, "assigned_at", "release_at"]].reset_index().merge(k, on=KEYS)
        ts = pd.to_datetime(m["ts"], utc=True)
        inside = (
            (ts >= pd.to_datetime(m["assigned_at"], utc=True))
            & (ts < pd.to_datetime(m["release_at"], utc=True))
            & (ts < now)
        )
        t.loc[m.loc[inside.to_numpy(), "index"].unique(), "contacted"] = True
    t["week"] = assigned.dt.normalize().dt.date.astype("str").to_numpy()
    return t[
        [
            *KEYS,
            "arm",
            "risk_band",
            "week",
            "curator_id",
            "dropout",
            "dropout_matured",
            "enrolled_at_end",
            "end_matured",
            "contacted",
        ]
    ]


def difference(
    x_listed: np.ndarray,
    n_listed: np.ndarray,
    x_control: np.ndarray,
    n_control: np.ndarray,
    level: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(listed rate - control rate, interval low, high) at `level`, Agresti-Caffo. Vectorised:
    arrays of counts in, arrays out (NaN where an arm is empty)."""
    xt, nt = np.asarray(x_listed, "float64"), np.asarray(n_listed, "float64")
    xc, nc = np.asarray(x_control, "float64"), np.asarray(n_control, "float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = xt / nt - xc / nc
        pt, pc = (xt + 1) / (nt + 2), (xc + 1) / (nc + 2)
        se = np.sqrt(pt * (1 - pt) / (nt + 2) + pc * (1 - pc) / (nc + 2))
    centre = pt - pc
    half = z(0.5 + level / 2) * se
    empty = (nt == 0) | (nc == 0)
    lo, hi = np.where(empty, np.nan, centre - half), np.where(empty, np.nan, centre + half)
    return np.where(empty, np.nan, diff), lo, hi


def stratified_difference(
    x_listed: np.ndarray,
    n_listed: np.ndarray,
    x_control: np.ndarray,
    n_control: np.ndarray,
    level: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sum_s w_s (listed rate_s - control rate_s), interval low, high) at `level` over the
    strata on the last axis (module docstring); strata with an empty arm count for nothing.
    Agresti-Caffo spread over the strata: w_s successes and w_s failures added to each arm of
    stratum s (one of each per arm in all); a stratum's variance is the larger of the unpooled
    (Agresti-Caffo) one and the one from its rate over both arms (docs/holdout.md: 0.87-0.93
    coverage from strata of 8 to one stratum of 5,500, where either alone falls to 0.77-0.84).
    Vectorised: leading axes are independent tables (NaN where no stratum has both arms)."""
    xt, nt = np.asarray(x_listed, "float64"), np.asarray(n_listed, "float64")
    xc, nc = np.asarray(x_control, "float64"), np.asarray(n_control, "float64")
    kept = (nt > 0) & (nc > 0)
    size = np.where(kept, nt + nc, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = size / size.sum(axis=-1, keepdims=True)
        raw = np.where(kept, xt / nt - xc / nc, 0.0)
        pt, pc = (xt + w) / (nt + 2 * w), (xc + w) / (nc + 2 * w)
        unpooled = pt * (1 - pt) / (nt + 2 * w) + pc * (1 - pc) / (nc + 2 * w)
        # a small stratum with no event in an arm has an unpooled variance near 0 just when its
        # difference is far from 0 (false claims): not below the variance from the stratum's
        # rate over both arms, which is right under no effect and is stable in small strata
        both = (xt + xc + 2 * w) / (nt + nc + 4 * w)
        pooled = both * (1 - both) * (1 / (nt + 2 * w) + 1 / (nc + 2 * w))
        var = np.maximum(unpooled, pooled)
        diff = np.sum(w * raw, axis=-1)
        centre = np.sum(np.where(kept, w * (pt - pc), 0.0), axis=-1)
        se = np.sqrt(np.sum(np.where(kept, w**2 * var, 0.0), axis=-1))
    half = z(0.5 + level / 2) * se
    empty = ~kept.any(axis=-1)
    return (
        np.where(empty, np.nan, diff),
        np.where(empty, np.nan, centre - half),
        np.where(empty, np.nan, centre + half),
    )


def minimum_detectable_effect(
    n_listed: float, n_control: float, rate: float, alpha: float, power: float
) -> float:
    """The smallest absolute difference a two-sided test at `alpha` detects with `power`."""
    if n_listed <= 0 or n_control <= 0:
        return math.inf
    rate = min(max(rate, 1e-6), 1 - 1e-6)
    return (z(1 - alpha / 2) + z(power)) * math.sqrt(
        rate * (1 - rate) * (1 / n_listed + 1 / n_control)
    )


@dataclass(frozen=True)
class Comparison:
    outcome: str
    band: str
    n_listed: int
    n_control: int
    rate_listed: float | None
    rate_control: float | None
    effect: float | None  # listed - control
    low: float | None
    high: float | None
    claim_low: float | None
    claim_high: float | None
    contact_rate: float | None  # share of the listed arm contacted during its weeks out
    per_contacted: float | None
    per_contacted_low: float | None
    per_contacted_high: float | None
    mde: float
    verdict: str
    verdict_key: str = ""  # VERDICT_KEYS[verdict]: the verdict's key in the message files
    strata: int = 1  # strata counted (both arms present)
    strata_dropped: int = 0  # strata with enrolments but an empty arm: not counted
    dropped: int = 0  # enrolments in those strata


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def compare(
    x_listed: int | np.ndarray,
    n_listed: int | np.ndarray,
    x_control: int | np.ndarray,
    n_control: int | np.ndarray,
    contacted: int | np.ndarray,
    *,
    outcome: str,
    band: str,
    config: ExperimentConfig,
) -> Comparison:
    """One comparison with its verdict (see the module's docstring). Counts per stratum (arrays
    in the same order; plain numbers: one stratum). Rates are standardised to the counted strata's
    enrolments (their difference is the effect); arms count the strata kept."""
    counts = [np.atleast_1d(np.asarray(v, "float64")) for v in (x_listed, n_listed)]
    counts += [np.atleast_1d(np.asarray(v, "float64")) for v in (x_control, n_control)]
    xt, nt, xc, nc = counts
    reached = np.broadcast_to(np.asarray(contacted, "float64"), nt.shape)
    kept = (nt > 0) & (nc > 0)
    diff, lo, hi = stratified_difference(xt, nt, xc, nc, config.confidence)
    _, clo, chi = stratified_difference(xt, nt, xc, nc, 1 - config.claim_alpha)
    diff, lo, hi, clo, chi = (float(v) for v in (diff, lo, hi, clo, chi))
    n_l, n_c = int(nt[kept].sum()), int(nc[kept].sum())
    total = n_l + n_c
    rate = float((xt[kept].sum() + xc[kept].sum()) / total) if total else config.plan_base_rate
    mde = minimum_detectable_effect(n_l, n_c, rate, config.claim_alpha, config.power)
    w = (nt + nc)[kept] / total if total else np.zeros(0)
    # the listed arm's contacted share, standardised like the rates (the effect's own mix)
    contact_rate = float(np.sum(w * reached[kept] / nt[kept])) if n_l else None
    small = min(n_l, n_c) < config.min_per_arm
    if not small and np.isfinite(clo) and (clo > 0 or chi < 0):
        verdict = CLAIMS[(outcome, 1 if clo > 0 else -1)]
    elif small or mde > config.plan_effect:
        verdict = NOT_ENOUGH
    else:
        verdict = NO_EVIDENCE
    per = [None, None, None]
    if contact_rate:
        per = [_num(v / contact_rate) for v in (diff, lo, hi)]
    return Comparison(
        outcome=outcome,
        band=band,
        n_listed=n_l,
        n_control=n_c,
        rate_listed=_num(float(np.sum(w * xt[kept] / nt[kept]))) if total else None,
        rate_control=_num(float(np.sum(w * xc[kept] / nc[kept]))) if total else None,
        effect=_num(diff),
        low=_num(lo),
        high=_num(hi),
        claim_low=_num(clo),
        claim_high=_num(chi),
        contact_rate=_num(contact_rate) if contact_rate is not None else None,
        per_contacted=per[0],
        per_contacted_low=per[1],
        per_contacted_high=per[2],
        mde=float(mde),
        verdict=verdict,
        verdict_key=VERDICT_KEYS[verdict],
        strata=int(kept.sum()),
        strata_dropped=int((~kept & ((nt + nc) > 0)).sum()),
        dropped=int((nt + nc)[~kept].sum()),
    )


def stratum_counts(rows: pd.DataFrame, outcome: str, strata: list[str]) -> pd.DataFrame:
    """Per stratum of `strata` (outcomes' columns): x/n of each arm and the listed contacted."""
    columns = [STRATUM_COLUMNS[s] for s in strata]
    listed = (rows["arm"] == ARM_LISTED).to_numpy()
    control = (rows["arm"] == ARM_CONTROL).to_numpy()
    y = rows[outcome].to_numpy(dtype=bool)
    frame = pd.DataFrame(
        {
            "x_listed": listed & y,
            "n_listed": listed,
            "x_control": control & y,
            "n_control": control,
            "contacted": listed & rows["contacted"].to_numpy(dtype=bool),
        }
    ).astype("int64")
    if not columns:
        return frame.sum().to_frame().T
    keys = [rows[c].astype("str").to_numpy() for c in columns]
    return frame.groupby(keys, sort=True).sum()


def measure_effect(table: pd.DataFrame, config: ExperimentConfig) -> list[Comparison]:
    """Every comparison: for dropout within the horizon and enrolled at course end, overall and
    per risk band, each stratified by `config.strata` (within a band: its other strata). `table`
    as `outcomes` returns it (matured rows only are counted)."""
    out = []
    for outcome, matured in ((DROPOUT, "dropout_matured"), (ENROLLED_AT_END, "end_matured")):
        ready = table[table[matured].to_numpy(dtype=bool)]
        groups = [(OVERALL, ready, list(config.strata))] + [
            (
                band,
                ready[ready["risk_band"] == band],
                [s for s in config.strata if s != "risk_band"],
            )
            for band in sorted(table["risk_band"].astype("str").unique())
        ]
        for band, rows, strata in groups:
            c = stratum_counts(rows, outcome, strata)
            out.append(
                compare(
                    c["x_listed"].to_numpy(),
                    c["n_listed"].to_numpy(),
                    c["x_control"].to_numpy(),
                    c["n_control"].to_numpy(),
                    c["contacted"].to_numpy(),
                    outcome=outcome,
                    band=band,
                    config=config,
                )
            )
    return out


def as_records(comparisons: list[Comparison]) -> list[dict]:
    return [asdict(c) for c in comparisons]


# --------------------------------------------------------------------------------- sizing


@dataclass(frozen=True)
class Plan:
    base_rate: float
    effect: float
    per_arm_equal: int  # enrolments per arm with equal arms (the textbook figure)
    control_needed: int  # control enrolments needed at the configured share
    listed_needed: int
    new_per_week: float  # enrolments drawn per week (new to the lists)
    weeks_to_draw: int | None  # weeks of draws to reach control_needed (None: never)
    weeks_total: int | None  # plus the horizon for the last draws to mature
    text: str


def enrolments_needed(base_rate: float, effect: float, alpha: float, power: float, ratio: float):
    """Control enrolments needed to detect a drop of `effect` from `base_rate` with `ratio`
    listed per control (unpooled normal approximation; 1,248 per arm for 30 % -> 25 %)."""
    p0, p1 = base_rate, base_rate - effect
    if not 0 < p1 < 1:
        raise ValueError(f"effect {effect} from base rate {base_rate} leaves no valid rate")
    zz = (z(1 - alpha / 2) + z(power)) ** 2
    return math.ceil(zz * (p0 * (1 - p0) + p1 * (1 - p1) / ratio) / effect**2)


def plan(
    *,
    new_per_week: float,
    config: ExperimentConfig,
    horizon_days: int,
    base_rate: float | None = None,
    effect: float | None = None,
) -> Plan:
    """How many weeks of draws detect `effect` (default `plan_effect`) at the control share."""
    p0 = config.plan_base_rate if base_rate is None else base_rate
    d = config.plan_effect if effect is None else effect
    share = config.control_share
    equal = enrolments_needed(p0, d, config.claim_alpha, config.power, 1.0)
    if share <= 0:
        control, listed, weeks = 0, 0, None
    else:
        ratio = (1 - share) / share
        control = enrolments_needed(p0, d, config.claim_alpha, config.power, ratio)
        listed = math.ceil(control * ratio)
        per_week = share * new_per_week
        weeks = math.ceil(control / per_week) if per_week > 0 else None
    total = None if weeks is None else weeks + math.ceil(horizon_days / 7)
    text = (
        f"A drop of {d * 100:.1f} points from {p0 * 100:.1f} % dropout needs about {equal:,} "
        "enrolments per arm with equal arms"
        + (
            f"; with {share:.0%} held out: {control:,} control and {listed:,} listed enrolments. "
            f"At {new_per_week:,.0f} new listed enrolments a week that is {weeks:,} weeks of "
            f"draws, {total:,} weeks until the last outcomes are known."
            if weeks is not None
            else "; the hold-out is off (control_share 0) or nobody is listed: never."
        )
    )
    return Plan(p0, d, equal, control, listed, new_per_week, weeks, total, text)
