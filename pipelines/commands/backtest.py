"""`notalone backtest`: how the weekly lists of a past range would have done."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from configs.schema import Config
from pipelines.backtest_report import OVERALL_LABELS
from pipelines.backtest_steps import backtest_steps
from pipelines.commands.common import activate, progress_line, stderr
from pipelines.dask_store import cluster_for
from pipelines.runner import Steps
from pipelines.schedule import parse_as_of
from pipelines.summaries import format_number

LOG_WIDTH = 140
# (column of the weekly table, short header): the terminal shows the main ones; weekly.csv has all.
WEEKLY_COLUMNS = (
    ("as_of", "week"),
    ("students", "active"),
    ("listed", "listed"),
    ("roc_auc", "ROC"),
    ("pr_auc", "PR"),
    ("precision_at_capacity", "prec@cap"),
    ("recall_at_capacity", "rec@cap"),
    ("already_gone_share_of_slots", "gone"),
    ("triggered_share", "trig"),
    ("churn", "churn"),
    ("drift_warning", "drift"),
)


def run_backtest(
    *,
    source: Path,
    start: str,
    end: str,
    every_days: int,
    config: Config,
    model_uri: str | None = None,
    assume_contacted: bool = False,
    out: Path | None = None,
    as_json: bool = False,
    dask: str | None = None,
) -> dict:
    """Replay, measure, write the tables and the page, record in MLflow; print the result.
    With `dask` (or `dask.scheduler`) the features and the risks are computed on that cluster."""
    workspace = activate()
    with cluster_for(dask, config) as address, progress_line(stderr(), "backtest") as progress:
        result = backtest_steps(
            source=source,
            config=config,
            workspace=workspace,
            steps=Steps(progress=progress),
            start=parse_as_of(start),
            end=parse_as_of(end),
            every_days=every_days,
            model_uri=model_uri,
            assume_contacted=assume_contacted,
            out=out,
            dask=address,
        )
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return result
    console = Console()
    if not console.is_terminal:  # logs and pipes: rich would wrap the table at 80 columns
        console = Console(width=LOG_WIDTH)
    weekly = Table(title=f"backtest {result['from']} .. {result['to']}, every {every_days} days")
    for _, header in WEEKLY_COLUMNS:
        weekly.add_column(header, justify="right", no_wrap=True)
    for row in result["weekly"]:
        cells = [format_number(row.get(c), decimals=2) for c, _ in WEEKLY_COLUMNS[1:]]
        weekly.add_row(str(row["as_of"])[:10], *cells)
    console.print(weekly)
    overall = Table(show_header=False, title="overall")
    for key, label in OVERALL_LABELS.items():
        overall.add_row(label, format_number(result["overall"].get(key)))
    console.print(overall)
    for warning in result.get("warnings") or ():
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
    seconds = sum(result["seconds"].values())
    console.print(f"report: {result['report']}", soft_wrap=True)
    console.print(f"MLflow run {result['mlflow_run_id']} (kind backtest), {seconds:.0f} s of steps")
    return result
