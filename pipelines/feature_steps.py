"""Features of a source to a Parquet file: one step sequence for `notalone features` and the
build-features flow.

    validate   the contract check (unless told to take the source as clean)
    build      the point-in-time frame written chunk by chunk (bounded memory), or the same
               inputs' file copied from the feature cache
    describe   rows, labels, runs and snapshot times of the written file
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from configs.schema import Config
from features.build import write_feature_file
from pipelines.checks import check_source
from pipelines.feature_cache import FeatureCache, feature_key, workspace_features
from pipelines.feature_partitions import write_partitioned_features
from pipelines.runner import Progress, Steps
from pipelines.settings import Workspace

# Cache entries of written feature files are kept apart from the in-memory frames of training
# and scoring: the chunked writer's Parquet schema need not match a frame's round trip exactly.
FILE_KEY_PREFIX = "file-"


@dataclass(frozen=True)
class FeatureFile:
    rows: int
    key: str
    hit: bool


def build_step(
    source: Path,
    out: Path,
    config: Config,
    as_of: datetime | None,
    duplicate_events: bool | None,
    workspace: Workspace,
    progress: Progress,
) -> FeatureFile:
    """Write the features to `out` (atomically), from the cache when these inputs were built."""
    cache = FeatureCache(workspace.cache / "features", keep=config.schedule.feature_cache_entries)
    key = FILE_KEY_PREFIX + feature_key(source, config, as_of)
    out.parent.mkdir(parents=True, exist_ok=True)
    if cache.get_file(key, out):
        progress("features: copied from the cache")
        return FeatureFile(_rows(out), key, hit=True)
    rows = write_feature_file(
        source,
        out,
        config,
        as_of=as_of,
        progress=lambda step: progress(f"features: {step}"),
        temp_dir=workspace.tmp,
        duplicate_events=duplicate_events,
    )
    cache.put_file(key, out)
    return FeatureFile(rows, key, hit=False)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def build_partitioned_step(
    source: Path,
    out: Path,
    config: Config,
    as_of: datetime | None,
    duplicate_events: bool | None,
    dask: str,
    progress: Progress,
) -> FeatureFile:
    """Write the features as a partitioned dataset `out/` (one part per group of course runs),
    each part built by a task on the cluster at `dask` (not cached: the parts live on shared
    storage)."""
    rows = write_partitioned_features(
        source, out, config, as_of, duplicate_events, dask, lambda m: progress(f"features: {m}")
    )
    return FeatureFile(rows, FILE_KEY_PREFIX + feature_key(source, config, as_of), hit=False)


def describe_step(out: Path) -> dict[str, Any]:
    """Labelled rows, dropout labels, course runs and snapshot times of a feature file."""
    con = duckdb.connect()
    try:
        path = str(out / "*.parquet" if out.is_dir() else out).replace("'", "''")
        labelled, positives, runs, snaps = con.execute(
            "SELECT count(label), sum(label), count(DISTINCT course_id), count(DISTINCT as_of) "
            f"FROM read_parquet('{path}')"
        ).fetchall()[0]
    finally:
        con.close()
    return {
        "labelled": int(labelled or 0),
        "positives": float(positives or 0),
        "course_runs": int(runs or 0),
        "snapshot_times": int(snaps or 0),
    }


def feature_steps(
    *,
    source: str | Path,
    config: Config,
    workspace: Workspace,
    steps: Steps,
    as_of: datetime | None,
    out: str | Path | None,
    validate: bool = True,
    dask: str | None = None,
) -> dict[str, Any]:
    """Validate, build (to `out`, or only into the cache when `out` is None), describe.

    With `dask` (a scheduler address) and an `out`, the build runs partitioned on that cluster
    and `out` becomes a folder of Parquet parts (a dataset), not one file.

    Without validation the source is taken as clean: exact duplicate events are not looked for
    (that check is a hash aggregation of every event, the cost validation already pays).
    """
    source = Path(source)
    duplicate_events: bool | None = False
    if validate:
        duplicate_events = steps(
            "validate", None, check_source, source, config, workspace, steps.say, dask=dask
        )
    result: dict[str, Any] = {"as_of": as_of.isoformat() if as_of else None}
    if out is None:
        cached = steps(
            "build",
            "features",
            workspace_features,
            source,
            config,
            as_of,
            duplicate_events,
            steps.say,
            workspace,
            io=True,
        )
        result.update(rows=len(cached.frame), cache_key=cached.key, cache_hit=cached.hit)
    else:
        out = Path(out)
        if dask:
            built = steps(
                "build",
                "building features on the Dask cluster",
                build_partitioned_step,
                source,
                out,
                config,
                as_of,
                duplicate_events,
                dask,
                steps.say,
                io=True,
            )
        else:
            built = steps(
                "build",
                "building features",
                build_step,
                source,
                out,
                config,
                as_of,
                duplicate_events,
                workspace,
                steps.say,
                io=True,
            )
        result.update(rows=built.rows, cache_key=built.key, cache_hit=built.hit, out=str(out))
        result.update(steps("describe", None, describe_step, out))
    result["seconds"] = dict(steps.seconds)
    return result
