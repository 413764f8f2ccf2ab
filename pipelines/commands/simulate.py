"""`notalone simulate-term`: a term of weekly lists on the synthetic school with simulated curators;
the hold-out's effect measure against the known truth (pipelines/simulate_steps.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from configs.schema import Config
from features.sources import write_text_atomic
from pipelines.commands.common import activate, stderr
from pipelines.runner import Steps
from pipelines.simulate_steps import SIMULATION_FILE, simulate_term_steps

LOG_WIDTH = 140


def _pts(x: float | None, sign: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x * 100:+.1f}" if sign else f"{x * 100:.1f}"


def _interval(value, low, high) -> str:
    if value is None:
        return "-"
    return f"{_pts(value)} [{_pts(low)}, {_pts(high)}]"


def run_simulate_term(
    *,
    config: Config,
    out: Path | None = None,
    model_uri: str | None = None,
    as_json: bool = False,
) -> dict[str, Any]:
    """Run the term, write simulation.json into its folder, print the tables (or the JSON)."""
    workspace = activate()
    sim = config.simulation
    root = out or workspace.root / "simulations" / f"term-n{sim.students}-s{sim.seed}"
    root = Path(root).expanduser().resolve()
    console = stderr()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} weeks"),
        TimeElapsedColumn(),
        console=console,
        transient=as_json,
    ) as bar:
        task = bar.add_task("simulate-term: preparing", total=sim.weeks)

        def say(message: str) -> None:
            bar.update(task, description=f"simulate-term: {message}"[:90])

        def on_week(done: int, total: int, row: dict[str, Any]) -> None:
            bar.update(
                task,
                completed=done,
                description=f"simulate-term: week {row['as_of']} scored, "
                f"{row['listed']} listed, {row['contacted']} contacted",
            )

        result = simulate_term_steps(
            config=config,
            root=root,
            steps=Steps(progress=say),
            model_uri=model_uri,
            on_week=on_week,
        )
    write_text_atomic(root / SIMULATION_FILE, json.dumps(result, indent=2, default=str))
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        return result
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    out = Console()
    if not out.is_terminal:  # logs and pipes: rich would wrap the tables at 80 columns
        out = Console(width=LOG_WIDTH)
    weeks = Table(
        title=f"simulated term: {result['students']:,} students (seed {result['seed']}), "
        f"{result['control_share']:.0%} held out, curators write to "
        f"{result['contact_rate']:.0%} of each list"
    )
    for header in ("week", "active", "listed", "control out", "drawn listed", "drawn control"):
        weeks.add_column(header, justify="right", no_wrap=True)
    weeks.add_column("contacted", justify="right")
    weeks.add_column("s", justify="right")
    for row in result["weeks"]:
        weeks.add_row(
            row["as_of"],
            *(
                str(row[k])
                for k in ("active", "listed", "control_out", "drawn_listed", "drawn_control")
            ),
            str(row["contacted"]),
            f"{row['seconds']:.1f}",
        )
    out.print(weeks)

    o, truth = result["overall"], result["truth"]
    level = f"{result['confidence']:.0%}"
    effect = Table(
        title=f"dropout within the horizon, outcomes known at {result['outcomes_as_of'][:10]}"
    )
    effect.add_column("")
    effect.add_column("measured (listed - control)", justify="right")
    effect.add_column("truth (with - without lists)", justify="right")
    effect.add_column(f"truth in the {level} interval", justify="right")
    effect.add_row(
        "arms",
        f"listed {o['n_listed']:,} ({_pts(o['rate_listed'], False)} %), control "
        f"{o['n_control']:,} ({_pts(o['rate_control'], False)} %)",
        f"listed {_pts(truth['listed']['rate_with_lists'], False)} % vs "
        f"{_pts(truth['listed']['rate_without'], False)} % without",
        "",
    )
    effect.add_row(
        "intention to treat, points",
        _interval(o["effect"], o["low"], o["high"]),
        _pts(o["true_effect"]),
        _yes(o["truth_in_interval"]),
    )
    rate = "-" if o["contact_rate"] is None else f"{o['contact_rate']:.0%}"
    effect.add_row(
        f"per contacted student ({rate} contacted)",
        _interval(o["per_contacted"], o["per_contacted_low"], o["per_contacted_high"]),
        _pts(o["true_per_contacted"]),
        _yes(o["truth_in_per_contacted_interval"]),
    )
    effect.add_row("detectable now, points", _pts(o["mde"], False), "", "")
    effect.add_row(
        "strata of the draw counted",
        f"{o.get('strata', 1)} ({o.get('dropped', 0):,} enrolments in "
        f"{o.get('strata_dropped', 0)} strata without both arms left out)",
        "",
        "",
    )
    effect.add_row(
        "control arm with - without", "", _pts(truth["control"]["effect"]), "(must be 0)"
    )
    out.print(effect)
    out.print(f"verdict: [bold]{o['verdict']}[/bold]  (planted: {result['planted']})")
    out.print(f"{result['seconds']:.0f} s; folder {result['folder']}", soft_wrap=True)


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "NO")
