"""`notalone features`: point-in-time features of a source, written to one Parquet file."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import duckdb
from rich.console import Console

from configs.schema import Config
from features.build import write_feature_file
from features.errors import NotaloneError
from features.validate import require_valid
from pipelines.settings import Workspace


def parse_as_of(value: str | datetime) -> datetime:
    """An ISO date/datetime or a datetime, as UTC; naive values are taken as UTC."""
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise NotaloneError(f"--as-of {value!r} is not an ISO date like 2026-03-02") from exc
    if pd.isna(ts):
        raise NotaloneError(f"--as-of {value!r} is not an ISO date like 2026-03-02")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def run_features(
    source: Path, out: Path, as_of: str | None, config: Config, validate: bool = True
) -> int:
    """Build one snapshot (`as_of`) or all weekly snapshots with labels and write `out`.

    The source is validated first: features of a source that breaks the contract would be wrong
    without saying so (a score of 1e9, a null student id), so such a source is refused.
    """
    ws = Workspace.resolve().activate()
    console = Console(stderr=True)
    when = parse_as_of(as_of) if as_of else None
    # Without validation the source is taken as clean: exact duplicate events are not looked for
    # (that check is a hash aggregation of every event, the cost validation already pays).
    duplicate_events = False
    if validate:
        with console.status("validating the source"):
            report = require_valid(source, config.validation, temp_dir=ws.tmp)
        if report.warnings:
            console.print(
                f"[yellow]{len(report.warnings)} validation warning(s)[/yellow]; "
                f"see `notalone validate --source {source}`"
            )
        duplicate_events = report.duplicate_events
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with console.status("building features") as status:
        rows = write_feature_file(
            source,
            out,
            config,
            as_of=when,
            progress=lambda step: status.update(f"building features: {step}"),
            temp_dir=ws.tmp,
            duplicate_events=duplicate_events,
        )
    seconds = time.perf_counter() - started
    con = duckdb.connect()
    path = str(out).replace("'", "''")
    labelled, positives, runs, snaps = con.execute(
        f"SELECT count(label), sum(label), count(DISTINCT course_id), count(DISTINCT as_of) "
        f"FROM read_parquet('{path}')"
    ).fetchall()[0]
    con.close()
    what = f"as of {when.date()}" if when else "all weekly snapshots"
    console.print(
        f"[green]wrote[/green] {out}: {rows:,} rows ({what}), {runs} course runs, "
        f"{snaps} snapshot times, in {seconds:.1f} s"
    )
    if labelled:
        console.print(
            f"labelled rows: {labelled:,}, dropout label rate {positives / labelled:.1%}; "
            f"unlabelled (horizon past the data): {rows - labelled:,}"
        )
    return rows
