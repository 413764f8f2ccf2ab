"""The `notalone` command line. Commands are thin: they parse options and call `pipelines` modules.

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
SourceOpt = Annotated[Path, typer.Option("--source", help="Source folder in the progress-log contract.")]


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
) -> None:
    """Generate a synthetic school in the progress-log contract."""
    from pipelines.sources_cli import run_generate

    run_generate(students=students, out=out, seed=seed, config=load(config))


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
    from pipelines.sources_cli import run_ingest_oulad

    run_ingest_oulad(path=path, out=out, config=load(config))


@app.command()
@user_errors
def validate(source: SourceOpt, config: ConfigOpt = None) -> None:
    """Check a source against the contract; exit 2 when it has errors."""
    from pipelines.sources_cli import run_validate

    code = run_validate(source=source, config=load(config))
    if code:
        raise typer.Exit(code)


@app.command()
@user_errors
def features(
    source: SourceOpt,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="One snapshot at this time (ISO date), for scoring.")
    ] = None,
    all_snapshots: Annotated[
        bool, typer.Option("--all", help="Every weekly snapshot with labels, for training.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Build point-in-time features: one snapshot (--as-of) or all weekly snapshots (--all)."""
    if (as_of is None) == (not all_snapshots):
        raise fail("give exactly one of --as-of T or --all")
    from pipelines.sources_cli import run_features

    run_features(source=source, out=out, as_of=as_of, config=load(config))


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
