"""`notalone ingest moodle`: a Moodle database -> a contract source, incrementally.

Each run re-reads the tables that change (courses, enrolments, roles, groups, assignments,
submissions, grades) and reads only the log rows above the last id an earlier run saw, appending
them as one new part `events/log-<first>-<last>.parquet`. The new source is built beside `--out`
(earlier parts hard-linked, not copied) and replaces it in one rename: an interrupted run leaves
the earlier source whole, and its state file still names the earlier last id.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from configs.schema import CONFIG_DIR, Config
from features.contract import EVENT_TYPES
from features.moodle import (
    COLUMNS,
    LOG_TABLE,
    MoodleTables,
    enrolment_keys,
    event_codes,
    map_log_batch,
    map_moodle,
)
from features.sources import atomic_dir, write_table
from pipelines.moodle_store import (
    EVENTS_DIR,
    STATE_FORMAT,
    EmptyLogStoreError,
    MoodleStoreError,
    check_schema,
    connect,
    first_log_id,
    link_previous_parts,
    log_batches,
    log_bounds,
    prefetched,
    read_previous_enrollments,
    read_state,
    read_table,
    redact,
    write_state,
)

MOODLE_CONFIG = CONFIG_DIR / "moodle.yaml"
SUBMISSIONS_PART = "assign-submissions.parquet"  # rewritten each run (submissions change)
SOURCE_FILE = "source.yaml"
PARQUET_COMPRESSION = "zstd"


def load_moodle_config(path: Path | None = None) -> Config:
    """default.yaml, then configs/moodle.yaml (the event map, roles), then the user's file."""
    from configs import load_config
    from configs.schema import _read_yaml

    return load_config(MOODLE_CONFIG, overrides=_read_yaml(Path(path)) if path else None)


def _log_part_name(first_id: int, last_id: int) -> str:
    return f"log-{first_id:012d}-{last_id:012d}.parquet"


def ingest_moodle(
    *,
    dsn: str,
    prefix: str,
    out: Path,
    config: Config,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Read the Moodle database at `dsn` (tables `prefix`*) into the source `out`; returns what
    was read: row counts, the log id range, events written by type, rows dropped and why."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    cfg = config.moodle
    codes, default_code = event_codes(cfg.event_map, cfg.default_event_type)
    if not re.fullmatch(r"[a-z0-9_]*", prefix):
        raise MoodleStoreError(f"--prefix must be lower-case letters, digits and _, got {prefix!r}")
    out = Path(out)
    state = read_state(out)
    if state is not None and state.get("prefix") != prefix:
        raise MoodleStoreError(
            f"--out {out} was ingested with prefix {state.get('prefix')!r}, not {prefix!r}"
        )
    after_id = int(state["last_log_id"]) if state else 0

    say(f"connecting to {redact(dsn)}")
    conn = connect(dsn)
    try:
        release = check_schema(conn, prefix)
        say(f"schema checked (Moodle {release or 'release not recorded'})")
        any_row, top_id, now_s = log_bounds(conn, prefix)
        if not any_row:
            raise EmptyLogStoreError(
                f"table {prefix}{LOG_TABLE} is empty: no activity to read. Is the standard log "
                "store enabled (Site administration > Plugins > Logging > Manage log stores)?",
                table=f"{prefix}{LOG_TABLE}",
            )
        if top_id < after_id:
            raise MoodleStoreError(
                f"{prefix}{LOG_TABLE} ends at id {top_id}, below the last id {after_id} an earlier "
                f"run read into {out}: is this the same database? Use a new --out.",
                table=f"{prefix}{LOG_TABLE}",
                column="id",
            )
        frames = {}
        for name in COLUMNS:
            frames[name] = read_table(conn, prefix, name)
        say("re-read " + ", ".join(f"{n} {len(f):,}" for n, f in frames.items()))
        mapped = map_moodle(
            MoodleTables(frames),
            cfg,
            previous_enrollments=read_previous_enrollments(out) if state else None,
            noticed_at=pd.Timestamp(now_s, unit="s", tz="UTC").as_unit("us"),
        )
        enrollments = mapped.enrollments
        dropped = dict(mapped.dropped)
        keys = enrolment_keys(enrollments)

        with atomic_dir(out) as tmp:
            parts = link_previous_parts(out, tmp) if state else []
            events_dir = tmp / EVENTS_DIR
            events_dir.mkdir(exist_ok=True)
            pq.write_table(
                mapped.submissions,
                events_dir / SUBMISSIONS_PART,
                compression=PARQUET_COMPRESSION,
            )
            say(f"reading {prefix}{LOG_TABLE} ids {after_id + 1:,}..{top_id:,}")
            read = written = 0
            log_started = time.perf_counter()
            by_type = {t: 0 for t in EVENT_TYPES}
            first_seen = last_seen = None
            part_name = None
            if top_id > after_id:
                tmp_part = events_dir / ".log-part.tmp"
                writer = None
                with log_batches(conn, prefix, after_id, top_id, codes, default_code) as reader:
                    batches = (
                        prefetched(reader, cfg.prefetch_batches) if cfg.prefetch_batches else reader
                    )
                    for batch in batches:
                        if batch.num_rows == 0:
                            continue
                        read += batch.num_rows
                        events, why = map_log_batch(
                            batch, keys, cfg.event_map, cfg.default_event_type
                        )
                        for reason, count in why.items():
                            dropped[reason] = dropped.get(reason, 0) + count
                        counts = pc.value_counts(events["event_type"].combine_chunks())
                        for item in counts.to_pylist():
                            by_type[item["values"]] += item["counts"]
                        written += events.num_rows
                        if writer is None:
                            writer = pq.ParquetWriter(
                                tmp_part, events.schema, compression=PARQUET_COMPRESSION
                            )
                        writer.write_table(events)
                if writer is not None:
                    writer.close()
                    first_seen = first_log_id(conn, prefix, after_id, top_id)
                    last_seen = top_id
                    part_name = _log_part_name(first_seen, last_seen)
                    tmp_part.rename(events_dir / part_name)
            log_seconds = time.perf_counter() - log_started
            say(f"log rows read: {read:,}, events written: {written:,} in {log_seconds:.1f} s")
            for name, frame in (
                ("courses", mapped.courses),
                ("enrollments", enrollments),
                ("assignments", mapped.assignments),
            ):
                write_table(tmp, name, frame)
            exported_at = pd.Timestamp(now_s, unit="s", tz="UTC").as_unit("us").isoformat()
            (tmp / SOURCE_FILE).write_text(
                yaml.safe_dump({"exported_at": exported_at, "origin": "moodle"}), encoding="utf-8"
            )
            run = {
                "at": exported_at,
                "log_ids_read": [after_id + 1, top_id] if top_id > after_id else None,
                "log_rows_read": read,
                "events_written": written,
                "part": part_name,
            }
            runs = [*(state or {}).get("runs", []), run]
            write_state(
                tmp,
                {
                    "format": STATE_FORMAT,
                    "dsn": redact(dsn),
                    "prefix": prefix,
                    "moodle_release": release,
                    "last_log_id": top_id,
                    "runs": runs,
                },
            )
            all_parts = parts + ([part_name] if part_name else [])
    finally:
        conn.close()

    return {
        "out": str(out),
        "moodle_release": release,
        "courses": len(mapped.courses),
        "enrollments": len(enrollments),
        "assignments": len(mapped.assignments),
        "submissions": mapped.submissions.num_rows,
        "log_id_range": [after_id + 1, top_id] if top_id > after_id else None,
        "log_rows_read": read,
        "first_log_id_seen": first_seen,
        "last_log_id_seen": last_seen,
        "events_written": written,
        "log_events_by_type": {k: v for k, v in by_type.items() if v},
        "log_parts": all_parts,
        "new_part": part_name,
        "dropped": dropped,
        "exported_at": exported_at,
        "log_seconds": log_seconds,
        "seconds": time.perf_counter() - started,
    }
