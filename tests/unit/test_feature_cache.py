"""The feature cache: same inputs hit, any changed input misses, entries survive a round trip."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pandas as pd
import pytest

from configs import load_config
from features.build import build_feature_frame
from pipelines.feature_cache import FeatureCache, cached_feature_frame, feature_key
from tests.sources import random_school, write_source

AS_OF = datetime(2025, 2, 3, tzinfo=UTC)


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "school", random_school(seed=3))


def test_key_is_stable_for_the_same_inputs(source):
    config = load_config()
    assert feature_key(source, config, AS_OF) == feature_key(source, config, AS_OF)


@pytest.mark.parametrize(
    "change",
    ["as_of", "all_snapshots", "feature_config", "snapshot_config", "touch_file", "new_file"],
)
def test_key_changes_when_an_input_changes(source, change):
    config = load_config()
    before = feature_key(source, config, AS_OF)
    as_of = AS_OF
    if change == "as_of":
        as_of = datetime(2025, 2, 10, tzinfo=UTC)
    elif change == "all_snapshots":
        as_of = None
    elif change == "feature_config":
        config = load_config(overrides={"features": {"include_attrs": False}})
    elif change == "snapshot_config":
        config = load_config(overrides={"snapshots": {"horizon_days": 14}})
    elif change == "touch_file":
        path = source / "events.parquet"
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    elif change == "new_file":
        (source / "events.parquet").rename(source / "events.csv.bak")
        pd.read_parquet(source / "events.csv.bak").to_csv(source / "events.csv", index=False)
    assert feature_key(source, config, as_of) != before


def test_key_ignores_config_the_features_do_not_read(source):
    config = load_config()
    other = load_config(overrides={"scoring": {"capacity": 3}, "model": {"seed": 1}})
    assert feature_key(source, config, AS_OF) == feature_key(source, other, AS_OF)


def test_second_call_hits_and_returns_an_equal_frame(source, tmp_path):
    config = load_config()
    cache = FeatureCache(tmp_path / "cache", keep=4)
    builds = []

    def build():
        builds.append(1)
        return build_feature_frame(source, config)

    first = cached_feature_frame(cache, source, config, None, build)
    second = cached_feature_frame(cache, source, config, None, build)
    assert (first.hit, second.hit) == (False, True)
    assert len(builds) == 1
    assert len(first.frame) > 0
    pd.testing.assert_frame_equal(second.frame, first.frame)


def test_damaged_entry_is_rebuilt(source, tmp_path):
    config = load_config()
    cache = FeatureCache(tmp_path / "cache", keep=4)
    first = cached_feature_frame(
        cache, source, config, AS_OF, lambda: build_feature_frame(source, config, as_of=AS_OF)
    )
    cache.path(first.key).write_bytes(b"not parquet")
    again = cached_feature_frame(
        cache, source, config, AS_OF, lambda: build_feature_frame(source, config, as_of=AS_OF)
    )
    assert not again.hit
    pd.testing.assert_frame_equal(again.frame, first.frame)


def test_prune_keeps_the_newest_entries(tmp_path):
    cache = FeatureCache(tmp_path / "cache", keep=2)
    frame = pd.DataFrame({"x": [1.0]})
    for i, key in enumerate(["a", "b", "c"]):
        path = cache.put(key, frame)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    cache.prune()
    assert sorted(p.stem for p in cache.root.glob("*.parquet")) == ["b", "c"]


def test_prune_drops_temporary_files_of_dead_writers_only(tmp_path):
    import subprocess
    import sys

    cache = FeatureCache(tmp_path / "cache", keep=2)
    cache.root.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    killed = cache.root / f".k.parquet.{dead}.tmp"  # a writer killed before its rename
    alive = cache.root / f".k.parquet.{os.getpid()}.tmp"  # a writer still at work
    for path in (killed, alive):
        path.write_bytes(b"partial")
    cache.prune()
    assert not killed.exists()
    assert alive.exists()
