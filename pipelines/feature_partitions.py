"""Features built partition by partition on a Dask cluster: a partition is a group of whole course
runs, built by one task that opens the source itself and writes one part of a Parquet dataset.

Whole runs keep the within-run percentiles exact, so the parts together are the local build's
frame. What travels to a worker is the source's location, the config and a list of course ids;
what comes back is a row count. The data end (labels need t + horizon before it) is the whole
source's, found once by a task and handed to every partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from configs.schema import Config
from features.build import (
    CalendarWeeks,
    _empty_frame,
    _sorted,
    data_end,
    iter_feature_chunks,
    open_source,
)
from features.sources import atomic_dir
from pipelines.dask_store import client_at, run_each, run_one
from pipelines.feature_cache import FeatureCache, feature_key
from pipelines.settings import Workspace

PART_NAME = "part-{:05d}.parquet"
# The tables whose rows belong to one course run; a partition's views keep only its runs' rows.
RUN_TABLES = ("courses", "enrollments", "events", "assignments")


@dataclass(frozen=True)
class PartitionPlan:
    course_groups: tuple[tuple[str, ...], ...]
    data_end_s: float


def plan_partitions(source: str, config: Config) -> PartitionPlan:
    """Course runs (in id order) grouped `dask.runs_per_partition` at a time, and the data end."""
    con = open_source(source, config)
    try:
        ids = [
            row[0]
            for row in con.execute(
                "SELECT DISTINCT CAST(course_id AS VARCHAR) FROM raw_courses ORDER BY 1"
            ).fetchall()
        ]
        end_s = data_end(con)
    finally:
        con.close()
    size = config.dask.runs_per_partition
    groups = tuple(tuple(ids[i : i + size]) for i in range(0, len(ids), size))
    return PartitionPlan(groups, end_s)


def restrict_to_runs(con: duckdb.DuckDBPyConnection, course_ids: tuple[str, ...]) -> None:
    """Replace the run tables' raw views by their rows of these course runs only.

    On events hive-partitioned by course_id the filter is on the partition column, so DuckDB
    opens only these runs' folders.
    """
    listed = ", ".join("'" + c.replace("'", "''") + "'" for c in course_ids)
    for table in RUN_TABLES:
        (present,) = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [f"raw_{table}"]
        ).fetchall()[0]
        if not present:
            continue  # the builder names the missing table
        sql = con.execute(
            "SELECT sql FROM duckdb_views() WHERE view_name = ?", [f"raw_{table}"]
        ).fetchall()[0][0]
        body = sql[sql.upper().index(" AS ") + 4 :].rstrip().rstrip(";")
        con.execute(
            f"CREATE OR REPLACE VIEW raw_{table} AS SELECT * FROM ({body}) "
            f"WHERE CAST(course_id AS VARCHAR) IN ({listed})"
        )


def build_partition(
    source: str,
    part: str,
    config: Config,
    as_of: datetime | CalendarWeeks | None,
    course_ids: tuple[str, ...],
    data_end_s: float,
    duplicate_events: bool | None,
) -> int:
    """Build these runs' features (a task on a worker) into the Parquet file `part`; rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    con = open_source(source, config)
    writer: pq.ParquetWriter | None = None
    schema = None
    rows = 0
    try:
        restrict_to_runs(con, course_ids)
        for chunk in iter_feature_chunks(
            con, config, as_of, None, duplicate_events, data_end_s=data_end_s
        ):
            table = _arrow(_sorted(chunk), pa)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(part, schema)
            writer.write_table(table.cast(schema) if table.schema != schema else table)
            rows += table.num_rows
    finally:
        con.close()
        if writer is not None:
            writer.close()
    return rows


def _arrow(frame: pd.DataFrame, pa):
    import warnings

    with warnings.catch_warnings():
        # pandas 3.1 deprecates .values on tz-aware columns, which pyarrow still calls.
        warnings.simplefilter("ignore", category=Warning)
        return pa.Table.from_pandas(frame, preserve_index=False)


def write_partitioned_features(
    source: str | Path,
    out: str | Path,
    config: Config,
    as_of: datetime | CalendarWeeks | None,
    duplicate_events: bool | None,
    dask: str,
    progress: Callable[[str], None],
) -> int:
    """The feature frame as a Parquet dataset `out/part-NNNNN.parquet`, one part per partition
    of course runs, built on the cluster at `dask`; the folder appears atomically. Returns rows.

    `out` must be on storage the workers share with the client (they write the parts into it).
    """
    source = str(Path(source).resolve())
    out = Path(out).resolve()
    with client_at(dask) as client:
        plan = run_one(client, plan_partitions, source, config)
        progress(f"{len(plan.course_groups)} partitions of course runs on the cluster")
        with atomic_dir(out) as tmp:
            calls = [
                (
                    source,
                    str(tmp / PART_NAME.format(i)),
                    config,
                    as_of,
                    group,
                    plan.data_end_s,
                    duplicate_events,
                )
                for i, group in enumerate(plan.course_groups)
            ]
            counts = run_each(client, build_partition, calls)
            if not any(Path(c[1]).exists() for c in calls):
                _empty_frame(config).to_parquet(tmp / PART_NAME.format(0), index=False)
    return int(sum(counts))


def read_feature_dataset(path: str | Path) -> pd.DataFrame:
    """A partitioned feature dataset (or a single file) as one frame, in the local build's row
    order (as_of, course_id, student_id): row order shapes LightGBM's bagging and bins, so a
    model trained on either is the same model."""
    return read_located_dataset(path)[0]


def cluster_features(
    source: str | Path,
    config: Config,
    as_of: datetime | CalendarWeeks | None,
    duplicate_events: bool | None,
    dask: str,
    folder: Path,
    progress: Callable[[str], None],
) -> tuple[pd.DataFrame, FeatureDataset, bool]:
    """The feature dataset of these inputs in `folder` (built on the cluster unless it is
    there: the folder appears whole or not at all), read on the client with where its rows are.
    Returns (frame, dataset, whether it was there)."""
    hit = folder.is_dir()
    if hit:
        progress("dataset from the cache")
    else:
        write_partitioned_features(source, folder, config, as_of, duplicate_events, dask, progress)
    frame, dataset = read_located_dataset(folder)
    return frame, dataset, hit


@dataclass(frozen=True)
class FeatureDataset:
    """Where the rows of a frame read from a feature dataset are: its part files (paths the
    workers can read), their row counts, and for frame row i its place `order[i]` in the parts
    read one after another. Lets the client tell a worker which rows to read, not send them."""

    files: tuple[str, ...]
    file_rows: tuple[int, ...]
    order: np.ndarray

    def bounds(self) -> np.ndarray:
        return np.cumsum((0, *self.file_rows))

    def segment_masks(self, rows: np.ndarray) -> list[list[np.ndarray]]:
        """Frame rows `rows` (positions, in the order wanted) as segments of rows in frame
        order: per segment, per file, the packed mask of its rows. A worker that reads each
        segment's rows in the local order and puts the segments one after another has `rows`
        in their order."""
        rows = np.asarray(rows, dtype=np.int64)
        cuts = np.flatnonzero(np.diff(rows) < 0) + 1
        bounds = self.bounds()
        out = []
        for segment in np.split(rows, cuts):
            chosen = np.zeros(int(bounds[-1]), dtype=bool)
            chosen[self.order[segment]] = True
            out.append(
                [np.packbits(chosen[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            )
        return out

    def frame_positions(self) -> np.ndarray:
        """For each row of the concatenated parts, its position in the frame."""
        inverse = np.empty_like(self.order)
        inverse[self.order] = np.arange(len(self.order))
        return inverse


def _local_order(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, np.ndarray]:
    """Parts hold runs in course-id order and each part is in the local order, so a stable sort
    of the parts one after the other on as_of alone gives the local order."""
    if len(frames) == 1:
        frame = frames[0]
    else:
        frame = pd.concat(frames, ignore_index=True)
        for col in frame.columns:  # categories differ between parts: concat leaves plain values
            if any(isinstance(f[col].dtype, pd.CategoricalDtype) for f in frames):
                frame[col] = frame[col].astype("category")
    if frame.empty:
        return frame.reset_index(drop=True), np.arange(0)
    order = np.argsort(frame["as_of"].to_numpy(dtype="int64"), kind="stable")
    return frame.take(order).reset_index(drop=True), order


def read_located_dataset(path: str | Path) -> tuple[pd.DataFrame, FeatureDataset]:
    """`read_feature_dataset`, and where each of its rows is (`FeatureDataset`)."""
    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    frames = [pd.read_parquet(f) for f in files]
    if not path.is_dir():
        frame = frames[0]
        return frame, FeatureDataset((str(path),), (len(frame),), np.arange(len(frame)))
    frame, order = _local_order(frames)
    dataset = FeatureDataset(tuple(str(f) for f in files), tuple(len(f) for f in frames), order)
    return frame, dataset


def read_rows(
    files: Sequence[str], segments: Sequence[Sequence[np.ndarray]], columns: list[str] | None
) -> pd.DataFrame:
    """On a worker: the rows of these part files chosen by each segment's packed masks (see
    `FeatureDataset.segment_masks`), each segment in the local order, one after another."""
    parts = [pd.read_parquet(f, columns=columns) for f in files]
    out = []
    for masks in segments:
        chosen = [
            part[np.unpackbits(mask, count=len(part)).astype(bool)]
            for part, mask in zip(parts, masks, strict=True)
        ]
        out.append(_local_order(chosen)[0])
    if len(out) == 1:
        return out[0]
    frame = pd.concat(out, ignore_index=True)
    for col in frame.columns:
        if any(isinstance(f[col].dtype, pd.CategoricalDtype) for f in out):
            frame[col] = frame[col].astype("category")
    return frame


def read_part(file: str, mask: np.ndarray | None, offset: int) -> pd.DataFrame:
    """On a worker: one part file (the rows of its packed `mask`, else all), indexed by their
    place in the dataset's parts read one after another (`offset`: this file's first row)."""
    part = pd.read_parquet(file)
    index = np.arange(offset, offset + len(part))
    if mask is not None:
        keep = np.unpackbits(mask, count=len(part)).astype(bool)
        part, index = part[keep], index[keep]
    part.index = index
    return part


@dataclass(frozen=True)
class LocatedFrame:
    """A feature frame read from a dataset on shared storage, and where its rows are."""

    frame: pd.DataFrame
    dataset: FeatureDataset
    key: str
    hit: bool


def workspace_cluster_features(
    source: str | Path,
    config: Config,
    as_of: datetime | CalendarWeeks | None,
    duplicate_events: bool | None,
    workspace: Workspace,
    dask: str,
    progress: Callable[[str], None],
) -> LocatedFrame:
    """`cluster_features` into the workspace's feature cache (`dataset-<key>/`, the key of the
    frame without Dask): built on the cluster only when these inputs are new. The workspace
    must be on storage the workers share."""
    cache = FeatureCache(workspace.cache / "features", keep=config.schedule.feature_cache_entries)
    key = feature_key(source, config, as_of)
    frame, dataset, hit = cluster_features(
        source, config, as_of, duplicate_events, dask, cache.dataset(key), progress
    )
    cache.touch_dataset(key)
    return LocatedFrame(frame, dataset, key, hit)
