"""The effect measure: interval coverage over 200 seeds, false claims under no effect, verdicts,
outcomes from the source's tables, and the sizing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from configs.schema import ExperimentConfig
from interventions.effect import (
    CLAIMS,
    DROPOUT,
    ENROLLED_AT_END,
    NO_EVIDENCE,
    NOT_ENOUGH,
    OVERALL,
    compare,
    difference,
    enrolments_needed,
    measure_effect,
    minimum_detectable_effect,
    outcomes,
    plan,
    stratified_difference,
)

CONFIG = ExperimentConfig()
SEEDS = 200


def simulate(seeds: int, n_listed: int, n_control: int, p_control: float, effect: float, seed=0):
    """Dropout counts per seed: control at p_control, listed at p_control + effect."""
    rng = np.random.default_rng(seed)
    return (
        rng.binomial(n_listed, p_control + effect, seeds),
        rng.binomial(n_control, p_control, seeds),
    )


# Strata like the draw's (risk band x week): 3 bands x 6 weeks, the realised control share
# unequal between them and higher where the risk is higher (as when the high band's blocks and
# weeks happen to send more to control): a pooled comparison then sees a control arm of higher
# risk and "the lists lowered dropout" with no effect at all.
BAND_RATES, BAND_SHARES = [0.04, 0.15, 0.40], [0.15, 0.30, 0.45]
WEEKS = 6


def simulate_strata(seeds: int, per_stratum: int, effect: float, seed=0, shares=BAND_SHARES):
    """Counts per seed and stratum (x_listed, n_listed, x_control, n_control: seeds x strata)
    and the true effect. `effect` is relative (listed rate = the band's rate x (1 + effect));
    every stratum has `per_stratum` enrolments, so the truth is the mean of rate x effect."""
    rng = np.random.default_rng(seed)
    rates = np.tile(BAND_RATES, WEEKS)
    share = np.tile(shares, WEEKS)
    n = np.full(len(rates), per_stratum)
    nc = rng.binomial(n, share, (seeds, len(n)))
    nt = n - nc
    xc = rng.binomial(nc, rates)
    xt = rng.binomial(nt, rates * (1 + effect))
    return xt, nt, xc, nc, float(np.mean(rates * effect))


def pooled(xt, nt, xc, nc, level):
    """The comparison pooled over strata (what the measure did before it was stratified)."""
    return difference(xt.sum(-1), nt.sum(-1), xc.sum(-1), nc.sum(-1), level)


@pytest.mark.parametrize(
    ("n_listed", "n_control", "p_control", "effect"),
    [
        (1800, 200, 0.30, -0.05),
        (900, 100, 0.20, -0.08),
        (5000, 500, 0.10, -0.02),
        (300, 300, 0.4, 0),
    ],
)
def test_the_90_percent_interval_covers_the_planted_effect_in_about_90_percent(
    n_listed, n_control, p_control, effect
):
    xt, xc = simulate(SEEDS, n_listed, n_control, p_control, effect, seed=n_listed)
    _, lo, hi = stratified_difference(
        xt[:, None],
        np.full((SEEDS, 1), n_listed),
        xc[:, None],
        np.full((SEEDS, 1), n_control),
        CONFIG.confidence,
    )
    coverage = np.mean((lo <= effect) & (effect <= hi))
    print(f"coverage {coverage:.3f} (n {n_listed}/{n_control}, p {p_control}, effect {effect})")
    # 200 seeds: the standard error of a 90 % coverage is 2.1 points
    assert 0.84 <= coverage <= 0.96


@pytest.mark.parametrize(("per_stratum", "effect"), [(30, 0.0), (60, -0.25), (150, -0.15)])
def test_over_strata_with_unequal_control_shares_the_interval_covers_the_truth(per_stratum, effect):
    xt, nt, xc, nc, truth = simulate_strata(SEEDS, per_stratum, effect, seed=per_stratum)
    _, lo, hi = stratified_difference(xt, nt, xc, nc, CONFIG.confidence)
    kept = ~np.isnan(lo)
    coverage = np.mean((lo[kept] <= truth) & (truth <= hi[kept]))
    _, plo, phi = pooled(xt, nt, xc, nc, CONFIG.confidence)
    pooled_coverage = np.mean((plo <= truth) & (truth <= phi))
    print(f"coverage {coverage:.3f}, pooled {pooled_coverage:.3f} ({per_stratum}, {effect})")
    assert kept.mean() > 0.99
    assert 0.84 <= coverage <= 0.96
    assert pooled_coverage < 0.6  # the pooled interval is centred on the risk mix, not the truth


@pytest.mark.parametrize(
    ("n_listed", "n_control", "p"), [(1800, 200, 0.3), (450, 50, 0.2), (3000, 3000, 0.1)]
)
def test_with_no_effect_an_effect_is_claimed_in_at_most_about_5_percent(n_listed, n_control, p):
    xt, xc = simulate(SEEDS, n_listed, n_control, p, 0.0, seed=n_control)
    _, clo, chi = stratified_difference(
        xt[:, None],
        np.full((SEEDS, 1), n_listed),
        xc[:, None],
        np.full((SEEDS, 1), n_control),
        1 - CONFIG.claim_alpha,
    )
    claimed = np.mean((clo > 0) | (chi < 0))
    verdicts = [
        compare(a, n_listed, b, n_control, 0, outcome=DROPOUT, band=OVERALL, config=CONFIG).verdict
        for a, b in zip(xt[:50], xc[:50], strict=True)
    ]
    print(f"claimed {claimed:.3f} (n {n_listed}/{n_control}, p {p})")
    assert claimed <= 0.08
    assert sum(v in CLAIMS.values() for v in verdicts) / 50 <= 0.12


@pytest.mark.parametrize(
    ("per_stratum", "shares"), [(10, [0.3, 0.3, 0.3]), (40, BAND_SHARES), (150, BAND_SHARES)]
)
def test_over_strata_with_no_effect_an_effect_is_claimed_in_at_most_about_5_percent(
    per_stratum, shares
):
    """Strata of 10 (one control in three, rates of 4 %: most controls see no dropout) to 150,
    the control share equal or unequal: the stratified verdict claims <= ~5 %, the pooled one
    claims most of the time where the shares differ."""
    xt, nt, xc, nc, _ = simulate_strata(
        SEEDS, per_stratum, 0.0, seed=7 + per_stratum, shares=shares
    )
    _, clo, chi = stratified_difference(xt, nt, xc, nc, 1 - CONFIG.claim_alpha)
    claimed = np.nanmean((clo > 0) | (chi < 0))
    _, plo, phi = pooled(xt, nt, xc, nc, 1 - CONFIG.claim_alpha)
    pooled_claimed = np.mean((plo > 0) | (phi < 0))
    verdicts = [
        compare(*(a[k] for a in (xt, nt, xc, nc)), 0, outcome=DROPOUT, band=OVERALL, config=CONFIG)
        for k in range(50)
    ]
    print(f"claimed {claimed:.3f}, pooled {pooled_claimed:.3f} ({per_stratum}, {shares})")
    assert claimed <= 0.08
    assert sum(c.verdict in CLAIMS.values() for c in verdicts) / 50 <= 0.12
    if shares != [0.3, 0.3, 0.3] and per_stratum >= 40:
        assert pooled_claimed > 0.5


def test_one_stratum_is_the_unstratified_comparison_and_an_empty_arm_drops_its_stratum():
    one = stratified_difference([30], [100], [20], [50], 0.9)
    assert float(one[0]) == pytest.approx(float(difference(30, 100, 20, 50, 0.9)[0]))
    c = compare(
        np.array([30, 5, 2]),
        np.array([100, 20, 4]),
        np.array([20, 0, 0]),
        np.array([50, 0, 3]),
        np.array([50, 10, 4]),
        outcome=DROPOUT,
        band=OVERALL,
        config=CONFIG,
    )
    assert (c.strata, c.strata_dropped, c.dropped) == (2, 1, 20)
    assert (c.n_listed, c.n_control) == (104, 53)
    w = np.array([150, 7]) / 157
    assert c.effect == pytest.approx(w @ [0.3 - 0.4, 0.5 - 0.0])
    assert c.rate_listed - c.rate_control == pytest.approx(c.effect)
    assert c.contact_rate == pytest.approx(w @ [0.5, 1.0])
    assert np.isnan(stratified_difference([1], [5], [0], [0], 0.9)[1])


def test_the_measure_compares_within_strata_so_a_risk_mix_makes_no_effect():
    """No effect in either band, but control is 50 % of the high band and 6 % of the low one:
    pooled, control drops out at 43 % and listed at 20 %; within the bands, both at the band's
    rate: the effect is 0, overall and per band."""

    def rows(band, arm, n, dropped, week):
        return pd.DataFrame(
            {
                "arm": [arm] * n,
                "risk_band": [band] * n,
                "week": [week] * n,
                "curator_id": ["k1"] * n,
                "dropout": [True] * dropped + [False] * (n - dropped),
                "dropout_matured": [True] * n,
                "enrolled_at_end": [False] * dropped + [True] * (n - dropped),
                "end_matured": [True] * n,
                "contacted": [arm == "listed"] * n,
            }
        )

    table = pd.concat(
        [
            rows(">=0.60", "listed", 50, 25, "2026-01-05"),
            rows(">=0.60", "control", 50, 25, "2026-01-05"),
            rows("<0.30", "listed", 150, 15, "2026-01-12"),
            rows("<0.30", "control", 10, 1, "2026-01-12"),
        ],
        ignore_index=True,
    )
    result = {(c.outcome, c.band): c for c in measure_effect(table, CONFIG)}
    overall = result[(DROPOUT, OVERALL)]
    assert overall.effect == pytest.approx(0.0, abs=1e-12)
    assert overall.low < 0 < overall.high and overall.strata == 2
    assert overall.rate_listed == pytest.approx(overall.rate_control)
    assert result[(DROPOUT, ">=0.60")].effect == pytest.approx(0.0, abs=1e-12)
    assert result[(ENROLLED_AT_END, OVERALL)].effect == pytest.approx(0.0, abs=1e-12)
    pooled_config = ExperimentConfig(strata=[])
    naive = {(c.outcome, c.band): c for c in measure_effect(table, pooled_config)}
    assert naive[(DROPOUT, OVERALL)].effect == pytest.approx(40 / 200 - 26 / 60)
    assert naive[(DROPOUT, OVERALL)].high < 0  # the pooled "the lists lowered dropout"


def test_a_verdict_never_claims_what_its_interval_does_not_support():
    rng = np.random.default_rng(5)
    for _ in range(300):
        nt, nc = int(rng.integers(0, 400)), int(rng.integers(0, 80))
        xt, xc = int(rng.binomial(nt, 0.3)), int(rng.binomial(nc, rng.uniform(0.1, 0.6)))
        c = compare(xt, nt, xc, nc, nt // 2, outcome=DROPOUT, band=OVERALL, config=CONFIG)
        if c.verdict in CLAIMS.values():
            assert c.low is not None and (c.low > 0 or c.high < 0)
            assert min(nt, nc) >= CONFIG.min_per_arm
            assert (c.verdict == CLAIMS[(DROPOUT, -1)]) == (c.high < 0)


def test_small_arms_are_not_enough_evidence_and_a_powered_null_is_no_evidence():
    small = compare(3, 20, 6, 10, 10, outcome=DROPOUT, band=OVERALL, config=CONFIG)
    assert small.verdict == NOT_ENOUGH and small.mde > CONFIG.plan_effect
    powered = compare(
        3000, 10_000, 3000, 10_000, 5000, outcome=DROPOUT, band=OVERALL, config=CONFIG
    )
    assert powered.verdict == NO_EVIDENCE and powered.mde < CONFIG.plan_effect
    assert powered.low < 0 < powered.high
    lowered = compare(
        2500, 10_000, 3000, 10_000, 5000, outcome=DROPOUT, band=OVERALL, config=CONFIG
    )
    assert lowered.verdict == CLAIMS[(DROPOUT, -1)]


def test_effect_per_contacted_student_is_itt_over_the_contact_rate():
    c = compare(2500, 10_000, 3000, 10_000, 4000, outcome=DROPOUT, band=OVERALL, config=CONFIG)
    assert c.contact_rate == pytest.approx(0.4)
    assert c.per_contacted == pytest.approx(c.effect / 0.4)
    assert c.per_contacted_low == pytest.approx(c.low / 0.4)
    none = compare(2500, 10_000, 3000, 10_000, 0, outcome=DROPOUT, band=OVERALL, config=CONFIG)
    assert none.per_contacted is None


def test_minimum_detectable_effect_shrinks_with_the_sample():
    small = minimum_detectable_effect(100, 100, 0.3, 0.05, 0.8)
    large = minimum_detectable_effect(1250, 1250, 0.3, 0.05, 0.8)
    assert small > large
    assert large == pytest.approx(0.05, abs=0.003)  # 1,250 per arm detects 5 points at 30 %
    assert minimum_detectable_effect(0, 10, 0.3, 0.05, 0.8) == np.inf


def test_a_five_point_drop_from_30_percent_needs_about_1250_per_arm():
    assert 1200 <= enrolments_needed(0.30, 0.05, 0.05, 0.80, 1.0) <= 1300
    p = plan(new_per_week=300, config=CONFIG, horizon_days=28)
    assert 1200 <= p.per_arm_equal <= 1300
    assert p.control_needed < p.per_arm_equal < p.listed_needed  # 1:9 arms need fewer controls
    assert p.weeks_to_draw == int(np.ceil(p.control_needed / 30))
    assert p.weeks_total == p.weeks_to_draw + 4
    assert "1,2" in p.text
    off = plan(new_per_week=300, config=ExperimentConfig(control_share=0), horizon_days=28)
    assert off.weeks_to_draw is None and "never" in off.text


T0 = datetime(2026, 1, 5, tzinfo=UTC)


def test_outcomes_from_unenrolments_course_ends_and_contacts():
    arms = pd.DataFrame(
        {
            "student_id": ["a", "b", "c", "d"],
            "course_id": ["c1"] * 4,
            "arm": ["listed", "listed", "control", "control"],
            "risk_band": ["x"] * 4,
            "curator_id": ["k1"] * 4,
            "assigned_at": [T0] * 4,
            "release_at": [T0 + timedelta(weeks=4)] * 4,
        }
    )
    enrollments = pd.DataFrame(
        {
            "student_id": ["a", "b", "c", "d"],
            "course_id": ["c1"] * 4,
            "unenrolled_at": [T0 + timedelta(days=3), None, T0 + timedelta(days=40), None],
        }
    )
    courses = pd.DataFrame({"course_id": ["c1"], "end_at": [T0 + timedelta(days=60)]})
    contacts = pd.DataFrame(
        {
            "student_id": ["b", "b", "c"],
            "course_id": ["c1"] * 3,
            "ts": [T0 + timedelta(days=1), T0 + timedelta(days=50), T0 + timedelta(days=2)],
        }
    )
    early = outcomes(arms, enrollments, courses, contacts, T0 + timedelta(days=10), 28)
    assert early["dropout"].tolist() == [True, False, False, False]
    assert early["dropout_matured"].tolist() == [True, False, False, False]
    assert early["contacted"].tolist() == [False, True, True, False]
    late = outcomes(arms, enrollments, courses, None, T0 + timedelta(days=70), 28)
    assert late["dropout_matured"].all() and late["end_matured"].all()
    assert late["enrolled_at_end"].tolist() == [False, True, False, True]
    result = measure_effect(late, CONFIG)
    overall = {c.outcome: c for c in result if c.band == OVERALL}
    assert overall[DROPOUT].n_listed == 2 and overall[DROPOUT].rate_listed == 0.5
    assert overall[ENROLLED_AT_END].rate_control == 0.5
    assert all(c.verdict == NOT_ENOUGH for c in result)


def test_nothing_at_or_after_as_of_is_known_yet():
    """A source holding later rows (a replayed or simulated term): an unenrolment or a contact
    after the as-of time does not count yet."""
    arms = pd.DataFrame(
        {
            "student_id": ["a", "b"],
            "course_id": ["c1"] * 2,
            "arm": ["listed", "control"],
            "risk_band": ["x"] * 2,
            "curator_id": ["k1"] * 2,
            "assigned_at": [T0] * 2,
            "release_at": [T0 + timedelta(weeks=4)] * 2,
        }
    )
    enrollments = pd.DataFrame(
        {
            "student_id": ["a", "b"],
            "course_id": ["c1"] * 2,
            "unenrolled_at": [T0 + timedelta(days=12), T0 + timedelta(days=3)],
        }
    )
    courses = pd.DataFrame({"course_id": ["c1"], "end_at": [T0 + timedelta(days=60)]})
    contacts = pd.DataFrame(
        {"student_id": ["a"], "course_id": ["c1"], "ts": [T0 + timedelta(days=11)]}
    )
    at_10 = outcomes(arms, enrollments, courses, contacts, T0 + timedelta(days=10), 28)
    assert at_10["dropout"].tolist() == [False, True]
    assert at_10["dropout_matured"].tolist() == [False, True]
    assert at_10["contacted"].tolist() == [False, False]
    at_20 = outcomes(arms, enrollments, courses, contacts, T0 + timedelta(days=20), 28)
    assert at_20["dropout"].tolist() == [True, True]
    assert at_20["contacted"].tolist() == [True, False]


@pytest.mark.parametrize(
    ("language", "words"), [("en", "not enough evidence yet"), ("ru", "данных пока недостаточно")]
)
def test_the_effect_section_speaks_the_reports_language(language, words):
    from dataclasses import asdict

    from pipelines.texts import load_texts
    from webapp.report import effect_view

    texts = load_texts(language)
    comparison = compare(3, 40, 2, 10, 20, outcome=DROPOUT, band=OVERALL, config=CONFIG)
    result = {
        "as_of": "2026-03-02T00:00:00+00:00",
        "drawn": 50,
        "control": 10,
        "comparisons": [asdict(comparison)],
        "plan": asdict(plan(new_per_week=30, config=CONFIG, horizon_days=28)),
    }
    view = effect_view(result, texts.effect, 0.9, texts.decimal_separator)
    cells = [c["value"] for c in view["table"]["rows"][0]]
    assert cells[-1] == words
    assert cells[0] == texts.effect["outcomes"][DROPOUT]
    assert "50" in view["arms"] and "10" in view["arms"] and "2026-03-02" in view["arms"]
    assert "{" not in view["plan"] and "90" in view["table"]["header"][4]
    if language == "ru":
        assert "," in cells[2]  # 7,5 %: the Russian decimal mark
