"""`notalone features`: point-in-time features of a source, written to one Parquet file."""

from __future__ import annotations

from pathlib import Path

from configs.schema import Config
from pipelines.commands.common import activate, progress_line, run_steps, stderr
from pipelines.dask_store import cluster_for
from pipelines.feature_steps import feature_steps
from pipelines.schedule import parse_as_of


def run_features(
    *,
    source: Path,
    out: Path,
    as_of: str | None,
    config: Config,
    validate: bool = True,
    use_prefect: bool = False,
    dask: str | None = None,
) -> dict:
    """Build one snapshot (`as_of`) or all weekly snapshots with labels and write `out`.

    The source is validated first: features of a source that breaks the contract would be wrong
    without saying so (a score of 1e9, a null student id), so such a source is refused.
    With `dask` (or `dask.scheduler` in the config) it is built on that cluster, partitioned by
    course run, and `out` is a folder of Parquet parts.
    """
    workspace = activate()
    console = stderr()
    when = parse_as_of(as_of) if as_of else None
    flow = None
    if use_prefect and validate:
        from pipelines.flows import build_features_flow as flow
    with cluster_for(dask, config) as address, progress_line(console, "features") as progress:
        if flow is not None and address:
            from pipelines.flows import on_cluster

            flow = on_cluster(flow, address)
        result = run_steps(
            feature_steps,
            flow=flow,
            flow_args={
                "source": str(source),
                "config": config,
                "as_of": when.isoformat() if when else None,
                "out": str(out),
                "dask": address,
            },
            progress=progress,
            source=source,
            config=config,
            workspace=workspace,
            as_of=when,
            out=out,
            validate=validate,
            dask=address,
        )
    what = f"as of {when.date()}" if when else "all weekly snapshots"
    seconds = sum(result["seconds"].values())
    cached = " (from the cache)" if result["cache_hit"] else ""
    console.print(
        f"[green]wrote[/green] {out}: {result['rows']:,} rows ({what}), "
        f"{result['course_runs']} course runs, {result['snapshot_times']} snapshot times, "
        f"in {seconds:.1f} s{cached}"
    )
    if result["labelled"]:
        console.print(
            f"labelled rows: {result['labelled']:,}, dropout label rate "
            f"{result['positives'] / result['labelled']:.1%}; "
            f"unlabelled (horizon past the data): {result['rows'] - result['labelled']:,}"
        )
    return result
