"""`notalone validate`: run the contract check on a source and print what is wrong, compactly.

The check itself lives in `features.validate`; this module times it, prints a table of problems
with example rows and a one-line verdict, and turns the report into an exit code (2 on errors).
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table
from rich.text import Text

from configs.schema import Config
from features.errors import NotaloneError
from features.validate import ERROR, ValidationReport, validate_source
from pipelines.checks import validate_on_cluster
from pipelines.dask_store import cluster_for
from pipelines.settings import Workspace

EXIT_ERRORS = 2
# Rich wraps at 80 columns when output is not a terminal (CI logs, pipes); logs can be wider.
LOG_WIDTH = 160
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


def run_validate(source: Path, config: Config, dask: str | None = None) -> int:
    """Validate `source`, print the problems and a verdict; 2 when there are errors, else 0.
    With `dask` (or `dask.scheduler`) the check runs partitioned by course run on that cluster
    (the same report)."""
    workspace = Workspace.resolve()
    workspace.tmp.mkdir(parents=True, exist_ok=True)  # DuckDB spills here on large sources
    started = time.perf_counter()
    try:
        with cluster_for(dask, config) as address:
            if address:
                report = validate_on_cluster(source, config, address, workspace.tmp)
            else:
                report = validate_source(source, config.validation, temp_dir=workspace.tmp)
    except duckdb.Error as exc:  # the check turns read errors into problems; this is a backstop
        raise NotaloneError(f"cannot validate {source}: {exc}") from exc
    seconds = time.perf_counter() - started
    console = Console()
    if not console.is_terminal:
        console = Console(width=LOG_WIDTH)
    print_report(report, console, seconds)
    return EXIT_ERRORS if report.errors else 0


def print_report(report: ValidationReport, console: Console, seconds: float) -> None:
    """Row counts, a table of problems, their example rows, then a one-line verdict."""
    sizes = ", ".join(f"{name} {rows:,}" for name, rows in report.rows.items())
    console.print(Text(f"source {report.source}: {sizes or 'no readable tables'}"))
    if report.problems:
        console.print(problem_table(report))
        print_examples(report, console)
    verdict = Text()
    n_err, n_warn = len(report.errors), len(report.warnings)
    warnings = f"{n_warn} warning{'s' * (n_warn != 1)}"
    if n_err:
        verdict.append("FAILED", style="bold red")
        verdict.append(
            f": {n_err} error{'s' * (n_err != 1)}, {warnings} in {seconds:.1f} s; "
            "fix the errors before building features or scoring"
        )
    else:
        verdict.append("OK", style="bold green")
        verdict.append(f": the source meets the contract ({warnings}) in {seconds:.1f} s")
    console.print(verdict)


def problem_table(report: ValidationReport) -> Table:
    table = Table(title="Contract problems", show_lines=False, expand=False)
    table.add_column("severity", no_wrap=True)
    table.add_column("table", no_wrap=True)
    table.add_column("column", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("message", overflow="fold")
    for p in report.problems:
        table.add_row(
            Text(p.severity, style=SEVERITY_STYLE[p.severity]),
            Text(p.table),
            Text(p.column or "-"),
            Text(p.check),
            f"{p.count:,}",
            Text(p.message),
        )
    return table


def print_examples(report: ValidationReport, console: Console) -> None:
    """Example rows as `column=value` lines under the problem they illustrate."""
    for p in report.problems:
        if not p.examples:
            continue
        head = Text(f"{p.where} {p.check}", style="red" if p.severity == ERROR else "yellow")
        head.append(f" ({len(p.examples)} of {p.count:,} rows):", style="default")
        console.print(head)
        for row in p.examples:
            line = "  ".join(f"{key}={value!s}" for key, value in row.items())
            console.print(Text(f"  {line}"), overflow="ellipsis", no_wrap=True)
