"""Features built partition by partition on a Dask cluster: a partition is a group of whole course
runs, built by one task that opens the source itself and writes one part of a Parquet dataset.

Whole runs keep the within-run percentiles exact, so the parts together are the local build's
frame. What travels to a worker is the source's location, the config and a list of course ids;
what comes back is a row count. The data end (labels need t + horizon before it) is the whole
source's, found once by a task and handed to every partition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
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
    model trained on either is the same model.

    Parts hold runs in course-id order and each part is in the local order, so a stable sort of
    the parts one after the other on as_of alone gives the local order.
    """
    import numpy as np

    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    frames = [pd.read_parquet(f) for f in files]
    if len(frames) == 1:
        return frames[0]
    frame = pd.concat(frames, ignore_index=True)
    for col in frame.columns:  # categories differ between parts: concat leaves plain values
        if any(isinstance(f[col].dtype, pd.CategoricalDtype) for f in frames):
            frame[col] = frame[col].astype("category")
    order = np.argsort(frame["as_of"].to_numpy(dtype="int64"), kind="stable")
    return frame.take(order).reset_index(drop=True)
