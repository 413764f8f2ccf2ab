"""Benchmark the synthetic school generator: events per second, end to end, Parquet included.

    uv run python benchmarks/bench_generate.py                  # about 10M events
    uv run python benchmarks/bench_generate.py --events 50000000 --keep /tmp/school50m

It sizes the school from a small pilot (events per student), generates it with `write_school`
(simulation + chunked Parquet writing, exactly what `notalone generate` runs) and reports
wall-clock and CPU rates, peak memory and the load average (the machine may be shared). For scale
it also times, on the written events, a single DuckDB scan of every column and the straightforward
pandas way of writing the same rows (string columns, `DataFrame.to_parquet`) on one part.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from configs import load_config
from features.synthetic import EVENTS_DIR, write_school

PILOT_STUDENTS = 2000


def _generate(folder: Path, students: int, seed: int, config) -> tuple[int, float, float]:
    folder.mkdir(parents=True)
    wall, cpu = time.perf_counter(), time.process_time()
    summary = write_school(folder, students, seed, config)
    return summary.events, time.perf_counter() - wall, time.process_time() - cpu


def _scan_seconds(folder: Path) -> float:
    con = duckdb.connect()
    started = time.perf_counter()
    con.execute(
        f"""SELECT count(*), max(student_id), max(course_id), max(ts), max(event_type),
                   max(item_id), sum(value)
            FROM read_parquet('{folder / EVENTS_DIR}/*.parquet')"""
    ).fetchall()
    return time.perf_counter() - started


def _pandas_write_rate(folder: Path, scratch: Path) -> float:
    """Events/s of writing one part the plain pandas way (str columns, to_parquet)."""
    part = sorted((folder / EVENTS_DIR).glob("*.parquet"))[0]
    frame = pq.read_table(part).to_pandas()
    for col in ("student_id", "course_id", "event_type", "item_id"):
        frame[col] = frame[col].astype(object)  # what row-wise Python code would produce
    started = time.perf_counter()
    frame.astype({c: "str" for c in ("student_id", "course_id", "event_type")}).to_parquet(
        scratch / "pandas.parquet", index=False
    )
    return len(frame) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="target event count")
    parser.add_argument("--students", type=int, help="students (overrides --events)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="simulation threads (default: config)")
    parser.add_argument("--keep", type=Path, help="write here and keep it (default: temp)")
    args = parser.parse_args()

    config = load_config().generator
    if args.threads:
        config = config.model_copy(update={"threads": args.threads})
    scratch = Path(tempfile.mkdtemp(prefix="bench_generate-"))
    try:
        students = args.students
        if students is None:
            pilot_events, _, _ = _generate(scratch / "pilot", PILOT_STUDENTS, args.seed, config)
            students = max(1, round(args.events * PILOT_STUDENTS / pilot_events))
        folder = args.keep or scratch / "school"
        if args.keep and folder.exists():
            shutil.rmtree(folder)
        load = os.getloadavg()[0]
        events, wall, cpu = _generate(folder, students, args.seed, config)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
        scan = _scan_seconds(folder)
        pandas_rate = _pandas_write_rate(folder, scratch)
        rate = events / wall
        rows = [
            ("students", f"{students:,}"),
            ("events", f"{events:,}"),
            ("threads", f"{config.threads} simulation + 1 writer on {os.cpu_count()} cores"),
            ("load average at start", f"{load:.1f}"),
            ("wall time", f"{wall:.2f} s"),
            ("events/s (wall, end to end)", f"{rate:,.0f}"),
            ("CPU time (all threads)", f"{cpu:.2f} s = {events / cpu:,.0f} events per CPU-second"),
            ("peak RSS", f"{peak_mb:,.0f} MB"),
            ("on disk", f"{size_mb:,.0f} MB ({size_mb * 1e6 / events:.1f} bytes/event)"),
            ("single DuckDB scan", f"{scan:.2f} s -> generate/scan = {wall / scan:.1f}x"),
            (
                "pandas to_parquet alone",
                f"{pandas_rate:,.0f} events/s -> generator is {rate / pandas_rate:.1f}x that rate",
            ),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
