"""`notalone score`: the week's lists, under the per-week lock, and where they are."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from configs.schema import Config
from pipelines.commands.common import activate, stderr
from pipelines.dask_store import cluster_for
from pipelines.locks import workspace_lock
from pipelines.runner import WARNING_PREFIX, Steps
from pipelines.schedule import parse_as_of
from pipelines.score_steps import output_folder, score_steps


def run_score(
    *,
    source: str | Path,
    as_of: str | datetime,
    config: Config,
    model_uri: str | None = None,
    out: str | Path | None = None,
    use_prefect: bool = False,
    dask: str | None = None,
) -> dict[str, Any]:
    """Score the week, write the outputs, print where they are. With `dask` (or
    `dask.scheduler`), risk and contributions are computed on that cluster's workers."""
    workspace = activate()
    err = stderr()
    when = parse_as_of(as_of)

    def progress(message: str) -> None:
        style = "yellow" if message.startswith(WARNING_PREFIX) else "dim"
        err.print(f"[{style}]{message}[/{style}]")

    week = output_folder(out, when, workspace)
    # Two scorers of the same week would interleave files: the second waits, then stops.
    lock_name = "score-" + hashlib.sha256(str(week).encode()).hexdigest()[:16]
    with (
        workspace_lock(
            workspace.locks,
            lock_name,
            config.scoring.lock_wait_seconds,
            on_wait=lambda m: err.print(f"[yellow]{m}[/yellow]"),
        ),
        cluster_for(dask, config) as address,
    ):
        if use_prefect:
            from pipelines.flows import on_cluster, reporting, score_flow

            with reporting(progress):
                result = on_cluster(score_flow, address)(
                    source=str(source),
                    as_of=when.isoformat(),
                    model_uri=model_uri,
                    out=str(out) if out is not None else None,
                    config=config,
                    dask=address,
                )
        else:
            result = score_steps(
                source=source,
                as_of=when,
                config=config,
                workspace=workspace,
                steps=Steps(progress=progress),
                model_uri=model_uri,
                out=out,
                dask=address,
            ).result
    print_summary(result)
    return result


def print_summary(result: dict[str, Any]) -> None:
    console = Console()
    console.print(
        f"[bold green]scored[/bold green] week of {str(result.get('as_of', ''))[:10]}: "
        f"{result.get('students', 0):,} active enrollments, {result.get('listed', 0):,} listed "
        f"for {result.get('curators', 0):,} curators "
        f"({result.get('triggered_listed', 0):,} rule triggers, "
        f"{result.get('held_back_cooldown', 0):,} held back after a recent contact)"
    )
    for key in ("curators_dir", "report", "ranking"):
        if result.get(key):
            console.print(f"  {key.replace('_dir', '')}: {result[key]}")
    drift = result.get("drift") or {}
    if drift.get("has_reference") and not drift.get("drifted"):
        console.print(
            f"  drift: none of {drift.get('checked', 0)} checked inputs differ from the training "
            f"data (max PSI {drift.get('max_psi') or 0:.2f}, threshold {drift.get('threshold')})"
        )
    for warning in result.get("warnings") or ():
        console.print(f"  [yellow]warning:[/yellow] {warning}")
