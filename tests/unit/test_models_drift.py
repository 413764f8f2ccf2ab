"""The drift guard on tiny synthetic arrays: same data -> no drift, shifted -> drift, a missing
reference, categorical features, missing values, small samples, course-stage matching."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from models.drift import (
    DRIFT_COLUMNS,
    SCORE,
    bucket_count,
    build_drift_reference,
    check_drift,
    drift_features,
    expected_shares,
    frame_buckets,
    noise_limit,
)
from models.reference import summarise_categorical, summarise_numeric

N_TRAIN = 4000


@pytest.fixture(scope="module")
def config():
    return load_config()


def numeric_reference(train: dict[str, np.ndarray], scores: np.ndarray, bins: int = 10) -> dict:
    """A pooled reference as `models.train.build_reference` makes it (with training row counts)."""
    features = {name: summarise_numeric(values, bins) for name, values in train.items()}
    for entry in features.values():
        entry["rows"] = N_TRAIN
    score = summarise_numeric(scores, bins)
    score["rows"] = len(scores)
    return {"bins": bins, "features": features, "score": score}


@pytest.fixture(scope="module")
def training():
    rng = np.random.default_rng(0)
    train = {
        "events_7d": rng.poisson(20, N_TRAIN).astype(float),
        "score_mean": rng.normal(70, 10, N_TRAIN),
    }
    scores = rng.beta(1, 8, N_TRAIN)
    return train, scores, numeric_reference(train, scores)


def week(seed: int, n: int, events_scale: float = 1.0, score_shift: float = 0.0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "events_7d": rng.poisson(20 * events_scale, n).astype(float),
            "score_mean": rng.normal(70, 10, n),
        }
    )
    return frame, np.clip(rng.beta(1, 8, n) + score_shift, 0, 1)


@pytest.mark.parametrize("n", [300, 1000, 3000])
def test_a_week_like_training_does_not_drift(training, config, n):
    _, _, reference = training
    frame, scores = week(seed=n, n=n)
    check = check_drift(reference, frame, scores, config.drift, seed=1)
    assert list(check.table.columns) == DRIFT_COLUMNS
    assert list(check.table["name"]) == ["events_7d", "score_mean", SCORE]
    assert list(check.table["kind"]) == ["feature", "feature", "score"]
    assert check.count == 0 and not check.table["drifted"].any()
    assert (check.table["psi"] < 0.1).all()
    assert check.has_reference and not check.stage_matched


@pytest.mark.parametrize(
    ("events_scale", "score_shift", "drifted"),
    [
        (0.3, 0.0, ["events_7d"]),  # events thinned: a broken activity feed
        (1.0, 0.3, [SCORE]),  # every risk up by 0.3
        (0.3, 0.3, ["events_7d", SCORE]),
    ],
)
def test_a_shifted_week_drifts_above_the_threshold(
    training, config, events_scale, score_shift, drifted
):
    _, _, reference = training
    frame, scores = week(seed=5, n=500, events_scale=events_scale, score_shift=score_shift)
    check = check_drift(reference, frame, scores, config.drift, seed=1)
    assert list(check.drifted["name"]) == drifted
    assert (check.drifted["psi"] > config.drift.psi_threshold).all()
    assert check.count == len(drifted)
    assert check.max_psi == pytest.approx(check.table["psi"].max())


@pytest.mark.parametrize("reference", [None, {}, {"features": {}, "score": {}}])
def test_without_a_reference_nothing_is_checked(config, reference):
    frame, scores = week(seed=1, n=50)
    check = check_drift(reference, frame, scores, config.drift)
    assert check.table.empty and list(check.table.columns) == DRIFT_COLUMNS
    assert not check.has_reference and check.count == 0 and np.isnan(check.max_psi)
    assert check.summary()["has_reference"] is False


def test_categorical_feature_same_and_unseen_categories(config):
    rng = np.random.default_rng(3)
    plans = np.array(["basic", "pro", "team"])
    train = rng.choice(plans, N_TRAIN, p=[0.6, 0.3, 0.1])
    reference = {"features": {"plan": summarise_categorical(train)}}
    same = pd.DataFrame({"plan": pd.Categorical(rng.choice(plans, 800, p=[0.6, 0.3, 0.1]))})
    renamed = pd.DataFrame({"plan": rng.choice(["BASIC", "PRO"], 800)})  # an export changed case
    checked = check_drift(reference, same, np.zeros(800), config.drift)
    assert checked.count == 0 and checked.table["psi"].iloc[0] < 0.02
    shifted = check_drift(reference, renamed, np.zeros(800), config.drift)
    assert list(shifted.drifted["name"]) == ["plan"]
    assert list(shifted.table["name"]) == ["plan"]  # no score entry in this reference: no row


def test_missing_values_count_as_their_own_bin(config):
    rng = np.random.default_rng(4)
    values = rng.normal(0, 1, N_TRAIN)
    values[rng.random(N_TRAIN) < 0.3] = np.nan  # 30 % never submitted, say
    reference = {"features": {"x": summarise_numeric(values, 10)}}
    like = rng.normal(0, 1, 1000)
    like[rng.random(1000) < 0.3] = np.nan
    all_missing = np.full(1000, np.nan)  # the column arrived empty
    zeros = np.zeros(1000)
    assert check_drift(reference, pd.DataFrame({"x": like}), zeros, config.drift).count == 0
    empty = check_drift(reference, pd.DataFrame({"x": all_missing}), zeros, config.drift)
    assert empty.count == 1 and empty.table["psi"].iloc[0] > 1.0


def test_nan_shares_in_a_reference_are_not_checked_not_flagged(config):
    entry = summarise_numeric(np.arange(100.0), 4)
    entry["shares"][1] = float("nan")  # a damaged reference
    frame = pd.DataFrame({"x": np.arange(100.0)})
    check = check_drift({"features": {"x": entry}}, frame, np.zeros(100), config.drift)
    assert np.isnan(check.table["psi"].iloc[0]) and check.count == 0
    assert json.dumps(check.summary())  # NaN becomes null: the summary stays valid JSON


def test_skip_features_and_top_features(training, config):
    _, _, reference = training
    frame, scores = week(seed=2, n=500)
    skip = config.drift.model_copy(update={"skip_features": ["events_*"]})
    assert list(check_drift(reference, frame, scores, skip).table["name"]) == ["score_mean", SCORE]
    top1 = config.drift.model_copy(update={"top_features": 1})
    assert list(check_drift(reference, frame, scores, top1).table["name"]) == ["events_7d", SCORE]


def test_errors_name_the_problem(training, config):
    _, _, reference = training
    frame, scores = week(seed=2, n=100)
    with pytest.raises(ValueError, match="score_mean"):
        check_drift(reference, frame.drop(columns="score_mean"), scores, config.drift)
    with pytest.raises(ValueError, match="99 scores for 100 rows"):
        check_drift(reference, frame, scores[:99], config.drift)


def test_no_rows_gives_no_psi_and_no_drift(training, config):
    _, _, reference = training
    frame, scores = week(seed=2, n=0)
    check = check_drift(reference, frame, scores, config.drift)
    assert len(check.table) == 3 and check.table["psi"].isna().all() and check.count == 0


@pytest.mark.parametrize(("n", "above_threshold"), [(15, True), (40, True), (5000, False)])
def test_the_limit_rises_for_small_weeks(training, config, n, above_threshold):
    _, _, reference = training
    frame, scores = week(seed=n, n=n)
    check = check_drift(reference, frame, scores, config.drift, seed=1)
    limits = check.table["limit"]
    assert ((limits > config.drift.psi_threshold) == above_threshold).all()
    assert (limits >= config.drift.psi_threshold).all()


def test_small_weeks_like_training_rarely_drift(training, config):
    """Chance alone: 30 weeks of 40 students drawn from the training distribution."""
    _, _, reference = training
    flagged = 0
    for seed in range(30):
        frame, scores = week(seed=100 + seed, n=40)
        flagged += check_drift(reference, frame, scores, config.drift, seed=seed).count
    fixed = config.drift.model_copy(update={"noise_quantile": None})
    frame, scores = week(seed=100, n=40)
    assert flagged <= 2  # 90 rows checked, limit at the 99th percentile of chance
    assert (check_drift(reference, frame, scores, fixed).table["limit"] == 0.2).all()


def test_noise_limit_is_deterministic_and_shrinks_with_rows():
    entry = summarise_numeric(np.arange(1000.0), 10)
    entry["rows"] = 1000
    small = noise_limit(entry, None, 50, 1e-4, 0.99, 500, seed=3)
    assert small == noise_limit(entry, None, 50, 1e-4, 0.99, 500, seed=3)
    assert small > noise_limit(entry, None, 5000, 1e-4, 0.99, 500, seed=3) > 0
    assert np.isnan(noise_limit(entry, None, 0, 1e-4, 0.99, 500, seed=3))


# ------------------------------------------------------------------- course-stage matching


class StageModel:
    """The two things `build_drift_reference` asks of a model."""

    feature_types = {
        "events_total": "float",
        "course_elapsed_share": "float",
        "attr_region": "category",
        "attr_prior_courses": "float",
    }

    def feature_importance(self) -> pd.Series:
        names = ["course_elapsed_share", "attr_region", "events_total", "attr_prior_courses"]
        return pd.Series([4.0, 3.0, 2.0, 1.0], index=names)


def staged(seed: int, n: int, stages: tuple[float, float] = (0.0, 1.0), scale: float = 1.0):
    """Cumulative events grow with the course stage, as `events_total` does."""
    rng = np.random.default_rng(seed)
    stage = rng.uniform(*stages, n)
    return pd.DataFrame(
        {
            "course_elapsed_share": stage,
            "events_total": rng.poisson(5 + 200 * stage * scale).astype(float),
            "attr_region": rng.choice(["city", "town"], n),
            "attr_prior_courses": rng.poisson(1, n).astype(float),
        }
    )


@pytest.fixture(scope="module")
def quantile_config():
    """Stage buckets as quantiles of course_elapsed_share (`drift.stage_width_days: null`)."""
    return load_config(
        overrides={"drift": {"stage_feature": "course_elapsed_share", "stage_width_days": None}}
    )


@pytest.fixture(scope="module")
def stage_reference(quantile_config):
    train, validation = staged(0, N_TRAIN), staged(1, 2000)
    scores = 1 / (1 + np.exp(validation["events_total"] / 50))  # risk falls as work piles up
    return build_drift_reference(StageModel(), train, validation, scores, quantile_config)


def test_the_stage_matched_reference_leaves_out_calendar_and_categorical_attrs(
    stage_reference, quantile_config
):
    config = quantile_config
    assert list(stage_reference["features"]) == ["events_total", "attr_prior_courses"]
    assert stage_reference["stage"]["feature"] == "course_elapsed_share"
    assert len(stage_reference["stage"]["edges"]) == config.drift.stage_bins - 1
    entry = stage_reference["features"]["events_total"]
    assert len(entry["by_stage"]) == config.drift.stage_bins == len(entry["stage_rows"])
    # features: training and validation rows (the data of the training period)
    assert sum(entry["stage_rows"]) == N_TRAIN + 2000 and entry["rows"] == N_TRAIN + 2000
    assert all(sum(shares) == pytest.approx(1.0) for shares in entry["by_stage"])
    assert "city" not in json.dumps(stage_reference)  # no categorical attr_* value travels
    weights = np.r_[np.full(config.drift.stage_bins, 1 / config.drift.stage_bins), 0.0]
    assert sum(expected_shares(entry, weights)) == pytest.approx(1.0)


def test_a_week_at_one_course_stage_is_matched_to_that_stage(stage_reference, quantile_config):
    """All students early in their courses: pooled training flags it, stage matching does not,
    and a real shift at the same stage is still caught."""
    config = quantile_config
    early = staged(7, 400, stages=(0.0, 0.2))
    scores = 1 / (1 + np.exp(early["events_total"] / 50))
    pooled = {k: v for k, v in stage_reference.items() if k != "stage"}
    assert "events_total" in set(check_drift(pooled, early, scores, config.drift).drifted["name"])
    matched = check_drift(stage_reference, early, scores, config.drift)
    assert matched.stage_matched and matched.count == 0, matched.table
    thinned = staged(7, 400, stages=(0.0, 0.2), scale=0.3)
    assert "events_total" in set(
        check_drift(stage_reference, thinned, scores, config.drift).drifted["name"]
    )


@pytest.mark.parametrize(
    ("names", "types", "expected"),
    [
        (["a", "attr_region", "days_since_start", "b"], {"attr_region": "category"}, ["a", "b"]),
        (["attr_prior", "a"], {"attr_prior": "float"}, ["attr_prior", "a"]),
        (["events_7d_pct_in_run", "x", "y", "z"], {}, ["x", "y"]),
    ],
)
def test_drift_features(config, names, types, expected):
    cfg = config.drift.model_copy(update={"top_features": 2})
    assert drift_features(names, types, cfg) == expected


def test_stages_the_validation_rows_never_reached_take_the_training_scores(quantile_config):
    """A time split's validation rows are early in their courses; a late-stage week is then
    compared with the training rows' own scores of that stage, not flagged for being late."""

    def risk(frame):
        return 1 / (1 + np.exp(-(frame["course_elapsed_share"] * 4 - 2)))  # rises with stage

    config = quantile_config
    train, validation = staged(0, N_TRAIN), staged(1, 2000, stages=(0.0, 0.3))
    late = staged(9, 400, stages=(0.8, 1.0))
    without = build_drift_reference(StageModel(), train, validation, risk(validation), config)
    assert "score" in set(check_drift(without, late, risk(late), config.drift).drifted["name"])

    filled = build_drift_reference(
        StageModel(), train, validation, risk(validation), config, train_scores=risk(train)
    )
    last = config.drift.stage_bins - 1
    assert last in filled["score"]["in_sample_stages"]
    assert 0 not in filled["score"]["in_sample_stages"]  # enough validation rows there
    check = check_drift(filled, late, risk(late), config.drift)
    assert "score" not in set(check.drifted["name"]), check.table
    shifted = np.clip(risk(late) + 0.3, 0, 1)  # the same stage, riskier: still caught
    assert "score" in set(check_drift(filled, late, shifted, config.drift).drifted["name"])


# ------------------------------------------- weeks of course, whole course runs (issue 12)

WEEKS = 12
RUN_ROWS = 150


class RunModel:
    feature_types = {
        "events_total": "float",
        "score_mean": "float",
        "on_time_share": "float",
        "days_since_last_submission": "float",
        "days_since_start": "float",
    }

    def feature_importance(self) -> pd.Series:
        return pd.Series([5.0, 4.0, 3.0, 2.0, 1.0], index=list(self.feature_types))


def course_runs(
    seed: int,
    runs: int,
    weeks: range = range(WEEKS),
    clicks: float = 1.0,
    score_shift: float = 0.0,
    prefix: str = "R",
) -> pd.DataFrame:
    """Weekly snapshots of course runs, each run with its own character: click level, score
    level and deadline dates (every 3 weeks, days 3-6 of the week, per run). Deadlines passed
    set the few values on_time_share takes; days since the last submission follows the run's
    schedule."""
    rng = np.random.default_rng(seed)
    parts = []
    for r in range(runs):
        clicks_r = rng.lognormal(np.log(30), 0.3) * clicks
        score_r = rng.normal(68, 4) + score_shift
        offset = 3 + int(rng.integers(0, 4))
        ability = rng.normal(0, 1, RUN_ROWS)
        for w in weeks:
            day = 7 * (w + 1)
            due = max((day - offset) // 21 + 1, 0) if day > offset else 0
            on_time = rng.binomial(due, 1 / (1 + np.exp(-ability - 1))) if due else None
            since_deadline = (day - offset) % 21 if due else day
            parts.append(
                pd.DataFrame(
                    {
                        "course_id": f"{prefix}{r}",
                        "days_since_start": float(day),
                        "events_total": rng.poisson(clicks_r * (w + 1) * np.exp(0.3 * ability)),
                        "score_mean": np.where(
                            due > 0, rng.normal(score_r + 8 * ability, 6), np.nan
                        ),
                        "on_time_share": np.nan if on_time is None else on_time / max(due, 1),
                        "days_since_last_submission": since_deadline + rng.exponential(2, RUN_ROWS),
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True)
    frame["events_total"] = frame["events_total"].astype(float)
    return frame


def run_risk(frame: pd.DataFrame) -> np.ndarray:
    z = -2 - frame["events_total"] / 300 - (frame["score_mean"].fillna(68) - 68) / 20
    return 1 / (1 + np.exp(-z.to_numpy()))


@pytest.fixture(scope="module")
def run_reference(config):
    train, validation = course_runs(0, 10), course_runs(1, 5, prefix="V")
    return build_drift_reference(
        RunModel(), train, validation, run_risk(validation), config, train_scores=run_risk(train)
    )


def scoring_week(seed: int, week: int, runs: int = 4, **shift) -> pd.DataFrame:
    """A scoring week: a few new course runs, all at course week `week`."""
    return course_runs(seed, runs, weeks=range(week, week + 1), prefix=f"S{seed}-", **shift)


def test_the_reference_keeps_exact_course_weeks_and_runs_without_identifiers(run_reference):
    assert run_reference["stage"] == {
        "feature": "days_since_start",
        "width": 7,
        "buckets": WEEKS + 1,
    }
    entry = run_reference["features"]["on_time_share"]
    assert entry["stage_rows"][0] == 0 and entry["stage_rows"][1] == 15 * RUN_ROWS
    assert [len(runs) for runs in entry["stage_runs"][1:]] == [15] * WEEKS
    assert "R0" not in json.dumps(run_reference) and "V0" not in json.dumps(run_reference)
    assert entry["stage_runs"][3][0][0] == RUN_ROWS  # [rows, *shares] per run
    assert sum(entry["stage_runs"][3][0][1:]) == pytest.approx(1.0)
    assert run_reference["features"]["days_since_last_submission"]["centred"]


@pytest.mark.parametrize("week", [0, 2, 4, 7, 11])
def test_an_unchanged_week_of_new_runs_does_not_warn(run_reference, config, week):
    frame = scoring_week(100 + week, week)
    check = check_drift(run_reference, frame, run_risk(frame), config.drift, seed=week)
    assert check.stage_matched
    assert check.count == 0, check.table


@pytest.mark.parametrize("week", [0, 2, 4, 7, 11])
def test_a_planted_shift_clicks_halved_scores_minus_15_warns_in_every_week(
    run_reference, config, week
):
    frame = scoring_week(100 + week, week, clicks=0.5, score_shift=-15)
    check = check_drift(run_reference, frame, run_risk(frame), config.drift, seed=week)
    drifted = set(check.drifted["name"])
    assert "events_total" in drifted
    if frame["score_mean"].notna().any():  # scores exist once a deadline has passed
        assert "score_mean" in drifted


def test_without_exact_weeks_and_runs_an_unchanged_week_warns(run_reference, config):
    """What the guard did before: pooled, independent rows; the same unchanged week warns."""
    pooled = {k: v for k, v in run_reference.items() if k != "stage"}
    frame = scoring_week(104, 4)
    check = check_drift(pooled, frame, run_risk(frame), config.drift, seed=4)
    assert check.count > 0


def test_a_week_the_training_runs_never_reached_uses_the_pooled_shares(run_reference, config):
    frame = scoring_week(150, WEEKS + 5)  # course week 17: beyond every training run
    check = check_drift(run_reference, frame, run_risk(frame), config.drift, seed=1)
    assert check.stage_matched and len(check.table) == 5
    assert not check.table["psi"].isna().any()


def test_schedule_shift_of_a_run_does_not_warn_on_days_since_last_submission(run_reference, config):
    frame = scoring_week(105, 5)
    frame["days_since_last_submission"] += 6.0  # deadlines moved by 6 days this presentation
    check = check_drift(run_reference, frame, run_risk(frame), config.drift, seed=2)
    assert "days_since_last_submission" not in set(check.drifted["name"])


# ------------------------------------- the score near the course end (issue 12, item 4)

NIL = 1e-6  # the calibrator's clip: the risk of a student who cannot leave before the end


class EndModel:
    feature_types = {
        "events_total": "float",
        "days_since_start": "float",
        "course_length_days": "float",
    }

    def feature_importance(self) -> pd.Series:
        return pd.Series([3.0, 2.0, 1.0], index=list(self.feature_types))


def ending_runs(seed: int, runs: dict[str, tuple[int, range, int]], nil_step: float = 0.0):
    """Runs of different length (prefix -> (weeks long, course weeks snapshotted, runs));
    the risk is nil (the clip, a `nil_step` share one calibrator step above it) in a run's last
    4 weeks, where nobody can leave before the end, and beta-distributed before."""
    rng = np.random.default_rng(seed)
    parts = []
    for prefix, (length, weeks, count) in runs.items():
        for r in range(count):
            for w in weeks:
                day = 7.0 * w
                late = (7 * length - day) < 28
                risk = rng.beta(2, 30, RUN_ROWS)
                if late:
                    risk = np.where(rng.random(RUN_ROWS) < nil_step, 3e-4, NIL)
                parts.append(
                    pd.DataFrame(
                        {
                            "course_id": f"{prefix}{r}",
                            "days_since_start": day,
                            "course_length_days": 7.0 * length,
                            "events_total": rng.poisson(20 * (w + 1), RUN_ROWS).astype(float),
                            "risk": risk,
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True)


def end_reference(config, train: pd.DataFrame) -> dict:
    scores = train["risk"].to_numpy()  # the served model's own scores of its training rows
    return build_drift_reference(EndModel(), train, train, scores, config, train_scores=scores)


@pytest.fixture(scope="module")
def end_training():
    """Short (8-week) and long (12-week) runs, every course week of each."""
    return ending_runs(0, {"B": (8, range(9), 3), "J": (12, range(13), 9)})


@pytest.mark.parametrize(
    ("end_weeks", "warns"),
    [(None, True), (4, False)],  # weeks of course only: the short runs' ending looks like drift
)
@pytest.mark.parametrize("week", [6, 7, 8])
def test_the_last_weeks_of_a_short_run_are_compared_with_other_runs_last_weeks(
    config, end_training, end_weeks, warns, week
):
    """Course week 6-8 is the end of the short runs but not of the long ones: with strata by
    weeks to the end, new short runs ending there are compared with runs that were ending."""
    drift = config.drift.model_copy(update={"score_end_weeks": end_weeks})
    cfg = config.model_copy(update={"drift": drift})
    reference = end_reference(cfg, end_training)
    frame = ending_runs(50 + week, {"S": (8, range(week, week + 1), 4)})
    check = check_drift(reference, frame, frame["risk"].to_numpy(), drift, seed=week)
    assert ("score" in set(check.drifted["name"])) == warns, check.table
    if end_weeks is not None:
        stage = reference["score_stage"]
        assert stage["end_feature"] == "course_length_days" and stage["end_weeks"] == end_weeks
        riskier = np.clip(frame["risk"].to_numpy() + 0.3, 0, 1)  # a real shift: still caught
        shifted = check_drift(reference, frame, riskier, drift, seed=week)
        assert "score" in set(shifted.drifted["name"])


@pytest.mark.parametrize(("nil_risk", "warns"), [(None, True), (0.001, False)])
def test_nil_risks_are_one_bin(config, nil_risk, warns):
    """At the end of a run every risk is nil; a calibrator step above the clip (3e-4 instead
    of 1e-6) for more of the students is no change of the lists."""
    drift = config.drift.model_copy(update={"score_nil_risk": nil_risk})
    cfg = config.model_copy(update={"drift": drift})
    train = ending_runs(1, {"B": (8, range(9), 3), "J": (12, range(13), 9)}, nil_step=0.05)
    reference = end_reference(cfg, train)
    edges = reference["score"]["edges"]
    assert (min(edges) < 0.001) == (nil_risk is None)  # the clip is an edge of its own
    frame = ending_runs(60, {"S": (8, range(7, 8), 4)}, nil_step=0.4)
    check = check_drift(reference, frame, frame["risk"].to_numpy(), drift, seed=3)
    assert ("score" in set(check.drifted["name"])) == warns, check.table


@pytest.mark.parametrize(
    ("day", "length", "bucket"),
    [
        (0.0, 70.0, 0),  # 10 weeks to the end: week of course 0
        (56.0, 70.0, 8),  # 2 weeks to the end: not one of the last 2, week of course 8
        (63.0, 70.0, 11),  # 1 week to the end: buckets (10) + 1
        (70.0, 70.0, 10),  # the last day: buckets + 0
        (77.0, 70.0, -1),  # after the end and beyond the weeks of course: none
        (14.0, float("nan"), 2),  # no course length: week of course
    ],
)
def test_frame_buckets_weeks_to_the_end(day, length, bucket):
    stage = {"feature": "d", "width": 7, "buckets": 10, "end_feature": "L", "end_weeks": 2}
    frame = pd.DataFrame({"d": [day], "L": [length]})
    assert frame_buckets(stage, frame).tolist() == [bucket]
    assert bucket_count(stage) == 12
