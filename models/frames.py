"""A synthetic *feature frame* (not a source) with a planted dropout signal.

Tests and the training benchmark need frames in the agreed feature-frame layout without running
the source generator and feature builder. Dropout is driven by (a) a student's static propensity,
(b) an interaction (many questions *and* weak scores), (c) a higher hazard in the first and last
weeks of a run and (d) an attribute effect; features show disengagement in the weeks before a
student leaves. A good model beats the recency rule by a wide margin; logistic regression comes
close to it (many noisy counts of one activity level suit a linear model), so tests only assert
the former.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from configs.schema import Config
from features.catalog import feature_names


@dataclass(frozen=True)
class PlantedSignal:
    """Effect sizes of the planted signal (weekly dropout hazard on the logit scale)."""

    base_logit: float = -3.6
    propensity: float = 0.9
    question_and_weak: float = 1.8
    attr_group: float = 0.6
    disengage_days: float = 18.0
    events_per_week: float = 25.0
    noise: float = 0.3
    engagement_spread: float = 0.8
    early_phase: float = 1.5
    late_phase: float = 1.2


def synthetic_feature_frame(
    n_students: int, config: Config, seed: int = 0, signal: PlantedSignal | None = None
) -> pd.DataFrame:
    """Weekly labelled snapshots for `n_students` enrolments spread over the configured runs."""
    sig = signal or PlantedSignal()
    gen = config.generator
    rng = np.random.default_rng(seed)
    step = config.snapshots.step_days
    horizon = pd.Timedelta(days=config.snapshots.horizon_days)

    n_runs = gen.n_course_runs
    first = pd.Timestamp(gen.first_start, tz="UTC")
    offsets = np.sort(rng.integers(0, gen.start_spread_weeks + 1, n_runs)) * 7
    run_start = first + pd.to_timedelta(offsets, unit="D")
    run_weeks = rng.integers(gen.course_weeks_min, gen.course_weeks_max + 1, n_runs)
    run_end = run_start + pd.to_timedelta(run_weeks * 7, unit="D")
    data_end = run_end.max() - pd.Timedelta(days=step * 2)

    run = rng.integers(0, n_runs, n_students)
    propensity = rng.normal(0, 1, n_students)
    question_rate = rng.gamma(1.5, 1.0, n_students)
    skill = rng.normal(0, 1, n_students)
    age_band = rng.choice(np.array(["18-25", "26-35", "36+"]), n_students, p=[0.5, 0.35, 0.15])
    prior_courses = rng.poisson(1.0, n_students).astype(float)
    engagement = rng.lognormal(0, sig.engagement_spread, n_students)
    logit = (
        sig.base_logit
        + sig.propensity * propensity
        + sig.question_and_weak * ((question_rate > 2.0) & (skill < -0.3))
        + sig.attr_group * (age_band == "36+")
        - 0.2 * prior_courses
    )
    # Weekly hazard, higher in the first weeks and near the end of a run (a U shape a linear
    # model cannot follow), on top of each student's own propensity.
    weeks = run_weeks[run]
    leave_week = np.full(n_students, np.iinfo(np.int64).max)
    for week in range(1, int(weeks.max()) + 1):
        phase = week / weeks
        week_logit = logit + sig.early_phase * (phase <= 0.2) + sig.late_phase * (phase > 0.8)
        leaves = (rng.random(n_students) < 1.0 / (1.0 + np.exp(-week_logit))) & (week <= weeks)
        leave_week = np.where(leaves & (leave_week > week), week, leave_week)
    leave_week = np.minimum(leave_week, weeks + 1)
    leave_day = (leave_week - 1) * 7 + rng.integers(1, 8, n_students)
    dropped = leave_week <= weeks
    # Snapshot k (k = 1..weeks) is in the population when the student has not left by then.
    last_k = np.where(dropped, np.minimum(weeks, (leave_day - 1) // 7), weeks)
    last_k = np.maximum(last_k, 0)
    rows = np.repeat(np.arange(n_students), last_k)
    k = np.concatenate([np.arange(1, n + 1) for n in last_k]) if len(rows) else np.empty(0, int)
    start = run_start[run[rows]]
    as_of = start + pd.to_timedelta(k * step, unit="D")
    keep = np.asarray(as_of <= data_end)
    rows, k, as_of = rows[keep], k[keep], as_of[keep]
    n = len(rows)

    days_to_leave = np.where(dropped[rows], leave_day[rows] - k * step, np.inf)
    label = ((days_to_leave > 0) & (days_to_leave <= horizon.days)).astype(float)
    label[np.asarray(as_of + horizon > data_end)] = np.nan
    noise = np.exp(rng.normal(0, sig.noise, n))

    def activity_over(days_back: float) -> np.ndarray:
        """Activity level `days_back` days before the snapshot: fades as the exit nears."""
        distance = np.clip(days_to_leave + days_back, 0, None)
        return engagement[rows] * (1.0 - 0.85 * np.exp(-distance / sig.disengage_days)) * noise

    closeness = np.exp(-np.clip(days_to_leave, 0, None) / sig.disengage_days)

    names = feature_names(config.features)
    feats = {name: rng.normal(0, 1, n) for name in names}
    for w in config.features.windows_days:
        per_week = activity_over(w / 2) * w / 7
        feats[f"events_{w}d"] = rng.poisson(sig.events_per_week * per_week).astype(float)
        feats[f"active_days_{w}d"] = np.minimum(w, rng.poisson(3 * per_week)).astype(float)
        feats[f"lesson_views_{w}d"] = rng.poisson(6 * per_week).astype(float)
        feats[f"lesson_completions_{w}d"] = rng.poisson(3 * per_week).astype(float)
        feats[f"submissions_{w}d"] = rng.poisson(1 * per_week).astype(float)
        feats[f"quiz_attempts_{w}d"] = rng.poisson(1.5 * per_week).astype(float)
        feats[f"logins_{w}d"] = rng.poisson(4 * per_week).astype(float)
    gap = rng.exponential((1.5 + 12 * closeness) / engagement[rows])
    feats["days_since_last_activity"] = np.minimum(gap, k * step).round()
    feats["days_since_last_submission"] = np.minimum(gap * 2 + rng.exponential(5, n), k * step)
    feats["days_since_last_login"] = np.minimum(gap + rng.exponential(1, n), k * step).round()
    feats["deadlines_due"] = np.floor(k / 2).astype(float)
    missed = rng.binomial(feats["deadlines_due"].astype(int), np.clip(0.1 + 0.5 * closeness, 0, 1))
    feats["deadlines_missed"] = missed.astype(float)
    feats["deadlines_due_28d"] = np.minimum(2.0, feats["deadlines_due"])
    feats["deadlines_missed_28d"] = np.minimum(feats["deadlines_missed"], 2.0)
    score_mean = np.clip(70 + 10 * skill[rows] + rng.normal(0, 5, n), 0, 100)
    feats["score_mean"] = np.where(feats["deadlines_due"] > 0, score_mean, np.nan)
    feats["score_last"] = np.clip(feats["score_mean"] + rng.normal(0, 8, n), 0, 100)
    feats["score_trend"] = rng.normal(0, 5, n) - 10 * closeness
    support = config.features.support_window_days
    feats[f"questions_{support}d"] = rng.poisson(question_rate[rows] * support / 7).astype(float)
    feats[f"support_tickets_{support}d"] = rng.poisson(0.2, n).astype(float)
    feats["feedback_last"] = np.where(rng.random(n) < 0.3, rng.integers(1, 6, n), np.nan)
    feats["days_since_start"] = (k * step).astype(float)
    feats["course_length_days"] = (weeks[rows] * 7).astype(float)
    feats["course_elapsed_share"] = feats["days_since_start"] / feats["course_length_days"]
    enrol_lead = rng.integers(0, 15, n_students)
    feats["days_since_enrolment"] = feats["days_since_start"] + enrol_lead[rows]
    before = rng.poisson(sig.events_per_week * activity_over(10.5)).astype(float)
    feats["events_change_7d"] = np.where(
        before > 0, (feats["events_7d"] - before) / np.maximum(before, 1), np.nan
    )
    feats["events_total"] = feats[f"events_{max(config.features.windows_days)}d"] * k / 4

    per_run = max(1, n_students // n_runs // gen.students_per_curator_max + 1)
    curators = np.array([f"c{r:02d}-{j}" for r in range(n_runs) for j in range(per_run)])
    runs = np.array([f"run{r:02d}" for r in range(n_runs)])
    frame = pd.DataFrame(
        {
            "student_id": pd.Series(
                np.char.add("s", np.char.zfill(rows.astype(str), 7)), dtype="str"
            ),
            "course_id": pd.Series(runs[run[rows]], dtype="str"),
            "as_of": pd.Series(as_of).astype("datetime64[us, UTC]"),
            "curator_id": pd.Series(curators[run[rows] * per_run + rows % per_run], dtype="str"),
            "mentor_id": pd.Series([None] * n, dtype="str"),
            "course_start": pd.Series(start[keep]).astype("datetime64[us, UTC]"),
            "course_end": pd.Series(run_end[run[rows]]).astype("datetime64[us, UTC]"),
            "enrolled_at": pd.Series(
                start[keep] - pd.to_timedelta(enrol_lead[rows], unit="D")
            ).astype("datetime64[us, UTC]"),
            "label": label,
        }
    )
    for name in names:
        frame[name] = np.asarray(feats[name], dtype="float64")
    if config.features.include_attrs:
        frame["attr_age_band"] = pd.Categorical(age_band[rows])
        frame["attr_prior_courses"] = prior_courses[rows]
    return frame
