"""The benchmark's pandas implementation (benchmarks/pandas_features.py) computes the same
features as the DuckDB builder, so the speed comparison in `make bench-features` compares like
with like. Tiny random schools; every catalogue feature and the label are compared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import pandas_features as pf
from configs import load_config
from features.build import build_feature_frame
from features.catalog import KEY_COLUMNS, LABEL_COLUMN, feature_names
from tests.sources import random_school, write_source

CONFIG = load_config()
TOLERANCE = 1e-9


def assert_frames_agree(built: pd.DataFrame, plain: pd.DataFrame, columns: list[str]) -> None:
    """Same snapshot rows (keys) and, row by row, the same values (NaN equals NaN)."""
    keys = list(KEY_COLUMNS)
    assert sorted(map(tuple, built[keys].astype(str).to_numpy())) == sorted(
        map(tuple, plain[keys].astype(str).to_numpy())
    ), "the two implementations disagree on the population (snapshot rows)"
    merged = built.merge(plain, on=keys, suffixes=("_duckdb", "_pandas"))
    problems = []
    for col in columns:
        x = merged[f"{col}_duckdb"].to_numpy(float)
        y = merged[f"{col}_pandas"].to_numpy(float)
        ok = np.isclose(x, y, rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True)
        if not ok.all():
            bad = merged.loc[~ok, [*keys, f"{col}_duckdb", f"{col}_pandas"]].head(3)
            problems.append(f"{col}: {(~ok).sum()} rows differ, e.g.\n{bad.to_string()}")
    assert not problems, "\n".join(problems)


def both(tables: dict[str, pd.DataFrame], folder) -> tuple[pd.DataFrame, pd.DataFrame]:
    source = write_source(folder, tables)
    return build_feature_frame(source, CONFIG), pf.pandas_feature_frame(source, CONFIG)


def test_pandas_implementation_covers_every_catalogue_feature():
    assert pf.covered_features(CONFIG) == feature_names(CONFIG.features)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pandas_features_agree_with_the_builder(tmp_path, seed):
    built, plain = both(random_school(seed, n_students=12, n_events=400), tmp_path / "src")
    assert len(built) > 10
    assert list(plain.columns) == [c for c in built.columns if not c.startswith("attr_")]
    assert_frames_agree(built, plain, [*pf.covered_features(CONFIG), LABEL_COLUMN])


def test_categorical_ids_as_read_from_dictionary_parquet_agree(tmp_path):
    """The synthetic school writes dictionary-encoded ids; pandas reads them as categories."""
    tables = random_school(5, n_students=10, n_events=300)
    for col in ("student_id", "course_id", "event_type", "item_id"):
        tables["events"][col] = tables["events"][col].astype("category")
    built, plain = both(tables, tmp_path / "src")
    assert_frames_agree(built, plain, [*pf.covered_features(CONFIG), LABEL_COLUMN])


def test_the_check_catches_a_wrong_feature(tmp_path):
    """The comparison can fail: a pandas value off by one day is reported."""
    built, plain = both(random_school(7, n_students=10, n_events=300), tmp_path / "src")
    wrong = plain.copy()
    hit = wrong["days_since_start"].notna()
    wrong.loc[hit.idxmax(), "days_since_start"] += 1.0
    with pytest.raises(AssertionError, match="days_since_start: 1 rows differ"):
        assert_frames_agree(built, wrong, ["days_since_start"])


def test_snapshot_times_are_weekly_from_the_first_offset_to_the_end():
    start = pd.Timestamp("2025-01-06", tz="UTC")
    times = pf.snapshot_times(start, start + pd.Timedelta(days=21), CONFIG)
    assert times == [start + pd.Timedelta(days=d) for d in (7, 14, 21)]
