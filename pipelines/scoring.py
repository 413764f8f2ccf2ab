"""The weekly scorer: `notalone score --source DIR --as-of T [--model-uri URI] [--out DIR]`.

Plain step functions, run in order by `score_pipeline` (and wrapped as Prefect tasks by
`pipelines.flows.score_flow`):

    load_model_step     the champion (or --model-uri) from MLflow
    features_step       features at T for every active enrollment
    predict_step        calibrated P(dropout) per enrollment
    history_step        the previous scoring (risk change) and the risk trend, from the outputs
    contacts_step       latest curator contact per enrollment (optional `interventions` table)
    rank_step           triggers, cooldown and capacity -> who is listed, in which order
    explain_step        the model's contributions for the students to explain (listed ones)
    drift_step          PSI of the model's top features and of the risk against training
    words_step          reasons in words, support tier and action, first message
    report_step         report.html (a warning box on top when inputs drifted; the drift table)
    write_step          ranking.parquet, curators/<id>.csv, report.html - atomically
    record_step         a small MLflow run of the week: drift per input, counts (no ids)

Ranking needs only the risk and the features, so contributions (TreeSHAP: the expensive part) are
computed for listed students only unless `scoring.explain: all`.

`score_pipeline` is the one sequence of steps. It runs each step through a *runner*: directly
(`notalone score --no-prefect`), or as a Prefect task (`pipelines.flows.score_flow`, which also
builds the features through its cache and hands over the frame). `run_score` adds the source
validation and the per-week lock around it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from configs.schema import MESSAGES_DIR, Config
from features.errors import NotaloneError
from features.sources import SourceError, connect, locate_tables, read_table
from features.validate import require_valid
from interventions.messages import choose_messages
from interventions.ranking import curator_lists, last_contact, rank_for_curators, risk_change
from interventions.reasons import (
    combine_reasons,
    entry_fields,
    group_features,
    pick_reasons,
    render_reasons,
    typical_values,
)
from interventions.report import ReportContext, build_report
from interventions.routing import check_rule_features, fire_triggers, route, tiers_and_actions
from interventions.texts import Texts, TextsError, check_texts_cover, parse_texts, render_entry
from models.drift import DriftCheck, check_drift
from pipelines import outputs_store
from pipelines.featurize import parse_as_of
from pipelines.locks import workspace_lock
from pipelines.settings import Workspace

Progress = Callable[[str], None]
# runner(name, step, *args, io=...) -> step(*args): how `score_pipeline` runs each step (directly,
# or as a Prefect task; `io` steps read or write stores and may be retried).
StepRunner = Callable[..., Any]
CHAMPION_ALIAS = "champion"
KEY_COLUMNS = ["student_id", "course_id"]


class ScoringError(NotaloneError):
    """Nothing to score, or the scoring inputs do not fit together."""


# --------------------------------------------------------------------------------- inputs


def default_model_uri(config: Config) -> str:
    return f"models:/{config.registry.model_name}@{CHAMPION_ALIAS}"


def output_folder(out: str | Path | None, as_of: datetime, workspace: Workspace) -> Path:
    """The week folder: `--out` itself, else `$NOTALONE_HOME/outputs/<as-of date>`. Earlier weeks
    (for the change column and the trend) are its sibling folders."""
    if out is not None:
        return Path(out).expanduser().resolve()
    return outputs_store.week_folder(workspace.outputs, as_of)


def load_texts(language: str, config: Config | None = None) -> Texts:
    """Read configs/messages/<language>.yaml; with a config, check it covers every tier, action
    and trigger the config can produce."""
    path = MESSAGES_DIR / f"{language}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        texts = parse_texts(data or {}, language)
        if config is not None:
            tiers, actions = tiers_and_actions(config.scoring)
            check_texts_cover(texts, tiers, actions, {t.name for t in config.scoring.triggers})
    except FileNotFoundError as exc:
        raise ScoringError(f"message file not found: {path}") from exc
    except (yaml.YAMLError, TextsError) as exc:
        raise ScoringError(f"message file {path}: {exc}") from exc
    return texts


# ---------------------------------------------------------------------------------- steps


def load_model_step(model_uri: str):
    from pipelines.mlflow_store import load_model

    return load_model(model_uri)


def features_step(
    source: Path,
    config: Config,
    as_of: datetime,
    temp_dir: Path | None = None,
    progress: Progress | None = None,
    duplicate_events: bool | None = None,
) -> pd.DataFrame:
    """Features at T; `duplicate_events` as validation found it (None: the build checks)."""
    from features.build import build_feature_frame

    frame = build_feature_frame(
        source,
        config,
        as_of=as_of,
        progress=progress,
        temp_dir=temp_dir,
        duplicate_events=duplicate_events,
    )
    if frame.empty:
        raise ScoringError(
            f"no active enrollments in {source} at {as_of.isoformat()}: nothing to score "
            "(is the date inside a running course?)"
        )
    check_rule_features(config.scoring, list(frame.columns))
    return frame.reset_index(drop=True)


def with_scoring_threads(model, config: Config):
    """The model set to use `scoring.num_threads` LightGBM threads (None: every core).

    Training fixes its thread count for reproducible trees; a prediction or a row's
    contributions are the same whatever the count, and TreeSHAP for the listed students is the
    scorer's largest CPU cost.
    """
    threads = config.scoring.num_threads or os.cpu_count() or 1
    if is_dataclass(model) and hasattr(model, "num_threads"):
        return replace(model, num_threads=threads)
    return model


def predict_step(model, frame: pd.DataFrame) -> np.ndarray:
    """Calibrated risk per row; refuses a model whose inputs differ from the frame's
    (`ModelMismatch`, naming the columns)."""
    return np.asarray(model.predict_proba(frame), dtype="float64")


@dataclass(frozen=True)
class History:
    previous: pd.DataFrame | None  # student_id, course_id, risk of the latest earlier scoring
    previous_folder: Path | None
    trend: pd.DataFrame  # week, active, listed, mean_risk, high_share (oldest first)


def history_step(out_dir: Path, as_of: datetime, config: Config) -> History:
    root = Path(out_dir).parent
    previous, folder = outputs_store.read_previous_risk(root, as_of)
    trend = outputs_store.read_trend(
        root, as_of, config.scoring.report_trend_weeks, config.scoring.report_high_risk
    )
    return History(previous, folder, trend)


def contacts_step(source: Path, as_of: datetime, config: Config) -> pd.DataFrame | None:
    """Latest contact per (student, course) in [T - cooldown_days, T), from the optional
    `interventions` table; None when the source has none."""
    tables = locate_tables(source)
    if "interventions" not in tables:
        return None
    start = as_of - timedelta(days=config.scoring.cooldown_days)
    con = connect()
    try:
        return con.execute(
            f"""
            SELECT CAST(student_id AS VARCHAR) AS student_id,
                   CAST(course_id AS VARCHAR) AS course_id,
                   max(CAST(ts AS TIMESTAMPTZ)) AS ts
            FROM {tables["interventions"].scan_sql()}
            WHERE CAST(ts AS TIMESTAMPTZ) >= $start AND CAST(ts AS TIMESTAMPTZ) < $t
            GROUP BY ALL
            """,
            {"start": start, "t": as_of},
        ).df()
    except Exception as exc:  # duckdb errors: unreadable table or columns
        raise SourceError(
            f"cannot read table 'interventions': {exc}", table="interventions"
        ) from exc
    finally:
        con.close()


def course_titles_step(source: Path) -> pd.Series:
    """course_id -> title (the id itself when the source has no title)."""
    courses = read_table(source, "courses")
    ids = courses["course_id"].astype("str")
    if "title" in courses.columns:
        titles = courses["title"].astype("str").where(courses["title"].notna(), ids)
    else:
        titles = ids
    titles = pd.Series(titles.to_numpy(dtype=object), index=ids.to_numpy(dtype=object))
    return titles[~titles.index.duplicated()]  # an exact duplicate course row is only a warning


def rank_step(
    frame: pd.DataFrame,
    risk: np.ndarray,
    history: History,
    contacts: pd.DataFrame | None,
    as_of: datetime,
    config: Config,
) -> pd.DataFrame:
    """The ranking skeleton for every active enrollment: risk, change, triggers, cooldown,
    listed / rank / hold_back, and whether the row will be explained. Index = frame's."""
    keys = frame[KEY_COLUMNS].astype("str")
    previous_risk, change = risk_change(keys, risk, history.previous)
    fired = fire_triggers(frame, config.scoring)
    table = pd.DataFrame(
        {
            "student_id": keys["student_id"],
            "course_id": keys["course_id"],
            "curator_id": frame["curator_id"].astype("str"),
            "mentor_id": frame["mentor_id"].astype("str")
            if "mentor_id" in frame.columns
            else pd.Series(None, index=frame.index, dtype="str"),
            "as_of": frame["as_of"],
            "risk": risk,
            "previous_risk": previous_risk,
            "change": change,
        },
        index=frame.index,
    )
    table = pd.concat([table, fired], axis=1)
    table["last_contact_at"] = last_contact(keys, contacts)
    table["last_contact_at"] = pd.to_datetime(table["last_contact_at"], utc=True)
    table = pd.concat([table, rank_for_curators(table, as_of, config.scoring)], axis=1)
    table["explained"] = (
        True if config.scoring.explain == "all" else table["listed"].to_numpy(dtype=bool)
    )
    return table


def explain_step(model, frame: pd.DataFrame, ranking: pd.DataFrame) -> pd.DataFrame:
    """The model's per-feature contributions (log-odds) for the rows to explain."""
    rows = ranking.index[ranking["explained"].to_numpy(dtype=bool)]
    return model.contributions(frame.loc[rows])


def words_step(
    frame: pd.DataFrame,
    ranking: pd.DataFrame,
    contributions: pd.DataFrame,
    titles: pd.Series,
    as_of: datetime,
    config: Config,
    texts: Texts,
) -> pd.DataFrame:
    """Reasons, tier, action and message for the explained rows; the full ranking back, sorted
    by curator and list order."""
    sc = config.scoring
    k = sc.reasons_per_student
    rows = contributions.index
    sub = frame.loc[rows]
    groups = group_features(list(contributions.columns), sc.reason_groups, sc.skip_reason_prefixes)
    picks = pick_reasons(contributions, groups, k, sc.min_reason_contribution)
    shown = pd.unique(
        np.concatenate([picks[f"reason_{i}_feature"].dropna().to_numpy() for i in range(1, k + 1)])
    )
    trigger_features = [t.feature for t in sc.triggers]
    typical = typical_values(frame, [*map(str, shown), *trigger_features])
    model_texts = render_reasons(picks, sub, texts, k, typical)

    trigger_reasons = []
    for trigger in sc.triggers:
        fired = ranking.loc[rows, f"trigger_{trigger.name}"].to_numpy(dtype=bool)
        text = np.full(len(rows), None, dtype=object)
        where = np.flatnonzero(fired)
        if len(where):
            entry = texts.triggers[trigger.name]
            _, window = texts.reason_entry(trigger.feature)
            values = sub[trigger.feature].to_numpy(dtype="float64", na_value=np.nan)[where]
            fields = entry_fields(entry, trigger.feature, window, sub, where, typical)
            text[where] = render_entry(entry, values, fields, texts)
        trigger_reasons.append((pd.Series(text, index=rows, dtype="str"), trigger.reason_group))
    combined = combine_reasons(pd.concat([picks, model_texts], axis=1), trigger_reasons, k)

    reason_matrix = np.column_stack(
        [picks[f"reason_{i}_group"].to_numpy(dtype=object, na_value=None) for i in range(1, k + 1)]
    )
    fired_sub = ranking.loc[rows, [f"trigger_{t.name}" for t in sc.triggers]]
    routing = route(sub, fired_sub, reason_matrix, sc)
    course_ids = ranking.loc[rows, "course_id"]
    messages = choose_messages(
        ranking.loc[rows, "student_id"],
        course_ids,
        as_of.date().isoformat(),
        routing["action"],
        combined["lead_group"],
        pd.Series(course_ids.map(titles).fillna(course_ids).to_numpy(), index=rows),
        texts,
    )
    words = pd.concat([picks.drop(columns="reasons_count"), model_texts], axis=1)
    ordered = [c for i in range(1, k + 1) for c in _slot_columns(i)]
    words = words[["reasons_fallback", *ordered]]
    words = pd.concat([words, combined, routing, messages], axis=1)
    full = ranking.join(words)
    full["reasons_fallback"] = full["reasons_fallback"].astype("boolean")
    full["reasons_count"] = full["reasons_count"].astype("Int64")
    return full.sort_values(["curator_id", "curator_order"], kind="stable").reset_index(drop=True)


def _slot_columns(i: int) -> list[str]:
    return [
        f"reason_{i}_group",
        f"reason_{i}_feature",
        f"reason_{i}_contribution",
        f"reason_{i}_text",
    ]


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
    as_of: datetime,
    model_uri: str,
    source: Path,
    config: Config,
    texts: Texts,
    warnings: list[str] | None = None,
    drift: DriftCheck | None = None,
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
        warnings=tuple(warnings or ()),
        drift=None if drift is None else drift.table,
        drift_threshold=config.drift.psi_threshold,
    )
    return build_report(ranking, ctx, texts)


def write_step(
    out_dir: Path, ranking: pd.DataFrame, report_html: str, summary: dict, config: Config
) -> dict[str, str]:
    texts = load_texts(config.scoring.language)
    lists = curator_lists(ranking, texts.tiers, texts.actions, config.scoring.risk_decimals)
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
    from pipelines import mlflow_store

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


# Counts of the week's summary also recorded in MLflow (product leads compare weeks there).
RECORDED_COUNTS = ("students", "listed", "triggered_listed", "held_back_cooldown", "mean_risk")


def summarise(ranking: pd.DataFrame) -> dict[str, Any]:
    hold = ranking["hold_back"]
    return {
        "students": len(ranking),
        "curators": int(ranking["curator_id"].nunique()),
        "listed": int(ranking["listed"].sum()),
        "triggered": int(ranking["triggered"].sum()),
        "triggered_listed": int((ranking["triggered"] & ranking["listed"]).sum()),
        "held_back_cooldown": int((hold == "cooldown").sum()),
        "held_back_capacity": int((hold == "capacity").sum()),
        "mean_risk": float(ranking["risk"].mean()),
    }


# ------------------------------------------------------------------------------- pipeline


def run_directly(name: str, step: Callable, *args, io: bool = False):
    """The plain runner: call the step."""
    return step(*args)


@dataclass(frozen=True)
class ScoredWeek:
    """What `score_steps` produced: the result (as `score_pipeline` returns it) and the ranking
    in memory (the flow publishes the curator lists from it)."""

    result: dict[str, Any]
    ranking: pd.DataFrame


def score_pipeline(
    source: str | Path,
    as_of: str | datetime,
    model_uri: str | None = None,
    out: str | Path | None = None,
    config: Config | None = None,
    progress: Progress | None = None,
    model=None,
    frame: pd.DataFrame | None = None,
    runner: StepRunner | None = None,
    record: bool | None = None,
    duplicate_events: bool | None = None,
) -> dict[str, Any]:
    """Score the week: every step in order, each through `runner` (default: called directly).

    `model` skips loading it from MLflow (tests, bench); `frame` skips building the features
    (the flow's feature cache). `record`: record the week in MLflow; by default only when the
    model was loaded from MLflow here (a model handed over in-process has no run to sit next to).
    `duplicate_events`: whether validation found exact duplicate events (None: the build checks).
    """
    return score_steps(
        source,
        as_of,
        model_uri,
        out,
        config,
        progress,
        model,
        frame,
        runner,
        record,
        duplicate_events,
    ).result


def score_steps(
    source: str | Path,
    as_of: str | datetime,
    model_uri: str | None = None,
    out: str | Path | None = None,
    config: Config | None = None,
    progress: Progress | None = None,
    model=None,
    frame: pd.DataFrame | None = None,
    runner: StepRunner | None = None,
    record: bool | None = None,
    duplicate_events: bool | None = None,
) -> ScoredWeek:
    """`score_pipeline`, also handing back the ranking frame."""
    from configs import load_config

    config = config or load_config()
    say = progress or (lambda _msg: None)
    run = runner or run_directly
    workspace = Workspace.resolve().activate()
    source = Path(source)
    when = parse_as_of(as_of)
    out_dir = output_folder(out, when, workspace)
    uri = model_uri or default_model_uri(config)
    texts = load_texts(config.scoring.language, config)
    record = model is None if record is None else record
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, note: str, func, *args, io: bool = False):
        say(note)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run(name, func, *args, io=io)
        timings[name] = round(time.perf_counter() - started, 3)
        cpu[name] = round(time.process_time() - cpu_started, 3)
        return result

    if model is None:
        model = timed("model", f"model {uri}", load_model_step, uri, io=True)
    model = with_scoring_threads(model, config)
    if frame is None:
        frame = timed(
            "features",
            "features",
            features_step,
            source,
            config,
            when,
            workspace.tmp,
            lambda m: say(f"features: {m}"),
            duplicate_events,
            io=True,
        )
    risk = timed(
        "predict", f"predicting risk for {len(frame):,} enrollments", predict_step, model, frame
    )
    drift = timed(
        "drift", "drift check against the training data", drift_step, model, frame, risk, config
    )
    history = timed("history", "earlier weeks", history_step, out_dir, when, config, io=True)
    contacts = timed("contacts", "recent contacts", contacts_step, source, when, config, io=True)
    titles = timed("titles", "course titles", course_titles_step, source, io=True)
    ranking = timed(
        "rank",
        "ranking under curator capacity",
        rank_step,
        frame,
        risk,
        history,
        contacts,
        when,
        config,
    )
    contributions = timed(
        "explain", "explaining the listed students", explain_step, model, frame, ranking
    )
    ranking = timed(
        "words",
        "reasons, tiers and first messages",
        words_step,
        frame,
        ranking,
        contributions,
        titles,
        when,
        config,
        texts,
    )
    warnings = drift_warnings(drift)
    report = timed(
        "report",
        "report",
        report_step,
        ranking,
        history,
        when,
        uri,
        source,
        config,
        texts,
        [],  # drift is rendered by the report itself, in its language
        drift,
    )
    summary = {
        "as_of": when.isoformat(),
        "model_uri": uri,
        "source": str(source),
        "language": config.scoring.language,
        "previous": str(history.previous_folder) if history.previous_folder else None,
        "warnings": warnings,
        **summarise(ranking),
        "drifted_inputs": drift.count,
        "drift": drift.summary(),
    }
    paths = timed(
        "write",
        f"writing {out_dir}",
        write_step,
        out_dir,
        ranking,
        report,
        summary,
        config,
        io=True,
    )
    # After the outputs: MLflow only records weeks whose lists exist (a rerun records again).
    run_id = None
    if record:
        run_id = timed(
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
    result = {**summary, **paths, "mlflow_run_id": run_id, "timings": timings, "cpu_seconds": cpu}
    return ScoredWeek(result, ranking)


def _score_flow():
    """`pipelines.flows.score_flow` when the flows module provides it, else None."""
    if importlib.util.find_spec("pipelines.flows") is None:
        return None
    from pipelines import flows

    return getattr(flows, "score_flow", None)


def run_score(
    source: str | Path,
    as_of: str | datetime,
    model_uri: str | None = None,
    out: str | Path | None = None,
    config: Config | None = None,
    use_prefect: bool = True,
) -> dict[str, Any]:
    """`notalone score`: score the week, write the outputs, print where they are."""
    from rich.console import Console

    from configs import load_config

    config = config or load_config()
    workspace = Workspace.resolve().activate()
    err = Console(stderr=True)
    when = parse_as_of(as_of)
    # A source that breaks the contract is never scored: its lists would be silently wrong.
    with err.status("validating the source"):
        report = require_valid(Path(source), config.validation, temp_dir=workspace.tmp)
    if report.warnings:
        err.print(f"[yellow]{len(report.warnings)} validation warning(s)[/yellow]")
    week = output_folder(out, when, workspace)
    # Two scorers of the same week would interleave files: the second waits, then stops.
    lock_name = "score-" + hashlib.sha256(str(week).encode()).hexdigest()[:16]
    with workspace_lock(
        workspace.locks,
        lock_name,
        config.scoring.lock_wait_seconds,
        on_wait=lambda m: err.print(f"[yellow]{m}[/yellow]"),
    ):
        flow = _score_flow() if use_prefect else None
        if flow is not None:
            from pipelines.flows import reporting

            with reporting(lambda m: err.print(f"[dim]{m}[/dim]")):
                result = flow(
                    source=str(source),
                    as_of=when.isoformat(),
                    model_uri=model_uri,
                    out=str(out) if out is not None else None,
                    config=config,
                    duplicate_events=report.duplicate_events,
                )
        else:
            result = score_pipeline(
                source,
                when,
                model_uri,
                out,
                config,
                progress=lambda m: err.print(f"[dim]{m}[/dim]"),
                duplicate_events=report.duplicate_events,
            )
    print_summary(result)
    return result


def print_summary(result: dict[str, Any]) -> None:
    from rich.console import Console

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
