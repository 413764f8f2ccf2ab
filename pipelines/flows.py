"""Prefect flows of the weekly job: build features, train, score, and the weekly run of them all.

This is the only module that knows Prefect's flows and tasks. Each flow runs the same step
sequence as the command line (`feature_steps`, `train_steps`, `score_steps`), with a runner that
makes every step a Prefect task named after it, so each step is visible in the Prefect UI with its
own state and duration. Steps that read or write a store retry on transient errors, never on a
user error (`NotaloneError`: bad data, no champion), which would only fail again.

Flow parameters are plain values (paths as strings, the resolved config) so that every flow run
records them and a deployment can pass them as JSON. Each flow activates the workspace itself (a
served run starts in a fresh process); call `Workspace.resolve().activate()` before importing this
module so that Prefect reads the workspace's PREFECT_HOME. (No `from __future__ import
annotations` here: Prefect validates flow parameters against the real annotations.)
"""

import contextlib
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from configs import load_config
from configs.schema import Config
from features.errors import NotaloneError
from pipelines import mlflow_store, prefect_store
from pipelines.feature_steps import feature_steps
from pipelines.runner import Progress, StepRunner, Steps
from pipelines.schedule import latest_week, parse_as_of, retrain_reason
from pipelines.score_steps import score_steps
from pipelines.settings import Workspace
from pipelines.summaries import curator_tables, drift_line, training_markdown, week_markdown
from pipelines.train_steps import train_steps

ConfigParam = Config | dict[str, Any] | None

# Whoever starts a flow in this process (a command, the demo) may watch its steps: steps report
# to the callback in this context variable (none under a served runner: the run log only).
_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "notalone_flow_progress", default=None
)


@contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Send step messages of flows run inside this block to `progress`.

    A command that shows its own progress also keeps Prefect's run logs off the terminal for
    the block (they still reach the Prefect API and UI): a failed task would otherwise print a
    traceback before the command's one-line error message.
    """
    token = _progress.set(progress)
    restore = prefect_store.quiet_console_logs() if progress is not None else None
    try:
        yield
    finally:
        _progress.reset(token)
        if restore is not None:
            restore()


def say(message: str) -> None:
    """Report a step to the watcher (if any) and to the flow run's log."""
    callback = _progress.get()
    if callback is not None:
        callback(message)
    with contextlib.suppress(MissingContextError):  # called outside a flow run: no run log
        get_run_logger().info(message)


def resolve_config(config: ConfigParam) -> Config:
    """The config a flow was given: a Config, its JSON dump (deployments), or the defaults."""
    if isinstance(config, Config):
        return config
    if config is None:
        return load_config()
    return Config.model_validate(config)


def _not_a_user_error(_task, _task_run, state) -> bool:
    """Retry condition: transient failures retry, user errors (bad data, no model) do not."""
    return not isinstance(state.data, NotaloneError)


def task_runner(config: Config, submit: bool = False) -> StepRunner:
    """A runner that runs each step as a Prefect task named after it (no result persistence or
    input hashing: frames are large, and the feature cache does the caching); steps that read or
    write a store retry per `schedule.task_retries`, unless the error is the user's.

    `submit`: hand each task to the flow's task runner (a DaskTaskRunner: the step runs on a
    worker) and wait for it, instead of running it in the flow's own thread.
    """

    def run(name: str, func, *args, io: bool = False, **kwargs):
        options: dict[str, Any] = {"name": name, "cache_policy": NO_CACHE, "persist_result": False}
        if io:
            options.update(
                retry_condition_fn=_not_a_user_error,
                retries=config.schedule.task_retries,
                retry_delay_seconds=config.schedule.task_retry_delay_seconds,
            )
        if submit:
            return task(func, **options).submit(*args, **kwargs).result()
        return task(func, **options)(*args, **kwargs)

    return run


def flow_steps(config: Config, on_dask: bool = False) -> Steps:
    return Steps(runner=task_runner(config, submit=on_dask), progress=say)


def on_cluster(flow_fn, address: str | None):
    """The flow with its tasks run by prefect-dask's DaskTaskRunner on the cluster at `address`
    (None: the flow as it is)."""
    if not address:
        return flow_fn
    from prefect_dask import DaskTaskRunner

    return flow_fn.with_options(task_runner=DaskTaskRunner(address=address))


@flow(name="build-features", log_prints=False)
def build_features_flow(
    source: str,
    config: ConfigParam = None,
    as_of: str | None = None,
    out: str | None = None,
    dask: str | None = None,
) -> dict[str, Any]:
    """Features of `source` at `as_of` (ISO date) or all weekly snapshots; optionally to Parquet.
    With `dask` (a scheduler address; run the flow `on_cluster`) the steps run on its workers
    and the build is partitioned by course run."""
    cfg = resolve_config(config)
    return feature_steps(
        source=source,
        config=cfg,
        workspace=Workspace.resolve().activate(),
        steps=flow_steps(cfg, on_dask=dask is not None),
        as_of=parse_as_of(as_of) if as_of else None,
        out=out,
        dask=dask,
    )


@flow(name="train", log_prints=False)
def train_flow(
    source: str,
    config: ConfigParam = None,
    experiment: str | None = None,
    dask: str | None = None,
) -> dict:
    """Source validated -> features of every weekly snapshot -> time split -> fit -> evaluate ->
    MLflow run -> registered version (champion when it beats the current one on the same test
    rows) -> a markdown summary artifact. With `dask` (a scheduler address; run the flow
    `on_cluster`) every step is a task on its workers."""
    cfg = resolve_config(config)
    steps = flow_steps(cfg, on_dask=dask is not None)
    result = train_steps(
        source=source,
        config=cfg,
        workspace=Workspace.resolve().activate(),
        steps=steps,
        experiment=experiment,
        dask=dask,
    )
    result["flow_run_id"] = prefect_store.current_flow_run_id()
    steps(
        "publish",
        None,
        prefect_store.publish_markdown,
        training_markdown(result),
        key="training-summary",
        description=f"{result['model_name']} v{result['version']}: model vs baselines",
        io=True,
    )
    return result


def publish_week(ranking, as_of: datetime, context: dict[str, Any], config: Config) -> list[str]:
    """A table artifact per curator (their list) and a markdown summary of the week."""
    tables = curator_tables(ranking, config)
    week = as_of.date().isoformat()
    keys = [
        prefect_store.publish_table(
            table.to_dict("records"),
            key=prefect_store.artifact_key("curator", curator),
            description=f"Curator {curator}: {len(table)} students to contact, week of {week}",
        )
        for curator, table in tables.items()
    ]
    keys.append(
        prefect_store.publish_markdown(
            week_markdown(ranking, tables, as_of, context, config),
            key="weekly-summary",
            description=f"Week of {week}: risk, tiers and curator lists",
        )
    )
    say(f"published {len(keys)} artifacts")
    return keys


@flow(name="score", log_prints=False)
def score_flow(
    source: str,
    as_of: str,
    model_uri: str | None = None,
    out: str | None = None,
    config: ConfigParam = None,
    duplicate_events: bool | None = None,
    dask: str | None = None,
) -> dict[str, Any]:
    """The week's `score_steps` (validated unless the caller did: then `duplicate_events` says
    what it found), then a table artifact per curator and a week summary. With `dask` (a
    scheduler address; run the flow `on_cluster`) every step is a task on its workers."""
    cfg = resolve_config(config)
    steps = flow_steps(cfg, on_dask=dask is not None)
    when = parse_as_of(as_of)
    scored = score_steps(
        source=source,
        as_of=when,
        config=cfg,
        workspace=Workspace.resolve().activate(),
        steps=steps,
        model_uri=model_uri,
        out=out,
        duplicate_events=duplicate_events,
        dask=dask,
    )
    result = scored.result
    context = {
        "model": result["model_uri"],
        "source": str(source),
        "outputs": result["out"],
        "drift": drift_line(result["drift"]),
    }
    artifacts = steps("artifacts", None, publish_week, scored.ranking, when, context, cfg, io=True)
    return {
        **result,
        "artifacts": artifacts,
        "flow_run_id": prefect_store.current_flow_run_id(),
        "timings": dict(steps.seconds),
    }


def _champion(config: Config):
    return mlflow_store.champion_info(mlflow_store.connect(), config.registry.model_name)


@flow(name="weekly", log_prints=False)
def weekly_flow(
    source: str,
    config: ConfigParam = None,
    as_of: str | None = None,
    retrain: bool = False,
    model_uri: str | None = None,
) -> dict[str, Any]:
    """Score the latest complete week (or `as_of`) for every curator; retrain first when there is
    no champion, when it is older than `schedule.retrain_after_days`, or when asked."""
    cfg = resolve_config(config)
    Workspace.resolve().activate()
    steps = flow_steps(cfg)
    source = str(source)
    when = (
        parse_as_of(as_of)
        if as_of
        else steps("latest-week", None, latest_week, source, cfg, io=True)
    )
    trained = None
    reason = None
    if model_uri is None:
        champion = steps("champion", None, _champion, cfg, io=True)
        reason = retrain_reason(champion, cfg, datetime.now(UTC), retrain)
        if reason is not None:
            say(f"retraining: {reason}")
            trained = train_flow(source=source, config=cfg)
    scored = score_flow(source=source, as_of=when.isoformat(), model_uri=model_uri, config=cfg)
    return {
        "as_of": when.isoformat(),
        "retrained": reason,
        "train": trained,
        "score": scored,
    }


def serve_weekly(source: Path, config: Config, api_url: str) -> None:
    """Register the weekly deployment with its cron schedule on the Prefect server at `api_url`
    and run its scheduled runs until interrupted."""
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL, temporary_settings

    schedule = config.schedule
    try:
        cron = Cron(schedule.cron, timezone=schedule.timezone)
    except ValueError as exc:
        raise NotaloneError(f"schedule.cron {schedule.cron!r} is not valid: {exc}") from None
    # Settings are read when Prefect is imported; pin the server explicitly for this block.
    with temporary_settings({PREFECT_API_URL: api_url}):
        _serve(source, config, cron)


def _serve(source: Path, config: Config, cron) -> None:
    from prefect.deployments.runner import EntrypointType

    schedule = config.schedule
    weekly_flow.serve(
        name=schedule.deployment_name,
        schedules=[cron],
        parameters={
            "source": str(Path(source).resolve()),
            "config": config.model_dump(mode="json"),
        },
        description=f"notalone weekly job on {source}: score the week, retrain when stale.",
        tags=["notalone", "weekly"],
        # The runner imports `pipelines.flows` as a package module, whatever the working folder.
        entrypoint_type=EntrypointType.MODULE_PATH,
        pause_on_shutdown=False,
    )
