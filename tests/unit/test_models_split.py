"""The time split: test rows never come before training rows; unlabelled rows never used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from models.frames import synthetic_feature_frame
from models.split import SplitError, split_by_time

HORIZON = 28


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_feature_frame(600, load_config(), seed=3)


def split_config(**changes):
    return load_config(overrides={"split": changes}).split


def check_partition(frame: pd.DataFrame, split) -> None:
    parts = np.vstack([split.train, split.validation, split.test])
    assert (parts.sum(axis=0) <= 1).all(), "a row is in two parts"
    used = parts.any(axis=0)
    assert frame.loc[used, "label"].notna().all(), "an unlabelled row was used"
    for part in (split.train, split.validation, split.test):
        assert part.any()


@pytest.mark.parametrize("test_share", [0.2, 0.3, 0.5])
def test_course_start_split_tests_the_latest_runs(frame, test_share):
    split = split_by_time(frame, split_config(test_share=test_share), HORIZON)
    check_partition(frame, split)
    starts = frame["course_start"]
    assert starts[split.test].min() >= starts[split.train].max()
    assert starts[split.test].min() >= starts[split.validation].max()
    # Validation is the latest part of the training period.
    assert starts[split.validation].min() >= starts[split.train].max()
    assert not set(frame.loc[split.test, "course_id"]) & set(frame.loc[split.train, "course_id"])


def test_course_start_split_with_test_from_date(frame):
    starts = frame["course_start"].drop_duplicates().sort_values().reset_index(drop=True)
    boundary = starts.iloc[len(starts) // 2]
    split = split_by_time(frame, split_config(test_from=boundary.isoformat()), HORIZON)
    assert (frame.loc[split.test, "course_start"] >= boundary).all()
    assert (frame.loc[split.train | split.validation, "course_start"] < boundary).all()
    assert split.summary["boundary"] == boundary.isoformat()


@pytest.mark.parametrize("embargo", [True, False])
def test_cutoff_split_orders_snapshot_dates(frame, embargo):
    split = split_by_time(frame, split_config(method="cutoff", embargo=embargo), HORIZON)
    check_partition(frame, split)
    as_of = frame["as_of"]
    assert as_of[split.test].min() >= as_of[split.train].max()
    assert as_of[split.test].min() >= as_of[split.validation].max()
    assert as_of[split.validation].min() >= as_of[split.train].max()
    if embargo:
        cutoff = pd.Timestamp(split.summary["boundary"])
        closes = as_of[split.train | split.validation] + pd.Timedelta(days=HORIZON)
        assert (closes <= cutoff).all(), "a training label window reaches into the test period"


def test_explicit_cutoff_is_respected(frame):
    dates = frame.loc[frame["label"].notna(), "as_of"].sort_values()
    cutoff = dates.iloc[int(len(dates) * 0.7)]
    split = split_by_time(frame, split_config(method="cutoff", cutoff=str(cutoff)), HORIZON)
    assert (frame.loc[split.test, "as_of"] >= cutoff).all()
    assert (frame.loc[split.train, "as_of"] < cutoff).all()


def test_unlabelled_rows_are_never_tested(frame):
    assert frame["label"].isna().any(), "the fixture should hold unlabelled rows"
    split = split_by_time(frame, split_config(), HORIZON)
    assert not (split.test & frame["label"].isna().to_numpy()).any()
    assert split.summary["unlabelled_rows"] == int(frame["label"].isna().sum())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"test_from": "2100-01-01"}, "nothing to test"),
        ({"test_from": "2000-01-01"}, "nothing to train on"),
    ],
)
def test_impossible_splits_are_clear_errors(frame, changes, message):
    with pytest.raises(SplitError, match=message):
        split_by_time(frame, split_config(**changes), HORIZON)


def test_too_few_course_runs(frame):
    one_run = frame[frame["course_id"] == frame["course_id"].iloc[0]]
    with pytest.raises(SplitError, match="at least 2 course runs"):
        split_by_time(one_run, split_config(), HORIZON)


def test_single_training_run_validates_on_its_latest_snapshots(frame):
    runs = frame[["course_id", "course_start"]].drop_duplicates().sort_values("course_start")
    first, last = runs["course_id"].iloc[0], runs["course_id"].iloc[-1]
    two = frame[frame["course_id"].isin([first, last])]
    split = split_by_time(two, split_config(test_share=0.5), HORIZON)
    check_partition(two, split)
    assert set(two.loc[split.train | split.validation, "course_id"]) == {first}
    assert set(two.loc[split.test, "course_id"]) == {last}
    as_of = two["as_of"]
    assert as_of[split.validation].min() >= as_of[split.train].max() + pd.Timedelta(days=HORIZON)


def test_no_labelled_rows(frame):
    unlabelled = frame.assign(label=np.nan)
    with pytest.raises(SplitError, match="no labelled snapshot"):
        split_by_time(unlabelled, split_config(), HORIZON)


def shared_start(frame: pd.DataFrame, n_late: int) -> pd.DataFrame:
    """The frame with its latest `n_late` runs moved to one start date (as OULAD's 2013J runs)."""
    runs = frame[["course_id", "course_start"]].drop_duplicates().sort_values("course_start")
    late = runs["course_id"].iloc[-n_late:]
    moved = frame.copy()
    shared = runs["course_start"].iloc[-n_late]
    shift = shared - moved["course_start"]
    is_late = moved["course_id"].isin(late)
    moved.loc[is_late, "course_start"] = shared
    moved.loc[is_late, "as_of"] = moved.loc[is_late, "as_of"] + shift[is_late]
    return moved


@pytest.mark.parametrize("test_share", [0.2, 0.3, 0.4])
def test_course_start_test_share_counts_snapshots(frame, test_share):
    split = split_by_time(frame, split_config(test_share=test_share), HORIZON)
    assert split.summary.method == "course_start"
    assert split.summary.test_share <= 0.5
    labelled = int(frame["label"].notna().sum())
    assert split.summary.test_share == pytest.approx(split.test.sum() / labelled)


def test_many_runs_sharing_the_latest_start_fall_back_to_a_date_cutoff(frame):
    moved = shared_start(frame, 6)  # 6 of 8 runs start together: most of the data
    split = split_by_time(moved, split_config(), HORIZON)
    check_partition(moved, split)
    summary = split.summary
    assert summary.method == "cutoff"
    assert "split.max_test_share" in summary.fallback_reason
    assert summary.test_share < 0.5
    as_of = moved["as_of"]
    assert as_of[split.test].min() >= as_of[split.train | split.validation].max()


def test_the_fallback_can_be_an_error_naming_the_setting(frame):
    moved = shared_start(frame, 6)
    with pytest.raises(SplitError, match="split.max_test_share"):
        split_by_time(moved, split_config(course_start_fallback="error"), HORIZON)


def test_an_explicit_test_from_is_kept_even_when_it_tests_most_runs(frame):
    starts = frame["course_start"].drop_duplicates().sort_values()
    boundary = starts.iloc[2]
    split = split_by_time(frame, split_config(test_from=boundary.isoformat()), HORIZON)
    assert split.summary.method == "course_start"
    assert (frame.loc[split.test, "course_start"] >= boundary).all()


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"test_from": "2100-01-01"}, "split.test_from"),
        ({"method": "cutoff", "cutoff": "2100-01-01"}, "split.cutoff"),
        ({"method": "cutoff", "cutoff": "2000-01-01"}, "split.cutoff"),
    ],
)
def test_empty_periods_name_the_setting(frame, changes, setting):
    with pytest.raises(SplitError, match=setting.replace(".", r"\.")):
        split_by_time(frame, split_config(**changes), HORIZON)


def test_summary_is_frozen_and_reads_like_the_former_dict(frame):
    split = split_by_time(frame, split_config(), HORIZON)
    summary = split.summary
    assert summary["train"]["rows"] == summary.train.rows == int(split.train.sum())
    assert isinstance(summary["test"], dict)
    assert summary.as_dict()["validation"]["rows"] == int(split.validation.sum())
    with pytest.raises(AttributeError):
        summary.method = "other"  # type: ignore[misc]
