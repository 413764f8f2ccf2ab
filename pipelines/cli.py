"""The `notalone` command line: typer only. Each command parses its options and calls its
function in `pipelines.commands`.

Heavy imports (pandas, LightGBM, MLflow, Prefect) happen inside the commands so `--help` is fast.
Every user error (bad data, bad config, missing model) ends with a clear message and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="notalone",
    help="Early-warning system for online schools: who is drifting away, why, what to do first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ingest_app = typer.Typer(help="Convert an external dataset into the progress-log contract.")
app.add_typer(ingest_app, name="ingest")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML file merged over configs/default.yaml.")
]
DaskOpt = Annotated[
    str | None,
    typer.Option(
        "--dask",
        help="Run on a Dask cluster: tcp://HOST:PORT (an existing scheduler) or local:N (a local "
        "cluster of N one-thread workers). Default: dask.scheduler in the config, else no Dask.",
    ),
]
PrefectOpt = Annotated[
    bool,
    typer.Option(
        "--prefect",
        help="Run as a Prefect flow, recorded in Prefect (PREFECT_API_URL, else a temporary "
        "local server: ~20-35 s more). Default: the same steps directly, no server.",
    ),
]
# Kept so that scripts written for the earlier default keep working: steps run directly anyway.
NoPrefectOpt = Annotated[bool, typer.Option("--no-prefect", hidden=True)]
SourceOpt = Annotated[
    Path, typer.Option("--source", help="Source folder in the progress-log contract.")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def user_errors(func):
    """Turn known user errors into a message on stderr and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from configs.schema import ConfigError
        from features.errors import NotaloneError

        try:
            return func(*args, **kwargs)
        except (NotaloneError, ConfigError) as exc:
            raise fail(str(exc), getattr(exc, "exit_code", 2)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def load(config: Path | None):
    from configs import load_config

    return load_config(config)


@app.command()
@user_errors
def generate(
    students: Annotated[int, typer.Option("--students", min=1, help="Number of students.")] = 5000,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the source into.")] = Path(
        "school"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same school).")] = 0,
    config: ConfigOpt = None,
    partition_events: Annotated[
        bool,
        typer.Option(
            "--partition-events",
            help="Write events hive-partitioned by course run (events/course_id=ID/*.parquet).",
        ),
    ] = False,
) -> None:
    """Generate a synthetic school in the progress-log contract."""
    from pipelines.commands.generate import run_generate

    run_generate(
        students=students,
        out=out,
        seed=seed,
        config=load(config),
        partition_events=partition_events,
    )


@ingest_app.command("oulad")
@user_errors
def ingest_oulad(
    path: Annotated[Path, typer.Option("--path", help="Folder with the OULAD CSV files.")] = Path(
        "../shared/data/oulad"
    ),
    out: Annotated[Path, typer.Option("--out", help="Folder to write the source into.")] = Path(
        "oulad"
    ),
    config: ConfigOpt = None,
) -> None:
    """Convert the Open University Learning Analytics Dataset into the contract."""
    from pipelines.commands.ingest import run_ingest_oulad

    run_ingest_oulad(path=path, out=out, config=load(config))


@ingest_app.command("moodle")
@user_errors
def ingest_moodle(
    dsn: Annotated[str, typer.Option("--dsn", help="PostgreSQL URL of the Moodle database.")],
    out: Annotated[Path, typer.Option("--out", help="Folder of the source (updated in place).")],
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Moodle table prefix (default: mdl_).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Read a Moodle database into the contract; later runs append only new log rows.

    --config is merged over configs/moodle.yaml (the event map and roles)."""
    from pipelines.commands.ingest import run_ingest_moodle

    run_ingest_moodle(dsn=dsn, prefix=prefix, out=out, config_path=config)


@app.command()
@user_errors
def validate(source: SourceOpt, config: ConfigOpt = None, dask: DaskOpt = None) -> None:
    """Check a source against the contract; exit 2 when it has errors."""
    from pipelines.commands.validate import run_validate

    code = run_validate(source=source, config=load(config), dask=dask)
    if code:
        raise typer.Exit(code)


@app.command()
@user_errors
def features(
    source: SourceOpt,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="One snapshot at this time (ISO date), for scoring."),
    ] = None,
    all_snapshots: Annotated[
        bool, typer.Option("--all", help="Every weekly snapshot with labels, for training.")
    ] = False,
    config: ConfigOpt = None,
    no_validate: Annotated[
        bool,
        typer.Option(
            "--no-validate",
            help="Skip the contract check and take the source as clean: exact duplicate "
            "events are then not dropped (for benchmarks and debugging).",
        ),
    ] = False,
    dask: DaskOpt = None,
    prefect: PrefectOpt = False,
) -> None:
    """Build point-in-time features: one snapshot (--as-of) or all weekly snapshots (--all)."""
    if (as_of is None) == (not all_snapshots):
        raise fail("give exactly one of --as-of T or --all")
    from pipelines.commands.features import run_features

    run_features(
        source=source,
        out=out,
        as_of=as_of,
        config=load(config),
        validate=not no_validate,
        use_prefect=prefect,
        dask=dask,
    )


@app.command()
@user_errors
def train(
    source: SourceOpt,
    config: ConfigOpt = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="MLflow experiment (default from config).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    dask: DaskOpt = None,
    prefect: PrefectOpt = False,
    no_prefect: NoPrefectOpt = False,
) -> None:
    """Train on all labelled weekly snapshots, evaluate by time, register in MLflow."""
    from pipelines.commands.train import run_train

    run_train(
        source=source,
        config=load(config),
        experiment=experiment,
        as_json=as_json,
        use_prefect=prefect and not no_prefect,
        dask=dask,
    )


@app.command()
@user_errors
def score(
    source: SourceOpt,
    as_of: Annotated[str, typer.Option("--as-of", help="Score as of this time (ISO date).")],
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="MLflow model URI (default: the champion)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: workspace outputs).")
    ] = None,
    config: ConfigOpt = None,
    dask: DaskOpt = None,
    prefect: PrefectOpt = False,
    no_prefect: NoPrefectOpt = False,
) -> None:
    """Score every active enrollment and write ranked curator lists and a report."""
    from pipelines.commands.score import run_score

    run_score(
        source=source,
        as_of=as_of,
        model_uri=model_uri,
        out=out,
        config=load(config),
        use_prefect=prefect and not no_prefect,
        dask=dask,
    )


@app.command()
@user_errors
def backtest(
    source: SourceOpt,
    start: Annotated[str, typer.Option("--from", help="First as-of time (ISO date).")],
    end: Annotated[str, typer.Option("--to", help="Last as-of time (ISO date).")],
    every: Annotated[int, typer.Option("--every", min=1, help="Days between replayed weeks.")] = 7,
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="MLflow model URI (default: the champion)."),
    ] = None,
    assume_contacted: Annotated[
        bool,
        typer.Option(
            "--assume-contacted",
            help="Treat every listed student as contacted that week (cooldown in later weeks).",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the tables and report.html.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
    dask: DaskOpt = None,
) -> None:
    """Replay the weekly lists of a past range with one model and measure them.

    Measured against what happened: ranking, precision and recall at capacity,
    reach and lead time, list churn and drift warnings."""
    from pipelines.commands.backtest import run_backtest

    run_backtest(
        source=source,
        start=start,
        end=end,
        every_days=every,
        config=load(config),
        model_uri=model_uri,
        assume_contacted=assume_contacted,
        out=out,
        as_json=as_json,
        dask=dask,
    )


@app.command()
@user_errors
def compare(
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="MLflow experiment (default from config).")
    ] = None,
    last: Annotated[int, typer.Option("--last", min=1, help="How many recent runs.")] = 10,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for compare.csv and compare.md.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Table of recent training runs: model vs baselines, main metrics, champion marker."""
    from pipelines.commands.train import run_compare

    run_compare(experiment=experiment, last=last, out=out, config=load(config))


@app.command()
@user_errors
def promote(
    version: Annotated[str, typer.Argument(help="Registered model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in a tag).")] = "manual",
    by: Annotated[
        str | None, typer.Option("--by", help="Who promotes (default: the current user).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Move the champion alias to VERSION by hand, recording who and why."""
    from pipelines.commands.train import run_promote

    run_promote(version=version, reason=reason, by=by, config=load(config))


@app.command()
@user_errors
def demo(
    students: Annotated[
        int | None, typer.Option("--students", help="Students in the synthetic school.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """The whole weekly job on a synthetic school: generate, train, score, report."""
    from configs.schema import CONFIG_DIR
    from pipelines.commands.demo import run_demo

    # The synthetic school has silent quitters: its overlay counts inactivity as dropout.
    run_demo(students=students, config=load(config or CONFIG_DIR / "synthetic.yaml"))


@app.command()
@user_errors
def serve(
    source: Annotated[
        Path | None, typer.Option("--source", help="Source to score weekly (default: demo school).")
    ] = None,
    start_server: Annotated[
        bool,
        typer.Option(
            "--start-server", help="Start a local Prefect server when none is configured."
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Serve the weekly flow on its cron schedule against a Prefect server."""
    from pipelines.commands.serve import run_serve

    run_serve(source=source, start_server=start_server, config=load(config))


@app.command()
@user_errors
def ui(
    which: Annotated[str, typer.Argument(help="mlflow or prefect")] = "mlflow",
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", help="Port.")] = None,
) -> None:
    """Start the MLflow or Prefect UI on this machine (127.0.0.1 by default)."""
    from pipelines.commands.serve import run_ui

    run_ui(which=which, host=host, port=port)


# --- the curator workspace (issue 14) ----------------------------------------------------------

workspace_app = typer.Typer(
    help="The curator workspace: web pages and JSON API; invite, revoke, export.",
    invoke_without_command=True,
)
app.add_typer(workspace_app, name="app")


@workspace_app.callback()
@user_errors
def app_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    config: ConfigOpt = None,
) -> None:
    """Run the curator workspace (without a subcommand) on 127.0.0.1:8000."""
    if ctx.invoked_subcommand is not None:
        return
    from pipelines.commands.workspace_app import run_app

    run_app(host=host, port=port, config=load(config))


@workspace_app.command("invite")
@user_errors
def app_invite(
    curator_id: Annotated[str, typer.Argument(help="Curator id (as in the lists) or a lead's id.")],
    lead: Annotated[bool, typer.Option("--lead", help="A lead: sees every curator.")] = False,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Where the app is reached.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Print a personal, signed, expiring, single-use link to the workspace."""
    from pipelines.commands.workspace_app import run_invite

    run_invite(curator_id=curator_id, lead=lead, base_url=base_url, config=load(config))


@workspace_app.command("token")
@user_errors
def app_token(
    curator_id: Annotated[str, typer.Argument(help="Whose token.")],
    config: ConfigOpt = None,
) -> None:
    """Print a new personal API token (bearer) for a CRM or bot."""
    from pipelines.commands.workspace_app import run_token

    run_token(curator_id=curator_id, config=load(config))


@workspace_app.command("revoke")
@user_errors
def app_revoke(
    curator_id: Annotated[str, typer.Argument(help="Whose access ends.")],
    config: ConfigOpt = None,
) -> None:
    """End every session and API token of a person."""
    from pipelines.commands.workspace_app import run_revoke

    run_revoke(curator_id=curator_id, config=load(config))


@workspace_app.command("export")
@user_errors
def app_export(
    out: Annotated[Path, typer.Option("--out", help="Folder for interventions.parquet.")],
    config: ConfigOpt = None,
) -> None:
    """Write the contacts recorded in the workspace as the `interventions` table."""
    from pipelines.commands.workspace_app import run_export

    run_export(out=out, config=load(config))


# --- the hold-out's effect measure (issue 15) ---------------------------------------------


@app.command()
@user_errors
def effect(
    source: SourceOpt,
    plan_only: Annotated[
        bool, typer.Option("--plan", help="Only the sizing: weeks needed to detect the effect.")
    ] = False,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Outcomes known up to (ISO date; default now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Did the lists help? Dropout of listed against control students of the hold-out.

    With intervals, the effect per contacted student and the minimum
    detectable effect."""
    from pipelines.commands.effect import run_effect

    run_effect(
        source=source, config=load(config), as_of=as_of, plan_only=plan_only, as_json=as_json
    )


@app.command("simulate-term")
@user_errors
def simulate_term(
    students: Annotated[
        int | None, typer.Option("--students", min=1, help="School size (simulation.students).")
    ] = None,
    weeks: Annotated[
        int | None, typer.Option("--weeks", min=1, help="Weekly scorings (simulation.weeks).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="School seed (simulation.seed).")
    ] = None,
    no_effect: Annotated[
        bool,
        typer.Option(
            "--no-effect", help="Plant no effect: contacts lift nothing, turn nobody back."
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Simulation folder (replaced); default under $NOTALONE_HOME."),
    ] = None,
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="Score with this model instead of training one."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """A term of weekly lists with simulated curators: the hold-out's measure against the truth.

    On the synthetic school; the truth is the same term without the lists'
    contacts."""
    from configs import load_config
    from pipelines.commands.simulate import run_simulate_term

    sim = {
        k: v for k, v in (("students", students), ("weeks", weeks), ("seed", seed)) if v is not None
    }
    if no_effect:
        sim["generator"] = {"contact_engagement_boost": 0.0, "contact_recovery_prob": 0.0}
    run_simulate_term(
        config=load_config(config, overrides={"simulation": sim} if sim else None),
        out=out,
        model_uri=model_uri,
        as_json=as_json,
    )


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
