"""`notalone generate`: simulate a synthetic school and write it as a source, atomically.

The simulation and the chunked writer live in `features.synthetic`; this module adds what a command
needs: a safe target folder, a progress bar over blocks and a short summary.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from configs.schema import Config
from features.errors import NotaloneError
from features.sources import atomic_dir
from features.synthetic import (
    SCHOOL_FILE,
    SchoolSummary,
    partition_events_by_course,
    write_school,
)


def _check_target(out: Path) -> None:
    """Refuse to replace anything but an earlier generated school (or an empty folder)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise NotaloneError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()) and not (out / SCHOOL_FILE).is_file():
        raise NotaloneError(
            f"--out {out} is a non-empty folder that is not a generated school "
            f"(no {SCHOOL_FILE}); refusing to replace it. Choose a new or empty folder."
        )


def run_generate(
    students: int, out: Path, seed: int, config: Config, partition_events: bool = False
) -> None:
    """Generate `students` students into `out`: all of it appears at once, or nothing does.

    `partition_events` writes the events hive-partitioned by course run (one folder per run).
    """
    if students < 1:
        raise NotaloneError("--students must be at least 1")
    out = Path(out)
    _check_target(out)
    console = Console()
    columns = (
        TextColumn("[bold]generating[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks, {task.fields[events]:,} events"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{students:,} students", total=None, events=0)

        def on_progress(done: int, total: int, events: int) -> None:
            progress.update(task, completed=done, total=total, events=events)

        with atomic_dir(out) as tmp:
            summary = write_school(tmp, students, seed, config.generator, on_progress)
            if partition_events:
                progress.update(task, description="partitioning events by course run")
                partition_events_by_course(tmp)
    elapsed = time.perf_counter() - started
    console.print(_summary_table(summary, out, elapsed))


def _summary_table(s: SchoolSummary, out: Path, elapsed: float) -> Table:
    table = Table(title=f"synthetic school -> {out}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("students", f"{s.students:,} (seed {s.seed})")
    table.add_row("enrollments", f"{s.enrollments:,}")
    table.add_row(
        "course runs",
        f"{s.course_runs} ({s.runs_finished} finished, {s.runs_in_progress} in progress)",
    )
    table.add_row(
        "curators",
        f"{s.curators} (groups of {s.curator_group_min}-{s.curator_group_max}), "
        f"{s.mentors} mentors",
    )
    table.add_row("events", f"{s.events:,}")
    table.add_row("past curator contacts", f"{s.interventions:,}")
    formal = s.formal_dropouts / s.dropouts if s.dropouts else 0.0
    table.add_row(
        "dropouts",
        f"{s.dropouts:,} = {s.dropout_share:.1%} of enrollments "
        f"({s.formal_dropouts:,} formal = {formal:.0%}, {s.silent_dropouts:,} silent)",
    )
    table.add_row("data end", f"{s.data_end} (latest event {s.max_event_ts})")
    rate = s.events / elapsed if elapsed > 0 else float("inf")
    table.add_row("time", f"{elapsed:.1f} s, {rate:,.0f} events/s")
    return table
