"""`notalone train`, `compare` and `promote`: what they print, and the runner they choose."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from configs.schema import Config
from features.errors import NotaloneError
from features.sources import write_text_atomic
from models.evaluation import top_label
from models.train import SCORERS
from pipelines import mlflow_store as store
from pipelines.commands.common import activate, progress_line, run_steps, stderr
from pipelines.dask_store import cluster_for
from pipelines.summaries import compare_table, format_number, markdown_table, metric_rows
from pipelines.train_steps import train_steps


def print_result(result: dict, config: Config, console: Console) -> None:
    table = Table(
        title=f"test period {result['split']['test']['as_of_min'][:10]} .. "
        f"{result['split']['test']['as_of_max'][:10]}"
    )
    table.add_column("metric")
    for name in SCORERS:
        table.add_column(name, justify="right")
    for key, label in metric_rows(config):
        table.add_row(label, *(format_number(result["metrics"][name].get(key)) for name in SCORERS))
    console.print(table)
    if result.get("choice"):
        style = "yellow" if result.get("model_loses") else "green"
        console.print(f"[{style}]{result['choice']}[/{style}]")
    if result.get("served"):
        console.print(result["served"])
    decision = result["promotion"]
    console.print(
        f"run [bold]{result['run_id']}[/bold] · {result['model_name']} version "
        f"[bold]{result['version']}[/bold] · aliases: {', '.join(result['aliases'])} · "
        f"{decision['reason']}"
    )


def run_train(
    *,
    source: Path,
    config: Config,
    experiment: str | None = None,
    as_json: bool = False,
    use_prefect: bool = False,
    dask: str | None = None,
) -> dict:
    """Train, evaluate, log and register; print a table (or JSON with --json) and return it.

    With `dask` (or `dask.scheduler`), validation and features run on that cluster, and the
    trees grow there when the training rows reach `dask.train_min_rows`; with `use_prefect`
    too, every step of the train flow is a task on it (prefect-dask's DaskTaskRunner)."""
    workspace = activate()
    source = Path(source)
    flow = None
    if use_prefect:
        from pipelines.flows import train_flow as flow
    # Anything a library prints goes to stderr, so that stdout holds only the result (JSON).
    with (
        cluster_for(dask, config) as address,
        contextlib.redirect_stdout(sys.stderr),
        progress_line(stderr(), "training") as progress,
    ):
        if flow is not None and address:
            from pipelines.flows import on_cluster

            flow = on_cluster(flow, address)
        result = run_steps(
            train_steps,
            flow=flow,
            flow_args={
                "source": str(source),
                "config": config,
                "experiment": experiment,
                "dask": address,
            },
            progress=progress,
            source=source,
            config=config,
            workspace=workspace,
            experiment=experiment,
            dask=address,
        )
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        sys.stdout.flush()
    else:
        print_result(result, config, Console())
    return result


def run_compare(
    *, experiment: str | None, last: int | None, out: Path | None, config: Config
) -> pd.DataFrame:
    """Print recent training runs (model vs baselines) and write compare.csv + compare.md."""
    workspace = activate()
    client = store.connect(workspace)
    name = experiment or config.registry.experiment
    runs = store.recent_training_runs(client, name, last or config.registry.compare_last)
    if not runs:
        raise NotaloneError(f"experiment {name!r} has no training runs yet")
    champion = store.alias_version(client, config.registry.model_name, store.CHAMPION)
    table = compare_table(runs, champion, config.registry.model_name, config)
    folder = Path(out) if out is not None else workspace.outputs / "compare"
    write_text_atomic(folder / "compare.csv", table.to_csv(index=False))
    write_text_atomic(folder / "compare.md", f"# Training runs: {name}\n\n" + markdown_table(table))

    top = top_label(config.evaluation.top_share)
    shown = Table(
        title=f"recent training runs in {name!r}; champion: version {champion or '-'}",
        caption="metric cells: model / rule / logistic on the run's test rows",
    )
    for col in ("started", "ver", "champ", "test window"):
        shown.add_column(col, no_wrap=True)
    metrics = ("pr_auc", "roc_auc", "brier", f"precision_{top}")
    for metric in metrics:
        shown.add_column(metric, justify="right", no_wrap=True)
    for record in table.to_dict("records"):
        cells = [str(record[c]) for c in ("started", "version", "champion", "test_window")]
        for metric in metrics:
            cells.append("/".join(format_number(record.get(f"{s}_{metric}")) for s in SCORERS))
        shown.add_row(*cells)
    console = Console()
    console.print(shown)
    console.print(f"wrote {folder / 'compare.csv'} and {folder / 'compare.md'}")
    return table


def run_promote(*, version: str, reason: str, by: str | None, config: Config) -> dict:
    """Move `champion` to VERSION by hand; record who, why and when in version tags."""
    workspace = activate()
    client = store.connect(workspace)
    name = config.registry.model_name
    version = str(version)
    store.check_version(client, name, version)
    who = by or getpass.getuser()
    previous = store.alias_version(client, name, store.CHAMPION)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    store.set_alias(client, name, store.CHAMPION, version)
    store.tag_version(
        client,
        name,
        version,
        {
            "promoted_by": who,
            "promoted_reason": reason,
            "promoted_at": now,
            "promoted_from_version": previous or "none",
        },
    )
    if previous and previous != version:
        store.tag_version(
            client,
            name,
            previous,
            {"demoted_by": who, "demoted_reason": reason, "demoted_at": now},
        )
    Console().print(
        f"{name} version [bold]{version}[/bold] is now champion "
        f"(was {previous or 'none'}); by {who}: {reason}"
    )
    return {
        "model_name": name,
        "version": version,
        "previous": previous,
        "by": who,
        "reason": reason,
    }
