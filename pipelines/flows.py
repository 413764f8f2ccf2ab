"""Prefect flows of the weekly job: build features, train, score, and the weekly run of them all.

Tasks are thin wrappers around the plain step functions of `pipelines.training` and
`pipelines.scoring` (which wrap `features/`, `models/`, `interventions/`), so every step is
visible in the Prefect UI with its own state and duration (the score flow runs
`pipelines.scoring.score_steps` with a runner that makes each of its steps a task). Tasks that
do IO (read the source, MLflow, write outputs) retry on transient errors, never on a user error
(`NotaloneError`: bad data, no champion), which would only fail again. Feature frames are
cached on the fingerprint of their inputs (`pipelines.feature_cache`), so a re-run of the same
week skips the expensive step.

Flow parameters are plain values (paths as strings, the resolved config) so that every flow run
records them and a deployment can pass them as JSON.

Call `Workspace.resolve().activate()` before importing this module in a new process, so that
Prefect reads the workspace's PREFECT_HOME.
"""

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from configs import load_config
from configs.schema import Config
from features.errors import NotaloneError
from pipelines.settings import Workspace

ConfigParam = Config | dict[str, Any] | None
Progress = Callable[[str], None]

# Whoever starts a flow in this process (the CLI, the demo) may watch its steps: tasks report to
# the callback in this context variable (a no-op when none is set, e.g. under a served runner).
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
    from pipelines import prefect_store

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


# Every task: no Prefect result persistence or input hashing (frames are large; caching of the
# expensive step is done explicitly by the feature cache).
step = task(cache_policy=NO_CACHE, persist_result=False)


def io_step(func):
    """A task that retries (per `schedule.task_retries`) unless the error is the user's."""
    return task(
        func,
        cache_policy=NO_CACHE,
        persist_result=False,
        retry_condition_fn=_not_a_user_error,
    )


def with_retries(task_obj, config: Config):
    return task_obj.with_options(
        retries=config.schedule.task_retries,
        retry_delay_seconds=config.schedule.task_retry_delay_seconds,
    )


# --- the weekly as-of time --------------------------------------------------------------------


def week_start(moment: datetime, weekday: int) -> datetime:
    """00:00 UTC of the latest `weekday` (0 = Monday) at or before `moment`."""
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=(midnight.weekday() - weekday) % 7)


def latest_week(source: str | Path, config: Config, now: datetime | None = None) -> datetime:
    """The as-of time of the latest complete week: the last week start (00:00 UTC of
    `schedule.week_starts_on`) at or before both `now` and the end of the data, at which some
    enrollment is active (in a run at least `snapshots.first_offset_days` old). Features at T
    read only rows before T, so the week before is complete.

    The data is taken to cover the whole day of its last record (a source exported on Sunday
    night covers Sunday), so its end is the next midnight after the last timestamp.
    """
    from features.build import data_end, open_source

    now = now or datetime.now(UTC)
    con = open_source(source, config)
    try:
        last = datetime.fromtimestamp(data_end(con), UTC)
        end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        first_start = con.execute(
            "SELECT min(epoch(CAST(start_at AS TIMESTAMPTZ))) FROM raw_courses"
        ).fetchall()[0][0]
        if first_start is None:
            raise NotaloneError(f"the source {source} has no course runs")
        candidate = week_start(min(now, end), config.schedule.week_starts_on)
        earliest = datetime.fromtimestamp(first_start, UTC)
        while candidate >= earliest:
            (active,) = con.execute(
                """
                SELECT count(*) FROM raw_enrollments e JOIN raw_courses c
                  ON CAST(e.course_id AS VARCHAR) = CAST(c.course_id AS VARCHAR)
                WHERE CAST(c.start_at AS TIMESTAMPTZ) + to_days($offset) <= $t
                  AND $t <= CAST(c.end_at AS TIMESTAMPTZ)
                  AND CAST(e.enrolled_at AS TIMESTAMPTZ) <= $t
                  AND (e.unenrolled_at IS NULL OR CAST(e.unenrolled_at AS TIMESTAMPTZ) >= $t)
                """,
                # Scored from a run's first snapshot on, as the feature build does.
                {"t": candidate, "offset": config.snapshots.first_offset_days},
            ).fetchall()[0]
            if active:
                return candidate
            candidate -= timedelta(days=7)
    finally:
        con.close()
    raise NotaloneError(
        f"no week of {source} up to {min(now, end).date()} has active enrollments to score"
    )


def parse_as_of(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    from pipelines.featurize import parse_as_of as parse

    return parse(value)


# --- features ---------------------------------------------------------------------------------


def cached_features(
    source: str, config: Config, as_of: datetime | None, duplicate_events: bool | None = None
):
    """Point-in-time features of `source` (at `as_of`, or every weekly snapshot), from the
    workspace's feature cache when the same source, config and as-of were built before.
    `duplicate_events` as validation found it (None: the build checks). Returns a
    `CachedFrame` (frame, key, hit)."""
    from pipelines.feature_cache import workspace_features

    what = f"as of {as_of.date()}" if as_of else "all weekly snapshots"
    say(f"features ({what})")
    cached = workspace_features(
        source, config, as_of, duplicate_events, lambda part: say(f"features ({what}): {part}")
    )
    say(
        f"features ({what}): {len(cached.frame):,} rows"
        + (" from the cache" if cached.hit else ", cached")
        + f" [{cached.key[:12]}]"
    )
    return cached


@io_step
def feature_frame_task(source: str, config: Config, as_of: datetime | None):
    return cached_features(source, config, as_of)


@io_step
def write_frame_task(frame: pd.DataFrame, out: str) -> str:
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(target)
    return str(target)


@flow(name="build-features", log_prints=False)
def build_features_flow(
    source: str,
    config: ConfigParam = None,
    as_of: str | None = None,
    out: str | None = None,
) -> dict[str, Any]:
    """Features of `source` at `as_of` (ISO date) or all weekly snapshots; optionally to Parquet."""
    cfg = resolve_config(config)
    when = parse_as_of(as_of)
    cached = with_retries(feature_frame_task, cfg)(str(source), cfg, when)
    frame = cached.frame
    result: dict[str, Any] = {
        "rows": len(frame),
        "as_of": when.isoformat() if when else None,
        "cache_key": cached.key,
        "cache_hit": cached.hit,
    }
    if out:
        result["out"] = with_retries(write_frame_task, cfg)(frame, str(out))
    return result


# --- training ---------------------------------------------------------------------------------

SOURCE_FINGERPRINT_TAG = "notalone.source_fingerprint"


@io_step
def training_frame_task(
    source: str, config: Config, duplicate_events: bool | None = None
) -> pd.DataFrame:
    from pipelines import training

    say("features (all weekly snapshots)")
    return training.build_training_frame(source, config, say, duplicate_events)


@step
def split_task(frame: pd.DataFrame, config: Config):
    from pipelines import training

    say("splitting by time")
    return training.split_step(frame, config)


@step
def fit_task(frame: pd.DataFrame, split, config: Config):
    from pipelines import training

    summary = split.summary
    say(
        f"fitting on {summary['train']['rows']:,} rows "
        f"(validation {summary['validation']['rows']:,})"
    )
    return training.fit_step(frame, split, config)


@step
def evaluate_task(fitted, frame: pd.DataFrame, split, config: Config):
    from pipelines import training

    say(f"evaluating on {split.summary['test']['rows']:,} test rows")
    return training.evaluate_step(fitted, frame, split, config)


@io_step
def log_run_task(source: str, frame, split, fitted, evaluations, config: Config, experiment):
    from pipelines import mlflow_store, training

    say("logging the run to MLflow")
    logged = training.log_step(source, frame, split, fitted, evaluations, config, experiment)
    # The source fingerprint lets `notalone demo` skip training on data the champion has seen.
    from pipelines.feature_cache import source_fingerprint

    client = mlflow_store.connect()
    mlflow_store.tag_and_log_run(
        client, logged.run_id, {}, {SOURCE_FINGERPRINT_TAG: source_fingerprint(source)}
    )
    return logged


@io_step
def register_task(logged, fitted, evaluations, frame, split, config: Config) -> dict:
    from pipelines import training

    say("registering the model")
    return training.register_step(logged, fitted, evaluations, frame, split, config)


class StepClock:
    """Seconds per step, in the `{"features": 1.2, ...}` shape `train_pipeline` reports."""

    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._last = self._now()
        self.seconds: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = self._now()
        self.seconds[step] = round(now - self._last, 3)
        self._last = now


@flow(name="train", log_prints=False)
def train_flow(source: str, config: ConfigParam = None, experiment: str | None = None) -> dict:
    """Source validated -> features of every weekly snapshot -> time split -> fit -> evaluate ->
    MLflow run -> registered version (champion when it beats the current one on the same test
    rows)."""
    from pipelines import prefect_store

    cfg = resolve_config(config)
    clock = StepClock()
    source = str(source)
    # A source that breaks the contract is never trained on (nor scored).
    duplicate_events = validate_source_task(source, cfg)
    clock.lap("validate")
    frame = with_retries(training_frame_task, cfg)(source, cfg, duplicate_events)
    clock.lap("features")
    split = split_task(frame, cfg)
    clock.lap("split")
    fitted = fit_task(frame, split, cfg)
    clock.lap("fit")
    evaluations = evaluate_task(fitted, frame, split, cfg)
    clock.lap("evaluate")
    logged = with_retries(log_run_task, cfg)(
        source, frame, split, fitted, evaluations, cfg, experiment
    )
    clock.lap("log")
    registered = with_retries(register_task, cfg)(logged, fitted, evaluations, frame, split, cfg)
    clock.lap("register")
    from pipelines.training import training_result

    result = training_result(logged, registered, fitted, split, evaluations, cfg, clock.seconds)
    result["flow_run_id"] = prefect_store.current_flow_run_id()
    _publish_training_summary(result)
    return result


def _publish_training_summary(result: dict) -> None:
    """A markdown artifact: the version, the promotion decision and model vs baselines."""
    from pipelines import prefect_store

    metrics = result["metrics"]
    keys = ("roc_auc", "pr_auc", "brier")
    lines = [
        f"# Training: {result['model_name']} version {result['version']}",
        "",
        f"- MLflow run: `{result['run_id']}` (experiment `{result['experiment']}`)",
        f"- aliases: {', '.join(result['aliases']) or 'none'}",
        f"- promotion: {result['promotion']['reason']}",
        f"- test period: {result['split']['test']['as_of_min'][:10]} .. "
        f"{result['split']['test']['as_of_max'][:10]}",
        "",
        "| scorer | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for scorer, values in metrics.items():
        cells = [_number(values.get(k)) for k in keys]
        lines.append(f"| {scorer} | " + " | ".join(cells) + " |")
    prefect_store.publish_markdown(
        "\n".join(lines) + "\n",
        key="training-summary",
        description=f"{result['model_name']} v{result['version']}: model vs baselines",
    )


def _number(value: Any) -> str:
    import math

    if value is None or not math.isfinite(float(value)):
        return "-"
    return f"{float(value):.3f}"


# --- the champion -------------------------------------------------------------------------------


def champion_info(config: Config) -> dict[str, Any] | None:
    """The registered champion: version, registration time, run id and the source it learnt
    from (fingerprint tag), or None when there is no champion yet."""
    from pipelines import mlflow_store as store

    client = store.connect()
    name = config.registry.model_name
    version = store.alias_version(client, name, store.CHAMPION)
    if version is None:
        return None
    model_version = client.get_model_version(name, version)
    tags = client.get_run(model_version.run_id).data.tags if model_version.run_id else {}
    return {
        "version": version,
        "registered_at": datetime.fromtimestamp(model_version.creation_timestamp / 1000, UTC),
        "run_id": model_version.run_id,
        "source": tags.get("source"),
        "source_fingerprint": tags.get(SOURCE_FINGERPRINT_TAG),
    }


def source_fingerprint(source: str | Path) -> str:
    from pipelines.feature_cache import source_fingerprint as fingerprint

    return fingerprint(source)


def retrain_reason(
    champion: dict[str, Any] | None, config: Config, now: datetime, force: bool = False
) -> str | None:
    """Why the weekly run must retrain first, or None to score with the current champion."""
    if force:
        return "retraining was requested"
    if champion is None:
        return "there is no champion yet"
    age = now - champion["registered_at"]
    limit = timedelta(days=config.schedule.retrain_after_days)
    if age > limit:
        return (
            f"the champion (version {champion['version']}) is {age.days} days old "
            f"(schedule.retrain_after_days = {config.schedule.retrain_after_days})"
        )
    return None


@io_step
def champion_task(config: Config) -> dict[str, Any] | None:
    return champion_info(config)


@io_step
def latest_week_task(source: str, config: Config) -> datetime:
    return latest_week(source, config)


# --- artifacts of a scored week ---------------------------------------------------------------

# Percentiles of the week's risk shown in the summary artifact.
SUMMARY_QUANTILES = (0.5, 0.9, 0.99)


def curator_tables(ranking: pd.DataFrame, config: Config) -> dict[str, pd.DataFrame]:
    """Each curator's list, exactly the rows and columns of `curators/<curator_id>.csv`; every
    curator of the week gets one (empty when nobody is listed for them)."""
    from interventions.ranking import curator_lists
    from pipelines.scoring import load_texts

    texts = load_texts(config.scoring.language)
    lists = curator_lists(ranking, texts.tiers, texts.actions, config.scoring.risk_decimals)
    columns = [c for c in lists.columns if c != "curator_id"]
    grouped = {str(cid): part[columns] for cid, part in lists.groupby("curator_id", sort=True)}
    curators = sorted(ranking["curator_id"].astype("str").unique())
    return {cid: grouped.get(cid, pd.DataFrame(columns=columns)) for cid in curators}


def week_summary_markdown(
    ranking: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    as_of: datetime,
    context: dict[str, Any],
    config: Config,
) -> str:
    """The markdown summary of a scored week for the Prefect UI (counts only, no student ids)."""
    from pipelines.scoring import load_texts

    texts = load_texts(config.scoring.language)
    lines = [f"# Week of {as_of.date()}", ""]
    lines += [f"- {label}: {value}" for label, value in context.items()]
    listed = ranking[ranking["listed"].astype(bool)]
    lines.append(f"- active enrollments scored: {len(ranking):,}")
    lines.append(f"- students on curator lists: {len(listed):,} across {len(tables)} curators")
    if "triggered" in ranking:
        fired = ranking["triggered"].astype(bool)
        lines.append(
            f"- school rule triggers: {int(fired.sum()):,} "
            f"({int((fired & ranking['listed'].astype(bool)).sum()):,} listed)"
        )
    if "hold_back" in ranking:
        held = int((ranking["hold_back"] == "cooldown").sum())
        lines.append(f"- held back after a recent contact: {held:,}")
    if len(ranking):
        risk = ranking["risk"].astype(float)
        shown = ", ".join(f"p{round(q * 100)} {risk.quantile(q):.1%}" for q in SUMMARY_QUANTILES)
        lines.append(f"- risk: mean {risk.mean():.1%}, {shown}")
    change = ranking["change"].astype(float).dropna() if "change" in ranking else pd.Series()
    if len(change):
        jump = config.scoring.risk_jump
        rose = int((change >= jump).sum())
        lines.append(f"- risk rose by {jump:.0%} or more since the last scoring: {rose:,}")
    for column, labels, title in (
        ("tier", texts.tiers, "Listed students by support tier"),
        ("action", texts.actions, "Listed students by first action"),
    ):
        if column in listed and len(listed):
            counts = listed[column].map(labels).fillna(listed[column]).value_counts()
            lines += ["", f"## {title}", "", f"| {column} | students |", "|---|---:|"]
            lines += [f"| {name} | {count} |" for name, count in counts.items()]
    if tables:
        lines += ["", "## Curators", "", "| curator | listed |", "|---|---:|"]
        lines += [f"| {curator} | {len(table)} |" for curator, table in tables.items()]
    return "\n".join(lines) + "\n"


@io_step
def publish_artifacts_task(
    ranking: pd.DataFrame, as_of: datetime, context: dict[str, Any], config: Config
) -> list[str]:
    """A table artifact per curator (their list) and a markdown summary of the week."""
    from pipelines import prefect_store

    tables = curator_tables(ranking, config)
    week = as_of.date().isoformat()
    keys = []
    for curator, table in tables.items():
        keys.append(
            prefect_store.publish_table(
                table.to_dict("records"),
                key=prefect_store.artifact_key("curator", curator),
                description=f"Curator {curator}: {len(table)} students to contact, week of {week}",
            )
        )
    keys.append(
        prefect_store.publish_markdown(
            week_summary_markdown(ranking, tables, as_of, context, config),
            key="weekly-summary",
            description=f"Week of {week}: risk, tiers and curator lists",
        )
    )
    say(f"published {len(keys)} artifacts")
    return keys


# --- scoring ----------------------------------------------------------------------------------


@io_step
def load_model_task(model_uri: str):
    from pipelines import scoring

    say(f"model {model_uri}")
    return scoring.load_model_step(model_uri)


@step
def validate_source_task(source: str, config: Config) -> bool:
    """The contract check; raises `ValidationFailed` on errors. Returns whether exact duplicate
    events were found (the feature build then drops them)."""
    from features.validate import require_valid

    workspace = Workspace.resolve().activate()
    report = require_valid(Path(source), config.validation, temp_dir=workspace.tmp)
    if report.warnings:
        say(f"{len(report.warnings)} validation warning(s): {report.summary()}")
    return report.duplicate_events


@io_step
def scoring_features_task(
    source: str, config: Config, as_of: datetime, duplicate_events: bool | None = None
):
    """Features at T (cached), with the scorer's checks: someone to score, rule features there."""
    from interventions.routing import check_rule_features
    from pipelines.scoring import ScoringError

    cached = cached_features(source, config, as_of, duplicate_events)
    if cached.frame.empty:
        raise ScoringError(
            f"no active enrollments in {source} at {as_of.isoformat()}: nothing to score "
            "(is the date inside a running course?)"
        )
    check_rule_features(config.scoring, list(cached.frame.columns))
    return cached


def scoring_task_runner(config: Config):
    """A `pipelines.scoring.StepRunner` that runs each scoring step as a Prefect task named
    after it (visible in the UI with its state and duration); steps that read or write a store
    retry per `schedule.task_retries`, unless the error is the user's."""

    def run(name: str, func, *args, io: bool = False):
        options: dict[str, Any] = {"name": name, "cache_policy": NO_CACHE, "persist_result": False}
        if io:
            options.update(
                retry_condition_fn=_not_a_user_error,
                retries=config.schedule.task_retries,
                retry_delay_seconds=config.schedule.task_retry_delay_seconds,
            )
        return task(func, **options)(*args)

    return run


def drift_line(drift: dict[str, Any]) -> str:
    """One line about the week's drift check for the summary artifact."""
    if not drift.get("has_reference"):
        return "not checked (the model has no training reference)"
    checked, drifted = drift.get("checked", 0), drift.get("drifted", 0)
    names = ", ".join(f"{d['name']} {d['psi']:.2f}" for d in drift.get("drifted_inputs", []))
    if drifted:
        return (
            f"WARNING: {drifted} of {checked} inputs drifted from the training data "
            f"(PSI above {drift.get('threshold')}): {names}"
        )
    return f"none of {checked} inputs drifted (max PSI {drift.get('max_psi') or 0:.2f})"


@flow(name="score", log_prints=False)
def score_flow(
    source: str,
    as_of: str,
    model_uri: str | None = None,
    out: str | None = None,
    config: ConfigParam = None,
    duplicate_events: bool | None = None,
) -> dict[str, Any]:
    """Source validated (unless the caller did: then `duplicate_events` says what it found) ->
    features at T (cached) -> risk -> drift check -> ranking under capacity -> reasons,
    tier, action, message -> report -> outputs written atomically -> the week in MLflow -> a
    table artifact per curator and a week summary. The steps after the features are
    `pipelines.scoring.score_steps`, each run as a task."""
    from pipelines import prefect_store, scoring

    cfg = resolve_config(config)
    source = str(source)
    when = scoring.parse_as_of(as_of)
    uri = model_uri or scoring.default_model_uri(cfg)
    clock = StepClock()

    # The model first: without a champion the flow stops before the expensive features.
    model = with_retries(load_model_task, cfg)(uri)
    clock.lap("model")
    if duplicate_events is None:
        # A scheduled run validates here: a source that breaks the contract is never scored.
        duplicate_events = validate_source_task(source, cfg)
    cached = with_retries(scoring_features_task, cfg)(source, cfg, when, duplicate_events)
    clock.lap("features")
    scored = scoring.score_steps(
        source,
        when,
        uri,
        out,
        cfg,
        progress=say,
        model=model,
        frame=cached.frame,
        runner=scoring_task_runner(cfg),
        record=True,  # the model came from MLflow: the week is recorded next to its run
    )
    result = scored.result
    context = {
        "model": uri,
        "source": source,
        "outputs": result["out"],
        "drift": drift_line(result["drift"]),
    }
    clock.lap("steps")
    artifacts = with_retries(publish_artifacts_task, cfg)(scored.ranking, when, context, cfg)
    clock.lap("artifacts")
    timings = {k: clock.seconds[k] for k in ("model", "features")}
    timings.update(result["timings"])
    timings["artifacts"] = clock.seconds["artifacts"]
    return {
        **result,
        "features_cached": cached.hit,
        "artifacts": artifacts,
        "flow_run_id": prefect_store.current_flow_run_id(),
        "timings": timings,
    }


# --- the weekly job ---------------------------------------------------------------------------


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
    source = str(source)
    when = parse_as_of(as_of) or with_retries(latest_week_task, cfg)(source, cfg)
    trained = None
    reason = None
    if model_uri is None:
        champion = with_retries(champion_task, cfg)(cfg)
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
