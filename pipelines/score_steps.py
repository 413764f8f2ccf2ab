"""The weekly scoring, one step sequence for `notalone score`, the score flow and the tests.

    validate     the contract check (skipped when the caller already knows its answer)
    model        the champion (or --model-uri) from MLflow
    features     features at T for every active enrollment (through the feature cache)
    predict      calibrated P(dropout) per enrollment
    drift        PSI of the model's top features and of the risk against training
    history      the previous scoring (risk change) and the risk trend, from the outputs
    contacts     latest curator contact per enrollment (optional `interventions` table)
    titles       course titles for the messages
    rank         triggers, cooldown and capacity -> who is listed, in which order
    holdout      the hold-out: stored arms read, new ones drawn and stored, control students
                 taken off the lists (their slots filled by the next students)
    explain      the model's contributions for the students to explain (listed ones)
    words        reasons in words, support tier and action, first message
    effect       the hold-out's effect measure as of T (arms, intervals, verdicts) for the report
    report       report.html (a warning box on top when inputs drifted; the drift table)
    write        ranking.parquet, curators/<id>.csv, report.html, summary.json - atomically
    record       a small MLflow run of the week: drift per input, counts (no ids)

Ranking needs only the risk and the features, so contributions (TreeSHAP: the expensive part) are
computed for listed students only unless `scoring.explain: all`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import Config
from features.sources import (
    all_contacts,
    course_titles,
    display_names_of,
    locate_tables,
    read_table,
    recent_contacts,
)
from interventions.effect import as_records, measure_effect, outcomes, plan
from interventions.holdout import ARM_CONTROL, holdout_ranking
from interventions.messages import with_first_names
from interventions.ranking import curator_lists
from interventions.report import ReportContext
from interventions.routing import check_rule_features, route
from interventions.texts import Texts
from interventions.triggers import state_columns, state_from_ranking
from interventions.weekly import ENROLLMENT_KEYS, explain_in_words, rank_week, summarise_week
from interventions.winback import winback_inactive_days
from models.drift import DriftCheck, check_drift
from models.train import predict_threads
from pipelines import mlflow_store, outputs_store, workspace_store
from pipelines.checks import check_source
from pipelines.cluster_scoring import contributions_on_cluster, predict_on_cluster
from pipelines.feature_cache import CachedFrame, workspace_features
from pipelines.feature_partitions import FeatureDataset, LocatedFrame, workspace_cluster_features
from pipelines.runner import Steps
from pipelines.settings import Workspace
from pipelines.texts import ScoringError, load_texts
from webapp.report import build_report_from_template

# Counts of the week's summary also recorded in MLflow (product leads compare weeks there).
RECORDED_COUNTS = ("students", "listed", "triggered_listed", "held_back_cooldown", "mean_risk")


def output_folder(out: str | Path | None, as_of: datetime, workspace: Workspace) -> Path:
    """The week folder: `--out` itself, else `$NOTALONE_HOME/outputs/<as-of date>`. Earlier weeks
    (for the change column and the trend) are its sibling folders."""
    if out is not None:
        return Path(out).expanduser().resolve()
    return outputs_store.week_folder(workspace.outputs, as_of)


# ---------------------------------------------------------------------------------- steps


def features_step(
    source: Path,
    config: Config,
    as_of: datetime,
    duplicate_events: bool | None,
    workspace: Workspace,
    progress,
) -> CachedFrame:
    """Features at T (from the feature cache when unchanged), with the scorer's checks: someone
    to score, the rule features there. `duplicate_events` as validation found it."""
    cached = workspace_features(
        source, config, as_of, duplicate_events, lambda m: progress(f"features: {m}"), workspace
    )
    if cached.frame.empty:
        raise ScoringError(
            f"no active enrollments in {source} at {as_of.isoformat()}: nothing to score "
            "(is the date inside a running course?)"
        )
    check_rule_features(config.scoring, list(cached.frame.columns))
    return CachedFrame(cached.frame.reset_index(drop=True), cached.key, cached.hit)


def cluster_features_step(
    source: Path,
    config: Config,
    as_of: datetime,
    duplicate_events: bool | None,
    workspace: Workspace,
    dask: str,
    progress,
) -> LocatedFrame:
    """`features_step` built on the cluster into a partitioned dataset in the workspace's cache
    (reused when unchanged): the workers then read their rows of it to predict and explain."""
    located = workspace_cluster_features(
        source,
        config,
        as_of,
        duplicate_events,
        workspace,
        dask,
        lambda m: progress(f"features: {m}"),
    )
    if located.frame.empty:
        raise ScoringError(
            f"no active enrollments in {source} at {as_of.isoformat()}: nothing to score "
            "(is the date inside a running course?)"
        )
    check_rule_features(config.scoring, list(located.frame.columns))
    return located


def with_scoring_threads(model, config: Config):
    """The model set to use `scoring.num_threads` LightGBM threads (None: every core).

    Training fixes its thread count for reproducible trees; a prediction or a row's
    contributions are the same whatever the count, and TreeSHAP for the listed students is the
    scorer's largest CPU cost.
    """
    threads = predict_threads(config)
    if is_dataclass(model) and hasattr(model, "num_threads"):
        return replace(model, num_threads=threads)
    return model


def predict_step(
    model, frame: pd.DataFrame, dask: str | None = None, dataset: FeatureDataset | None = None
) -> np.ndarray:
    """Calibrated risk per row; refuses a model whose inputs differ from the frame's
    (`ModelMismatch`, naming the columns). With `dask` and the frame's `dataset`, predicted per
    part file on that cluster's workers (each reads its part)."""
    if dask and dataset is not None:
        model.check(frame)  # here, before anything is sent
        return predict_on_cluster(model, frame, dask, dataset)
    return np.asarray(model.predict_proba(frame), dtype="float64")


@dataclass(frozen=True)
class History:
    previous: pd.DataFrame | None  # student_id, course_id, risk of the latest earlier scoring
    previous_folder: Path | None
    trend: pd.DataFrame  # week, active, listed, mean_risk, high_share (oldest first)
    trigger_state: pd.DataFrame  # the triggers' state after the latest earlier scoring


def history_step(out_dir: Path, as_of: datetime, config: Config) -> History:
    root = Path(out_dir).parent
    previous, folder = outputs_store.read_previous_risk(root, as_of)
    trend = outputs_store.read_trend(
        root, as_of, config.scoring.report_trend_weeks, config.scoring.report_high_risk
    )
    state = None
    if folder is not None:
        columns = [*ENROLLMENT_KEYS, *state_columns(config.scoring)]
        state = outputs_store.read_columns(folder, columns)
    return History(previous, folder, trend, state_from_ranking(state, config.scoring))


def contacts_step(
    source: Path, as_of: datetime, config: Config, workspace: Workspace
) -> pd.DataFrame | None:
    """Latest contact per (student, course) in [T - cooldown_days, T): those of the source's
    `interventions` table and those recorded in the curator workspace."""
    start = as_of - timedelta(days=config.scoring.cooldown_days)
    from_source = recent_contacts(source, start, as_of)
    recorded = workspace_store.contacts_between(workspace, start, as_of)
    if recorded.empty:
        return from_source
    both = pd.concat([c for c in (from_source, recorded) if c is not None], ignore_index=True)
    both["ts"] = pd.to_datetime(both["ts"], utc=True)
    return both.groupby(["student_id", "course_id"], as_index=False, sort=True)["ts"].max()


# --- hold-out (issue 15): the one step the experiment adds ---------------------------------


def holdout_step(
    frame: pd.DataFrame, ranking: pd.DataFrame, as_of: datetime, config: Config, workspace
) -> pd.DataFrame:
    """Read the stored arms, draw arms for newly listed students, store them (before any list is
    written), and take control students off the lists. Technical-support cases (by the tier the
    triggers and the feature rules give before the model's reasons are known) are exempt."""
    experiment = config.experiment
    if experiment.control_share == 0:
        return ranking
    tiers = route(frame, ranking, None, config.scoring)["tier"]
    exempt = tiers.isin(experiment.exempt_tiers).to_numpy(dtype=bool)
    if experiment.exempt_triggers:
        exempt |= ranking["triggered"].to_numpy(dtype=bool)
    arms = workspace_store.experiment_arms(workspace)
    held, new_arms = holdout_ranking(ranking, arms, exempt, as_of, experiment, config.scoring)
    workspace_store.store_arms(workspace, new_arms)
    return held


def horizon_days(config: Config) -> int:
    return config.experiment.horizon_days or config.snapshots.horizon_days


def effect_result(
    source: Path,
    config: Config,
    workspace: Workspace,
    as_of: datetime | None = None,
    contacts: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The effect measure (`notalone effect`, the report's section, `simulate-term`):
    comparisons overall and per risk band for both outcomes, and the plan, as plain data; only
    what is known at `as_of` (default now) counts. `contacts` (student_id, course_id, ts): those
    that make the contact rate; default every contact of the workspace and of the source."""
    when = as_of or datetime.now(UTC)
    arms = workspace_store.experiment_arms(workspace)
    enrollments = read_table(source, "enrollments")
    courses = read_table(source, "courses")
    if contacts is None:
        found = [workspace_store.all_contacts(workspace), all_contacts(source)]
        found = [c for c in found if c is not None and len(c)]
        contacts = pd.concat(found, ignore_index=True) if found else None
    table = outcomes(arms, enrollments, courses, contacts, when, horizon_days(config))
    comparisons = measure_effect(table, config.experiment)
    return {
        "as_of": pd.Timestamp(when).isoformat(),
        "drawn": len(arms),
        "control": int((arms["arm"] == ARM_CONTROL).sum()),
        "comparisons": as_records(comparisons),
        "plan": asdict(plan_for(arms, table, enrollments, config)),
    }


def plan_for(arms: pd.DataFrame, table: pd.DataFrame, enrollments: pd.DataFrame, config: Config):
    """The sizing from what the hold-out has seen: draws per week so far (else curators x
    capacity x the new share), the control arm's dropout once it has `min_per_arm` matured."""
    exp = config.experiment
    if len(arms):
        weeks = pd.to_datetime(arms["assigned_at"], utc=True).dt.normalize().nunique()
        new_per_week = len(arms) / max(weeks, 1)
    else:
        curators = enrollments["curator_id"].astype("str").nunique()
        new_per_week = curators * config.scoring.capacity * exp.plan_new_share
    matured = table[(table["arm"] == ARM_CONTROL) & table["dropout_matured"]]
    base = float(matured["dropout"].mean()) if len(matured) >= exp.min_per_arm else None
    if base is not None and not exp.plan_effect < base < 1:
        base = None
    return plan(
        new_per_week=new_per_week, config=exp, horizon_days=horizon_days(config), base_rate=base
    )


def effect_step(
    source: Path, as_of: datetime, config: Config, workspace: Workspace
) -> dict[str, Any] | None:
    """The effect measure as of T for the week's report; None when nobody was ever drawn or
    the source has no enrollments and courses to measure outcomes on (a frame given directly)."""
    if not len(workspace_store.experiment_arms(workspace)):
        return None
    if not {"enrollments", "courses"} <= set(locate_tables(source)):
        return None
    return effect_result(source, config, workspace, as_of)


# --- end hold-out ---------------------------------------------------------------------------


def explain_step(
    model,
    frame: pd.DataFrame,
    ranking: pd.DataFrame,
    dask: str | None = None,
    dataset: FeatureDataset | None = None,
) -> pd.DataFrame:
    """The model's per-feature contributions (log-odds) for the rows to explain (with `dask`
    and the frame's `dataset`: per part file on the cluster, each task reading only its rows)."""
    rows = ranking.index[ranking["explained"].to_numpy(dtype=bool)]
    if dask and dataset is not None:
        return contributions_on_cluster(model, frame, rows, dask, dataset)
    return model.contributions(frame.loc[rows])


def drift_step(model, frame: pd.DataFrame, risk: np.ndarray, config: Config) -> DriftCheck:
    """PSI of the model's top features and of the risk against its training reference (a model
    without one gives an empty check, reported as "not checked")."""
    reference = getattr(model, "reference", None)
    return check_drift(reference, frame, risk, config.drift, seed=config.model.seed)


def drift_warnings(check: DriftCheck) -> list[str]:
    """The week's warnings about drift, for the summary and the terminal (the report renders the
    check itself, in the report's language)."""
    if not check.has_reference:
        return ["drift not checked: the model carries no training reference (retrain it)"]
    if not check.count:
        return []
    listed = ", ".join(
        f"{r.name} {r.psi:.2f}" + (f" (limit {r.limit:.2f})" if r.limit > check.threshold else "")
        for r in check.drifted.itertuples(index=False)
    )
    return [
        f"drift: {check.count} of {len(check.table)} checked inputs differ from the training "
        f"data (PSI above {check.threshold:g}): {listed}. Check the source before relying on "
        "this week's lists."
    ]


def report_step(
    ranking: pd.DataFrame,
    history: History,
    *,
    as_of: datetime,
    model_uri: str,
    source: Path,
    config: Config,
    texts: Texts,
    drift: DriftCheck,
    effect: dict[str, Any] | None = None,
) -> str:
    sc = config.scoring
    previous = None if history.previous is None else history.previous["risk"].to_numpy("float64")
    ctx = ReportContext(
        as_of=as_of.date().isoformat(),
        model=model_uri,
        source=str(source),
        high_risk=sc.report_high_risk,
        decimals=sc.risk_decimals,
        histogram_bins=sc.report_histogram_bins,
        previous_risk=previous,
        trend=history.trend,
        warnings=(),  # drift is rendered by the report itself, in its language
        drift=drift.table,
        drift_threshold=config.drift.psi_threshold,
        winback_days=winback_inactive_days(config),
        winback_capacity=sc.winback_capacity,
        effect=effect,
        effect_level=config.experiment.confidence,
    )
    return build_report_from_template(ranking, ctx, texts)


def write_step(
    out_dir: Path,
    ranking: pd.DataFrame,
    report_html: str,
    summary: dict,
    config: Config,
    source: Path,
) -> dict[str, str]:
    texts = load_texts(config.scoring.language)
    lists = curator_lists(ranking, texts.tiers, texts.actions, config.scoring.risk_decimals)
    lists = with_first_names(lists, display_names_of(source))
    curators = sorted(ranking["curator_id"].astype("str").unique())
    stored = ranking.drop(columns=["curator_order", "eligible"])
    return outputs_store.write_week(
        out_dir,
        stored,
        lists,
        curators,
        report_html,
        summary,
        encoding=config.scoring.csv_encoding,
    )


def record_step(
    check: DriftCheck, summary: dict[str, Any], model, model_uri: str, config: Config
) -> str:
    """Record the week in MLflow (a run per scoring, next to the model's training run); returns
    the run id. Only counts, PSI and names of inputs: no student id, no attr_* value."""
    when = str(summary["as_of"])[:10]
    metrics = {
        **{f"{mlflow_store.PSI_PREFIX}{r.name}": r.psi for r in check.table.itertuples()},
        "drift_count": check.count,
        "drift_checked": len(check.table),
        "drift_max_psi": check.max_psi,
        "drift_threshold": check.threshold,
        **{k: summary[k] for k in RECORDED_COUNTS if k in summary},
    }
    tags = {
        mlflow_store.AS_OF_TAG: when,
        mlflow_store.DRIFT_WARNING_TAG: str(bool(check.count)).lower(),
        "drift_checked": str(check.has_reference).lower(),
        "drift_stage_matched": str(check.stage_matched).lower(),
        "drifted_features": ",".join(check.drifted["name"].astype("str")),
        "model_uri": model_uri,
        "source": str(summary.get("source", "")),
    }
    metadata = getattr(model, "metadata", None) or {}
    return mlflow_store.record_scoring_run(
        run_name=f"score-{when}",
        metrics=metrics,
        tags=tags,
        model_run_id=metadata.get("run_id"),
        model_name=config.registry.model_name,
        experiment=config.registry.experiment,
    )


# ------------------------------------------------------------------------------- sequence


@dataclass(frozen=True)
class ScoredWeek:
    """What `score_steps` produced: the result (what `notalone score` prints and returns) and
    the ranking in memory (the flow publishes the curator lists from it)."""

    result: dict[str, Any]
    ranking: pd.DataFrame


def score_steps(
    *,
    source: str | Path,
    as_of: datetime,
    config: Config,
    workspace: Workspace,
    steps: Steps,
    model_uri: str | None = None,
    out: str | Path | None = None,
    model=None,
    frame: pd.DataFrame | None = None,
    duplicate_events: bool | None = None,
    validate: bool = True,
    record: bool | None = None,
    dask: str | None = None,
) -> ScoredWeek:
    """Score the week: every step in order, each through `steps`.

    `model` skips loading it from MLflow (tests, bench); `frame` skips building the features.
    `duplicate_events`: what the caller's validation found (then validation is skipped here);
    `validate=False` takes the source as clean. `record`: record the week in MLflow; by default
    only when the model was loaded from MLflow here (an in-process model has no run to sit by).
    `dask`: a scheduler address; validation, features, prediction and contributions then run
    on its workers (with a `frame` given, only validation: the frame has no location).
    """
    source = Path(source)
    out_dir = output_folder(out, as_of, workspace)
    uri = model_uri or mlflow_store.champion_uri(config.registry.model_name)
    texts = load_texts(config.scoring.language, config)
    record = model is None if record is None else record

    if duplicate_events is None and validate and frame is None:
        duplicate_events = steps(
            "validate", None, check_source, source, config, workspace, steps.say, dask=dask
        )
    if model is None:
        model = steps("model", f"model {uri}", mlflow_store.load_model, uri, io=True)
    model = with_scoring_threads(model, config)
    cached_hit = None
    dataset = None
    if frame is None and dask:
        located = steps(
            "features",
            "features on the Dask cluster",
            cluster_features_step,
            source,
            config,
            as_of,
            duplicate_events,
            workspace,
            dask,
            steps.say,
            io=True,
        )
        frame, dataset, cached_hit = located.frame, located.dataset, located.hit
    elif frame is None:
        cached = steps(
            "features",
            "features",
            features_step,
            source,
            config,
            as_of,
            duplicate_events,
            workspace,
            steps.say,
            io=True,
        )
        frame, cached_hit = cached.frame, cached.hit
    risk = steps(
        "predict",
        f"predicting risk for {len(frame):,} enrollments",
        predict_step,
        model,
        frame,
        dask,
        dataset,
    )
    drift = steps(
        "drift", "drift check against the training data", drift_step, model, frame, risk, config
    )
    history = steps("history", "earlier weeks", history_step, out_dir, as_of, config, io=True)
    contacts = steps(
        "contacts", "recent contacts", contacts_step, source, as_of, config, workspace, io=True
    )
    titles = steps("titles", "course titles", course_titles, source, io=True)
    ranking = steps(
        "rank",
        "sections, triggers and ranking under curator capacity",
        rank_week,
        frame,
        risk,
        as_of,
        config,
        previous_risk=history.previous,
        previous_state=history.trigger_state,
        contacts=contacts,
    )
    # hold-out (issue 15): control students off the lists before anything is explained or written
    ranking = steps(
        "holdout",
        "hold-out: control arm",
        holdout_step,
        frame,
        ranking,
        as_of,
        config,
        workspace,
        io=True,
    )
    contributions = steps(
        "explain",
        "explaining the listed students",
        explain_step,
        model,
        frame,
        ranking,
        dask,
        dataset,
    )
    ranking = steps(
        "words",
        "reasons, tiers and first messages",
        explain_in_words,
        frame,
        ranking,
        contributions,
        titles,
        as_of,
        config,
        texts,
    )
    effect = steps(
        "effect",
        "hold-out: the effect measure so far",
        effect_step,
        source,
        as_of,
        config,
        workspace,
        io=True,
    )
    report = steps(
        "report",
        "report",
        report_step,
        ranking,
        history,
        as_of=as_of,
        model_uri=uri,
        source=source,
        config=config,
        texts=texts,
        drift=drift,
        effect=effect,
    )
    summary = {
        "as_of": as_of.isoformat(),
        "model_uri": uri,
        "source": str(source),
        "language": config.scoring.language,
        "previous": str(history.previous_folder) if history.previous_folder else None,
        "warnings": drift_warnings(drift),
        **summarise_week(ranking),
        "held_back_control": int((ranking["hold_back"] == "control").sum()),  # hold-out
        "drifted_inputs": drift.count,
        "drift": drift.summary(),
    }
    paths = steps(
        "write",
        f"writing {out_dir}",
        write_step,
        out_dir,
        ranking,
        report,
        summary,
        config,
        source,
        io=True,
    )
    published = None
    if config.workspace_app.publish:
        published = steps(
            "publish",
            "publishing the lists in the curator workspace",
            workspace_store.publish,
            ranking,
            as_of=as_of,
            model_uri=uri,
            config=config,
            texts=texts,
            source=source,
            titles=titles,
            workspace=workspace,
            io=True,
        )
    # After the outputs: MLflow only records weeks whose lists exist (a rerun records again).
    run_id = None
    if record:
        run_id = steps(
            "record",
            "recording the week in MLflow",
            record_step,
            drift,
            summary,
            model,
            uri,
            config,
            io=True,
        )
    result = {
        **summary,
        **paths,
        "mlflow_run_id": run_id,
        "workspace": published,
        "features_cached": cached_hit,
        "timings": dict(steps.seconds),
        "cpu_seconds": dict(steps.cpu_seconds),
    }
    return ScoredWeek(result, ranking)
