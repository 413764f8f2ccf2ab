"""The hold-out draw: share, blocks, stability, exemptions, and control students off the lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from configs.schema import ExperimentConfig, ScoringConfig
from interventions.holdout import (
    ARM_COLUMNS,
    ARM_CONTROL,
    HOLD_CONTROL,
    draw_arms,
    holdout_ranking,
    risk_band,
)
from interventions.ranking import rank_for_curators

T = datetime(2026, 3, 2, tzinfo=UTC)
SCORING = ScoringConfig(capacity=5)


def ranking(n_curators: int = 4, per_curator: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_curators * per_curator
    table = pd.DataFrame(
        {
            "student_id": [f"s{i:04d}" for i in range(n)],
            "course_id": pd.Series(["c1"] * n, dtype="str"),
            "curator_id": [f"k{i % n_curators}" for i in range(n)],
            "risk": rng.random(n),
            "change": np.full(n, np.nan),
            "triggered": rng.random(n) < 0.05,
            "last_contact_at": pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]"),
        }
    )
    table = pd.concat([table, rank_for_curators(table, T, SCORING)], axis=1)
    table["explained"] = table["listed"]
    return table


def candidates(n: int, curators: int = 5, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "student_id": [f"s{i}" for i in range(n)],
            "course_id": ["c"] * n,
            "curator_id": [f"k{i % curators}" for i in range(n)],
            "risk": rng.random(n),
        }
    )


def test_same_seed_and_students_give_the_same_arms_in_any_row_order():
    config = ExperimentConfig(control_share=0.2)
    c = candidates(500)
    first = draw_arms(c, T, config).set_index(["student_id", "course_id"])["arm"]
    again = draw_arms(c.sample(frac=1.0, random_state=3), T, config)
    again = again.set_index(["student_id", "course_id"])["arm"]
    assert first.sort_index().equals(again.sort_index())
    other_seed = draw_arms(c, T, ExperimentConfig(control_share=0.2, seed=99))
    assert not other_seed["arm"].equals(first.reset_index(drop=True))


@pytest.mark.parametrize("share", [0.05, 0.10, 0.3])
def test_the_share_drawn_is_the_configured_one_within_every_block(share):
    config = ExperimentConfig(control_share=share)
    arms = draw_arms(candidates(20_000, curators=20), T, config)
    control = arms["arm"] == ARM_CONTROL
    assert abs(control.mean() - share) < 0.01
    per_block = control.groupby([arms["curator_id"], arms["risk_band"]]).agg(["mean", "size"])
    # blocks of ~330: floor(share x n) or one more, never more off than that
    assert ((per_block["mean"] * per_block["size"] - share * per_block["size"]).abs() < 1).all()


def test_small_blocks_still_draw_at_the_share_on_average():
    """Blocks of 3 at 10 %: floor gives 0, so the extra draw carries the whole share."""
    config = ExperimentConfig(control_share=0.10)
    shares = [
        (
            draw_arms(candidates(3, curators=1, seed=s), T + timedelta(weeks=s), config)["arm"]
            == ARM_CONTROL
        ).mean()
        for s in range(600)
    ]
    assert 0.07 < np.mean(shares) < 0.13


def test_risk_bands_follow_the_cut_points():
    bands = risk_band(np.array([0.0, 0.29, 0.3, 0.59, 0.6, 1.0]), [0.3, 0.6])
    assert bands.tolist() == ["<0.30", "<0.30", "0.30-0.60", "0.30-0.60", ">=0.60", ">=0.60"]


def listed_per_curator(r: pd.DataFrame) -> pd.Series:
    return r[r["listed"]].groupby("curator_id").size()


def test_control_students_are_on_no_list_and_their_slots_are_filled():
    base = ranking()
    config = ExperimentConfig(control_share=0.3)
    no_arms = pd.DataFrame(columns=ARM_COLUMNS)
    held, arms = holdout_ranking(base, no_arms, np.zeros(len(base), bool), T, config, SCORING)
    control_keys = set(arms.loc[arms["arm"] == ARM_CONTROL, "student_id"])
    assert control_keys, "a 30 % share over 20 listed students draws someone"
    control_rows = held["student_id"].isin(control_keys)
    assert not held.loc[control_rows, "listed"].any()
    assert (held.loc[control_rows, "hold_back"] == HOLD_CONTROL).all()
    assert held.loc[control_rows, "rank"].isna().all()
    assert not held.loc[control_rows, "explained"].any()
    # capacity filled by the next students; ranks 1..capacity per curator
    assert (listed_per_curator(held) == SCORING.capacity).all()
    for _, g in held[held["listed"]].groupby("curator_id"):
        assert sorted(g["rank"].astype(int)) == list(range(1, SCORING.capacity + 1))
    # every listed student has an arm (the fill-ins were drawn too), and no one twice
    assert set(held.loc[held["listed"], "student_id"]) <= set(arms["student_id"])
    assert not arms.duplicated(["student_id", "course_id"]).any()


def test_rescoring_with_the_stored_arms_changes_no_arm_and_no_list():
    base = ranking()
    config = ExperimentConfig(control_share=0.3)
    exempt = np.zeros(len(base), bool)
    first, arms = holdout_ranking(
        base, pd.DataFrame(columns=ARM_COLUMNS), exempt, T, config, SCORING
    )
    again, new = holdout_ranking(base, arms, exempt, T, config, SCORING)
    assert new.empty
    pd.testing.assert_frame_equal(first, again)


def test_control_students_return_after_their_weeks_out():
    base = ranking()
    config = ExperimentConfig(control_share=0.3, weeks_out=2)
    exempt = np.zeros(len(base), bool)
    _, arms = holdout_ranking(base, pd.DataFrame(columns=ARM_COLUMNS), exempt, T, config, SCORING)
    control = set(arms.loc[arms["arm"] == ARM_CONTROL, "student_id"])
    still_out, _ = holdout_ranking(base, arms, exempt, T + timedelta(weeks=1), config, SCORING)
    assert not still_out.loc[still_out["student_id"].isin(control), "listed"].any()
    back, new = holdout_ranking(base, arms, exempt, T + timedelta(weeks=2), config, SCORING)
    assert back.loc[back["student_id"].isin(control), "listed"].any()
    assert (back["hold_back"] != HOLD_CONTROL).all()
    assert not set(new["student_id"]) & set(arms["student_id"])  # drawn once per enrolment


def test_a_technical_support_case_is_never_held_out():
    base = ranking()
    config = ExperimentConfig(control_share=0.5)
    exempt = base["listed"].to_numpy(dtype=bool)  # every would-be-listed student is technical
    held, arms = holdout_ranking(
        base, pd.DataFrame(columns=ARM_COLUMNS), exempt, T, config, SCORING
    )
    assert held.loc[exempt, "listed"].all()
    assert not (held["hold_back"] == HOLD_CONTROL)[exempt].any()
    assert not set(arms["student_id"]) & set(base.loc[exempt, "student_id"])
    # a stored control arm does not hold out a student who is now a technical case
    stored = arms.copy()
    stored = pd.concat(
        [
            stored,
            draw_arms(
                base.loc[exempt, ["student_id", "course_id", "curator_id", "risk"]], T, config
            ).assign(arm=ARM_CONTROL),
        ],
        ignore_index=True,
    )
    held2, _ = holdout_ranking(base, stored, exempt, T, config, SCORING)
    assert held2.loc[exempt, "listed"].all()


def test_control_share_zero_draws_nobody_and_changes_nothing():
    base = ranking()
    config = ExperimentConfig(control_share=0)
    held, arms = holdout_ranking(
        base, pd.DataFrame(columns=ARM_COLUMNS), np.zeros(len(base), bool), T, config, SCORING
    )
    assert arms.empty
    pd.testing.assert_frame_equal(held, base)
    assert (draw_arms(candidates(100), T, config)["arm"] != ARM_CONTROL).all()


def test_risk_bands_must_ascend():
    with pytest.raises(ValueError, match="risk_bands"):
        ExperimentConfig(risk_bands=[0.6, 0.3])


def test_fill_ins_are_drawn_at_the_share_too():
    """Drawing the fill-ins in rounds must not chain one block's coin across rounds (that sent
    whole runs of fill-ins to control: 44 % instead of 20 %)."""
    config = ExperimentConfig(control_share=0.2)
    shares = []
    for seed in range(4):
        base = ranking(n_curators=40, per_curator=100, seed=seed)
        _, arms = holdout_ranking(
            base, pd.DataFrame(columns=ARM_COLUMNS), np.zeros(len(base), bool), T, config, SCORING
        )
        shares.append((arms["arm"] == ARM_CONTROL).mean())
    assert 0.17 < np.mean(shares) < 0.23


def test_freed_slots_are_filled_within_each_section():
    """Early warning and win-back are ranked apart: a control student's slot goes to the next
    student of the same section, and ranks restart at 1 in each."""
    from interventions.winback import EARLY_WARNING, WIN_BACK

    scoring = ScoringConfig(capacity=5, winback_capacity=3)
    base = ranking(n_curators=3, per_curator=60, seed=4).drop(
        columns=["in_cooldown", "cooldown_lifted", "eligible", "listed", "rank", "hold_back"]
        + ["curator_order", "explained"]
    )
    base["section"] = np.where(np.arange(len(base)) % 3 == 0, WIN_BACK, EARLY_WARNING)
    base = pd.concat([base, rank_for_curators(base, T, scoring)], axis=1)
    base["explained"] = base["listed"]
    held, arms = holdout_ranking(
        base,
        pd.DataFrame(columns=ARM_COLUMNS),
        np.zeros(len(base), bool),
        T,
        ExperimentConfig(control_share=0.3),
        scoring,
    )
    assert (arms["arm"] == ARM_CONTROL).any()
    listed = held[held["listed"]]
    sizes = listed.groupby(["curator_id", "section"]).size()
    assert (sizes.xs(EARLY_WARNING, level="section") == 5).all()
    assert (sizes.xs(WIN_BACK, level="section") == 3).all()
    for _, g in listed.groupby(["curator_id", "section"]):
        assert sorted(g["rank"].astype(int)) == list(range(1, len(g) + 1))
