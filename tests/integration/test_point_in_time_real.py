"""The point-in-time guarantee on real data: OULAD, at random times of its 2013 and 2014 runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from features.build import build_feature_frame
from features.oulad import oulad_to_contract, read_oulad
from tests.sources import truncate_at, write_source
from tests.unit.test_point_in_time import assert_point_in_time

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

CONFIG = load_config()


@pytest.fixture(scope="module")
def oulad_tables(oulad_dir):
    contract = oulad_to_contract(read_oulad(oulad_dir, CONFIG.oulad), CONFIG.oulad)
    return {
        "courses": contract.courses,
        "enrollments": contract.enrollments,
        "assignments": contract.assignments,
        "events": contract.events,
    }


def random_times(tables, n: int, seed: int) -> list[pd.Timestamp]:
    """Random moments (to the minute) inside course runs, clicks included (AAA, BBB 2013)."""
    rng = np.random.default_rng(seed)
    courses = tables["courses"].sort_values("course_id").reset_index(drop=True)
    picks = courses.iloc[rng.integers(0, len(courses), n)]
    span = (picks.end_at - picks.start_at).dt.total_seconds().to_numpy()
    offset = pd.to_timedelta((rng.random(n) * span).astype(int), unit="s")
    return list((picks.start_at.reset_index(drop=True) + offset).dt.floor("min"))


@pytest.mark.parametrize("seed", [0])
def test_oulad_features_ignore_rows_at_or_after_t(oulad_tables, tmp_path, seed):
    for i, when in enumerate(random_times(oulad_tables, 2, seed)):
        assert_point_in_time(build_feature_frame, oulad_tables, tmp_path / str(i), when)


def test_oulad_weekly_rows_ignore_rows_at_or_after_t(oulad_tables, tmp_path):
    """`--all` rows at a weekly time of AAA-2013J (with clicks) are unchanged by truncation."""
    aaa = {
        name: frame[frame.course_id == "AAA-2013J"] if "course_id" in frame else frame
        for name, frame in oulad_tables.items()
    }
    full = build_feature_frame(write_source(tmp_path / "full", aaa), CONFIG)
    when = sorted(full.as_of.unique())[10]
    cut = build_feature_frame(write_source(tmp_path / "cut", truncate_at(aaa, when)), CONFIG)
    cols = [c for c in full.columns if c != "label"]
    a = full[full.as_of == when][cols].reset_index(drop=True)
    b = cut[cut.as_of == when][cols].reset_index(drop=True)
    assert len(a) > 300 and a["lesson_views_28d"].notna().all()
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)


def test_oulad_snapshots_cover_every_run_without_final_result(oulad_tables, tmp_path):
    frame = build_feature_frame(write_source(tmp_path / "src", oulad_tables), CONFIG)
    assert frame.course_id.nunique() == 22
    assert not [c for c in frame.columns if "final_result" in c]
    rate = frame.label.mean()
    assert 0.005 < rate < 0.1, f"weekly 28-day dropout label rate {rate:.3f} looks wrong"


@pytest.fixture(scope="module")
def synthetic_tables(tmp_path_factory):
    from features.sources import read_table
    from features.synthetic import write_school

    folder = tmp_path_factory.mktemp("school")
    write_school(folder, students=400, seed=3, config=CONFIG.generator)
    names = ("courses", "enrollments", "assignments", "events")
    return {name: read_table(folder, name) for name in names}


def test_synthetic_school_features_ignore_rows_at_or_after_t(synthetic_tables, tmp_path):
    for i, when in enumerate(random_times(synthetic_tables, 3, seed=7)):
        assert_point_in_time(build_feature_frame, synthetic_tables, tmp_path / str(i), when)
