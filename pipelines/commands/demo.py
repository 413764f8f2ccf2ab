"""`notalone demo`: the whole weekly job on a synthetic school, in one command.

Steps: generate the school into the workspace (reused when the same size and seed exist), start
Prefect, train and register a champion through the train flow (skipped when the champion was
trained on exactly this data), score the latest complete week through the score flow, and print
where the curator lists and the report are and how to open the MLflow and Prefect UIs.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from configs.schema import Config
from features.errors import NotaloneError
from pipelines import mlflow_store
from pipelines.commands.common import activate
from pipelines.feature_cache import source_fingerprint
from pipelines.mlflow_store import ChampionInfo
from pipelines.schedule import latest_week
from pipelines.settings import DEFAULT_HOME, HOME_ENV, Workspace

# Libraries that log chatty INFO lines (database creation, temporary servers) during the demo.
QUIET_LOGGERS = ("mlflow", "alembic")
PREFECT_LOG_LEVEL_ENV = "PREFECT_LOGGING_LEVEL"


def school_matches(folder: Path, students: int, seed: int) -> bool:
    """True when `folder` holds a generated school of this size and seed."""
    from features.synthetic import read_school_info

    try:
        info = read_school_info(folder)
    except (OSError, ValueError):
        return False
    return info.get("students") == students and info.get("seed") == seed


def ensure_school(
    folder: Path, students: int, seed: int, config: Config, progress: Progress
) -> tuple[dict, bool]:
    """The demo school in `folder`: reused when it matches, else generated atomically."""
    from features.sources import atomic_dir
    from features.synthetic import read_school_info, write_school

    step = _step(progress, f"school: {students:,} students")
    if school_matches(folder, students, seed):
        _done(progress, step, f"school: reusing {students:,} students (seed {seed})")
        return read_school_info(folder), True

    def on_progress(done: int, total: int, events: int) -> None:
        progress.update(
            step, description=f"school: generating {students:,} students, {events:,} events"
        )

    with atomic_dir(folder) as tmp:
        write_school(tmp, students, seed, config.generator, on_progress=on_progress)
    _done(progress, step, f"school: generated {students:,} students (seed {seed})")
    return read_school_info(folder), False


def _quiet_libraries() -> None:
    # MLflow resets its logger level from this variable when it is imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _step(progress: Progress, description: str):
    return progress.add_task(description, total=None)


def _done(progress: Progress, task_id, description: str) -> None:
    progress.update(task_id, description=description, total=1, completed=1)


def _watcher(progress: Progress, task_id, prefix: str):
    return lambda message: progress.update(task_id, description=f"{prefix}: {message}")


def _champion(config: Config) -> ChampionInfo | None:
    return mlflow_store.champion_info(mlflow_store.connect(), config.registry.model_name)


def _ensure_champion(progress: Progress, flows, source: Path, config: Config):
    """(train flow result or None, champion): train unless the champion learnt this school."""
    step = _step(progress, "champion: checking MLflow")
    champion = _champion(config)
    if champion is not None and champion.source_fingerprint == source_fingerprint(source):
        message = f"champion: version {champion.version} was trained on this school; reused"
        _done(progress, step, message)
        return None, champion
    progress.update(step, description="train flow")
    with flows.reporting(_watcher(progress, step, "train flow")):
        trained = flows.train_flow(source=str(source), config=config)
    champion = _champion(config)
    aliases = ", ".join(trained["aliases"]) or "no alias"
    _done(progress, step, f"train flow: version {trained['version']} ({aliases})")
    if champion is None:
        raise NotaloneError("training finished but no champion is registered")
    return trained, champion


def _score_latest_week(progress: Progress, flows, source: Path, config: Config):
    """(as-of time, score flow result) for the latest complete week of the school."""
    step = _step(progress, "score flow: finding the latest complete week")
    as_of = latest_week(source, config)
    with flows.reporting(_watcher(progress, step, f"score flow ({as_of.date()})")):
        scored = flows.score_flow(source=str(source), as_of=as_of.isoformat(), config=config)
    _done(progress, step, f"score flow: week of {as_of.date()} scored")
    return as_of, scored


def run_demo(students: int | None, config: Config) -> dict[str, Any]:
    """Generate (or reuse), train (or reuse the champion), score the latest week; print where."""
    # Step messages reach the Prefect UI (the terminal shows them through the progress display).
    os.environ.setdefault(PREFECT_LOG_LEVEL_ENV, "INFO")
    workspace = activate()
    started = time.perf_counter()
    students = students or config.demo.students
    seed = config.demo.seed
    source = workspace.data / config.demo.folder
    err = Console(stderr=True)
    columns = (
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    _quiet_libraries()
    with Progress(*columns, console=err, transient=False) as progress:
        school, reused = ensure_school(source, students, seed, config, progress)

        step = _step(progress, "Prefect: starting a local server (first run: ~30 s)")
        from pipelines import flows, prefect_store

        # Progress is shown here; Prefect's own run logs go to its database (and UI) only.
        restore_logs = prefect_store.quiet_console_logs()
        try:
            api = prefect_store.ensure_api()
            _done(progress, step, f"Prefect: {api}")
            trained, champion = _ensure_champion(progress, flows, source, config)
            as_of, scored = _score_latest_week(progress, flows, source, config)
        finally:
            restore_logs()

    links = {}
    if config.workspace_app.publish:
        from pipelines.commands.workspace_app import demo_links

        ranking = pd.read_parquet(scored["ranking"], columns=["curator_id", "listed"])
        first = sorted(ranking.loc[ranking["listed"], "curator_id"].astype(str).unique())
        if first:
            links = demo_links(config, first[0])
    seconds = time.perf_counter() - started
    summary = {
        "source": str(source),
        "school_reused": reused,
        "students": school.get("students"),
        "trained": trained is not None,
        "train": trained,
        "champion_version": champion.version,
        "as_of": as_of.isoformat(),
        "score": scored,
        "seconds": seconds,
        "workspace": str(workspace.root),
        "links": links,
    }
    print_summary(summary, workspace, as_of)
    return summary


def _ui_prefix(workspace: Workspace) -> str:
    """`NOTALONE_HOME=... ` when the UIs would otherwise open a different workspace."""
    default = Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
    cwd_default = Path(DEFAULT_HOME).resolve()
    if workspace.root == cwd_default and default == cwd_default:
        return ""
    return f"NOTALONE_HOME={workspace.root} "


def print_summary(summary: dict[str, Any], workspace: Workspace, as_of: datetime) -> None:
    console = Console()
    scored = summary["score"]
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    school = "reused" if summary["school_reused"] else "generated"
    table.add_row("school", f"{summary['source']} ({summary['students']:,} students, {school})")
    trained = "trained now" if summary["trained"] else "reused: trained on this school"
    table.add_row("champion", f"notalone-dropout version {summary['champion_version']} ({trained})")
    table.add_row("week scored", f"as of {as_of.date()} ({scored.get('students', 0):,} students)")
    table.add_row("curator lists", f"{scored['curators_dir']} ({scored.get('curators', 0)} files)")
    table.add_row("report", str(scored["report"]))
    table.add_row("ranking", str(scored["ranking"]))
    table.add_row("Prefect", f"flow runs and artifacts in {workspace.prefect_home}")
    table.add_row("MLflow", workspace.tracking_uri)
    console.print()
    console.print(f"[bold green]demo done[/bold green] in {summary['seconds']:.0f} s")
    console.print(table)
    prefix = _ui_prefix(workspace)
    console.print()
    console.print("Open the UIs (they bind to 127.0.0.1):")
    console.print(f"  {prefix}notalone ui mlflow   # runs, metrics, models", soft_wrap=True)
    console.print(f"  {prefix}notalone ui prefect  # flow runs, curator lists", soft_wrap=True)
    links = summary.get("links") or {}
    if links:
        console.print()
        console.print(
            f"The curator workspace: start it with `{prefix}notalone app`, then open (each link "
            "works once):"
        )
        for who, link in links.items():
            role = "the lead" if who == "lead" else f"curator {who}"
            console.print(f"  as {role}: {link}", soft_wrap=True)
