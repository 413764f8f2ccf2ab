"""`notalone ingest oulad`: read OULAD, map it into the contract, write the source atomically."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer

from configs.schema import Config
from features.contract import EventType
from features.oulad import (
    PRE_COURSE_ATTR,
    OuladContract,
    oulad_to_contract,
    read_oulad,
    withdrawal_rate,
)
from features.sources import atomic_dir, write_source_info, write_table


def run_ingest_oulad(path: Path, out: Path, config: Config) -> None:
    """Convert the OULAD folder `path` into a contract source at `out` and print a summary."""
    started = time.perf_counter()
    raw = read_oulad(Path(path), config.oulad)
    contract = oulad_to_contract(raw, config.oulad)
    with atomic_dir(out) as tmp:
        for name, frame in contract.tables().items():
            write_table(tmp, name, frame)
        write_source_info(tmp, contract.source_info())
    print_summary(contract, Path(out), time.perf_counter() - started)


def print_summary(contract: OuladContract, out: Path, seconds: float) -> None:
    """What was written, what was dropped and why, and the facts the feature builder relies on."""
    events = contract.events
    submits = int((events["event_type"] == EventType.ASSIGNMENT_SUBMIT).sum())
    clicks = len(events) - submits
    enrollments = contract.enrollments
    unenrolled = enrollments["unenrolled_at"]
    start = enrollments["course_id"].map(contract.courses.set_index("course_id")["start_at"])
    after_start = float((unenrolled > start).mean()) if len(enrollments) else float("nan")
    echo = typer.echo
    echo(f"OULAD -> {out} in {seconds:.1f} s")
    echo(f"  courses:            {len(contract.courses):>9,}")
    echo(f"  enrollments:        {len(enrollments):>9,}")
    echo(f"  assignments:        {len(contract.assignments):>9,}")
    echo(f"  submission events:  {submits:>9,}")
    echo(
        f"  click events:       {clicks:>9,}  (courses with clicks: "
        f"{', '.join(contract.click_courses) or 'none'})"
    )
    echo(
        f"  withdrawal rate:    {withdrawal_rate(enrollments):>9.1%}  "
        f"(unenrolled on day 0 or later: {after_start:.1%})"
    )
    pre_course = (
        "joined" if PRE_COURSE_ATTR in enrollments.columns else "no pre-course file: omitted"
    )
    echo(f"  {PRE_COURSE_ATTR}: {pre_course}")
    echo("  dropped rows:" + ("" if contract.dropped else " none"))
    for reason, count in contract.dropped.items():
        echo(f"    {count:>9,}  {reason}")
    echo("  kept, worth knowing:")
    for fact, count in contract.notes.items():
        echo(f"    {count:>9,}  {fact}")


def run_ingest_moodle(*, dsn: str, prefix: str | None, out: Path, config_path: Path | None) -> dict:
    """Read a Moodle database into the contract at `out`; later runs append only new log rows."""
    from pipelines.moodle_steps import ingest_moodle, load_moodle_config

    config = load_moodle_config(config_path)
    summary = ingest_moodle(
        dsn=dsn,
        prefix=config.moodle.prefix if prefix is None else prefix,
        out=out,
        config=config,
        progress=lambda msg: typer.echo(f"  ... {msg}", err=True),
    )
    print_moodle_summary(summary, typer.echo)
    return summary


def print_moodle_summary(summary: dict, echo: Callable[[str], None]) -> None:
    """A short report of one ingest: what was read, written and dropped."""
    ids = summary["log_id_range"]
    echo(f"Moodle -> {summary['out']} in {summary['seconds']:.1f} s")
    echo(f"  courses:        {summary['courses']:>11,}")
    echo(f"  enrollments:    {summary['enrollments']:>11,}")
    echo(f"  assignments:    {summary['assignments']:>11,}")
    echo(f"  submissions:    {summary['submissions']:>11,}")
    span = f"ids {ids[0]:,}..{ids[1]:,}" if ids else "no new rows"
    echo(f"  log rows read:  {summary['log_rows_read']:>11,}  ({span})")
    echo(f"  events written: {summary['events_written']:>11,}  (part {summary['new_part']})")
    for kind, count in summary["log_events_by_type"].items():
        echo(f"    {count:>11,}  {kind}")
    echo("  dropped rows:" + ("" if summary["dropped"] else " none"))
    for reason, count in summary["dropped"].items():
        echo(f"    {count:>11,}  {reason}")
