"""A term of weekly lists with the hold-out and simulated curators, on a simulated school with a
known effect of a contact: the measure recovers the planted effect within its interval, and says
nothing when the planted effect is zero. (Pure functions end to end: rank, hold out, contact,
outcomes, measure; the scorer wires the same functions.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from configs.schema import ExperimentConfig, ScoringConfig
from interventions.effect import CLAIMS, DROPOUT, OVERALL, measure_effect, outcomes
from interventions.holdout import ARM_COLUMNS, ARM_LISTED, holdout_ranking
from interventions.ranking import rank_for_curators

START = datetime(2026, 9, 7, tzinfo=UTC)
HORIZON = 28
SCORING = ScoringConfig(capacity=15)
EXPERIMENT = ExperimentConfig(control_share=0.2, weeks_out=4)


def simulate_term(effect: float, contact_rate: float, seed: int, weeks: int = 10):
    """Arms, outcomes and contacts of a term: 4,000 enrolments, 40 curators; each week's risk
    is a student's latent risk plus noise (lists churn); curators contact each listed student
    with `contact_rate`; a contact during the weeks out lowers the dropout probability within
    the horizon by `effect` (absolute)."""
    rng = np.random.default_rng(seed)
    n, curators = 4000, 40
    students = pd.Series([f"s{i:05d}" for i in range(n)], dtype="str")
    latent = rng.beta(2, 5, n)
    arms = pd.DataFrame(columns=ARM_COLUMNS)
    contacts = []
    for week in range(weeks):
        as_of = START + timedelta(weeks=week)
        table = pd.DataFrame(
            {
                "student_id": students,
                "course_id": pd.Series(["c1"] * n, dtype="str"),
                "curator_id": pd.Series([f"k{i % curators:02d}" for i in range(n)], dtype="str"),
                "risk": np.clip(latent + rng.normal(0, 0.15, n), 0, 1),
                "change": np.full(n, np.nan),
                "triggered": np.zeros(n, bool),
                "last_contact_at": pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]"),
            }
        )
        table = pd.concat([table, rank_for_curators(table, as_of, SCORING)], axis=1)
        table["explained"] = table["listed"]
        held, new = holdout_ranking(table, arms, np.zeros(n, bool), as_of, EXPERIMENT, SCORING)
        arms = pd.concat([arms, new], ignore_index=True) if len(new) else arms
        listed = held.loc[held["listed"], "student_id"]
        reached = listed[rng.random(len(listed)) < contact_rate]
        contacts.append(
            pd.DataFrame(
                {"student_id": reached, "course_id": "c1", "ts": as_of + timedelta(days=1)}
            )
        )
    contacts = pd.concat(contacts, ignore_index=True)
    contacts["ts"] = pd.to_datetime(contacts["ts"], utc=True)
    # outcomes: dropout within the horizon after the draw, lowered by a contact in the weeks out
    drawn = arms.set_index("student_id")
    assigned = pd.to_datetime(drawn["assigned_at"], utc=True)
    release = pd.to_datetime(drawn["release_at"], utc=True)
    c = contacts.merge(drawn[[]].reset_index(), on="student_id")
    c = c[
        (c["ts"] >= assigned.reindex(c["student_id"]).to_numpy())
        & (c["ts"] < release.reindex(c["student_id"]).to_numpy())
    ]
    contacted = drawn.index.isin(c["student_id"]) & (drawn["arm"] == ARM_LISTED).to_numpy()
    p = latent[drawn.index.str[1:].astype(int)] - effect * contacted
    dropped = rng.random(len(drawn)) < np.clip(p, 0, 1)
    when = assigned + pd.to_timedelta(rng.uniform(0, HORIZON, len(drawn)), unit="D")
    enrollments = pd.DataFrame(
        {
            "student_id": drawn.index,
            "course_id": "c1",
            "unenrolled_at": pd.Series(when.where(dropped).to_numpy(), dtype="datetime64[us, UTC]"),
        }
    )
    courses = pd.DataFrame({"course_id": ["c1"], "end_at": [START + timedelta(weeks=30)]})
    table = outcomes(arms, enrollments, courses, contacts, START + timedelta(weeks=20), HORIZON)
    return measure_effect(table, EXPERIMENT), float(
        contacted.sum() / (drawn["arm"] == ARM_LISTED).sum()
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_a_term_recovers_the_planted_effect_within_its_interval(seed):
    effect, rate = 0.15, 0.8
    comparisons, contact_rate = simulate_term(effect, rate, seed)
    overall = next(c for c in comparisons if c.outcome == DROPOUT and c.band == OVERALL)
    truth_itt = -effect * contact_rate  # the contact effect among everyone listed
    print(overall)
    share = overall.n_control / (overall.n_control + overall.n_listed)
    assert overall.n_control >= 150 and 0.17 < share < 0.23  # the configured 20 %
    assert overall.low <= truth_itt <= overall.high
    assert overall.per_contacted_low <= -effect <= overall.per_contacted_high
    # standardised to the strata's mix (and only over strata with both arms): about the same
    assert overall.contact_rate == pytest.approx(contact_rate, abs=0.01)
    assert overall.verdict == CLAIMS[(DROPOUT, -1)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_term_with_no_effect_claims_none(seed):
    comparisons, _ = simulate_term(0.0, 0.8, seed)
    overall = next(c for c in comparisons if c.outcome == DROPOUT and c.band == OVERALL)
    print(overall)
    assert overall.low <= 0 <= overall.high
    assert overall.verdict not in CLAIMS.values()
