"""The point-in-time guarantee: removing every row at or after t never changes a feature at t.

The checker `assert_point_in_time` is generic; `test_checker_catches_a_leaky_feature` shows it
failing on a feature that deliberately reads the future, so a passing run means something.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configs import load_config
from features.build import build_feature_frame
from features.catalog import KEY_COLUMNS, LABEL_COLUMN, feature_names
from tests.sources import random_school as _random_school
from tests.sources import truncate_at, write_source

CONFIG = load_config()
Builder = Callable[..., pd.DataFrame]


def random_school(seed: int, **kwargs) -> dict[str, pd.DataFrame]:
    """The random school with assignment weights (for next_deadline_weight)."""
    tables = _random_school(seed, **kwargs)
    assignments = tables["assignments"].copy()
    assignments["weight"] = [float(1 + (seed + j) % 4) for j in range(len(assignments))]
    return {**tables, "assignments": assignments}


def features_at(build: Builder, tables, folder, when: pd.Timestamp) -> pd.DataFrame:
    frame = build(write_source(folder, tables), CONFIG, as_of=when.to_pydatetime())
    return frame.drop(columns=[LABEL_COLUMN]).sort_values(list(KEY_COLUMNS)).reset_index(drop=True)


def assert_point_in_time(build: Builder, tables, tmp_path, when: pd.Timestamp) -> None:
    full = features_at(build, tables, tmp_path / "full", when)
    cut = features_at(build, truncate_at(tables, when), tmp_path / "cut", when)
    pd.testing.assert_frame_equal(full, cut, check_exact=False, rtol=1e-9)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 10_000), hours=st.integers(0, 24 * 70))
def test_features_ignore_rows_at_or_after_t(tmp_path_factory, seed, hours):
    tables = random_school(seed)
    when = pd.Timestamp("2025-01-06", tz="UTC") + pd.Timedelta(hours=hours)
    assert_point_in_time(build_feature_frame, tables, tmp_path_factory.mktemp("pit"), when)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weekly_snapshots_ignore_rows_at_or_after_t(tmp_path, seed):
    """The same guarantee for `--all`: every weekly row at t is unchanged by truncating at t."""
    tables = random_school(seed, n_students=10, n_events=250)
    full = build_feature_frame(write_source(tmp_path / "full", tables), CONFIG)
    for when in sorted(full.as_of.unique())[:4]:
        cut = build_feature_frame(write_source(tmp_path / "cut", truncate_at(tables, when)), CONFIG)
        pick = [c for c in full.columns if c != LABEL_COLUMN]
        a = full[full.as_of == when][pick].reset_index(drop=True)
        b = cut[cut.as_of == when][pick].reset_index(drop=True)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)


def test_every_catalogue_feature_is_checked_with_values(tmp_path):
    """The guarantee above covers every catalogue feature: each is a column of the compared
    frames and takes non-null, non-constant values on these schools (a feature that were always
    null would pass the point-in-time check without testing anything)."""
    frames = []
    for seed in (1, 2, 3, 4):
        tables = random_school(seed, n_students=16, n_events=600)
        frames.append(build_feature_frame(write_source(tmp_path / f"s{seed}", tables), CONFIG))
    frame = pd.concat(frames, ignore_index=True)
    for name in feature_names(CONFIG.features):
        assert name in frame.columns, name
        values = frame[name].dropna()
        assert values.nunique() > 1, f"{name} is constant or always null here"


@pytest.mark.parametrize("seed", [4, 5])
def test_deadline_features_ignore_submissions_at_or_after_t(tmp_path, seed):
    """A submission at or after t never changes the deadline position at t (a late submission
    counts from the snapshots after it)."""
    tables = random_school(seed, n_students=12, n_events=400)
    deadline = tables["assignments"]["due_at"].sort_values().iloc[2]
    when = (deadline + pd.Timedelta(days=3)).floor("D")
    assert_point_in_time(build_feature_frame, tables, tmp_path, when)


def test_checker_catches_a_leaky_feature(tmp_path):
    """A feature that counts every event, including the future, must make the checker fail."""

    def leaky_build(source, config, as_of=None):
        frame = build_feature_frame(source, config, as_of=as_of)
        events = pd.read_parquet(source / "events.parquet")
        totals = events.groupby(["student_id", "course_id"]).size().rename("events_all_time")
        return frame.join(totals, on=["student_id", "course_id"])

    tables = random_school(5, n_events=300)
    when = pd.Timestamp("2025-01-27", tz="UTC")
    with pytest.raises(AssertionError):
        assert_point_in_time(leaky_build, tables, tmp_path, when)


@pytest.mark.parametrize(("seed", "position"), [(11, 2), (12, -2), (13, 8)])
def test_as_of_matches_weekly_snapshot(tmp_path, seed, position):
    """Scoring features at a weekly time equal the training features at that time."""
    tables = random_school(seed, n_students=10, n_events=250)
    source = write_source(tmp_path / "src", tables)
    weekly = build_feature_frame(source, CONFIG)
    when = sorted(weekly.as_of.unique())[position]
    single = build_feature_frame(source, CONFIG, as_of=when.to_pydatetime())
    a = weekly[weekly.as_of == when].drop(columns=[LABEL_COLUMN]).reset_index(drop=True)
    # Other course runs are scored at `when` too but have no weekly snapshot exactly then.
    single = single[single.course_id.isin(a.course_id)]
    b = single.drop(columns=[LABEL_COLUMN]).reset_index(drop=True)
    # Category sets depend on who is in the frame; compare the attribute values themselves.
    a, b = (f.astype({c: "str" for c in f.columns if c.startswith("attr_")}) for f in (a, b))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
