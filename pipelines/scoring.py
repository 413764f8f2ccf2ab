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
    words_step          reasons in words, support tier and action, first message
    report_step         report.html
    write_step          ranking.parquet, curators/<id>.csv, report.html - atomically

Ranking needs only the risk and the features, so contributions (TreeSHAP: the expensive part) are
computed for listed students only unless `scoring.explain: all`.

Issue 7 hooks: a lock around `write_step`, a validation/drift step before `rank_step` (its
messages go to `report_step(warnings=...)` and the result's "warnings").
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from pipelines import outputs_store
from pipelines.featurize import parse_as_of
from pipelines.locks import workspace_lock
from pipelines.settings import Workspace

Progress = Callable[[str], None]
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
) -> pd.DataFrame:
    from features.build import build_feature_frame

    frame = build_feature_frame(source, config, as_of=as_of, progress=progress, temp_dir=temp_dir)
    if frame.empty:
        raise ScoringError(
            f"no active enrollments in {source} at {as_of.isoformat()}: nothing to score "
            "(is the date inside a running course?)"
        )
    check_rule_features(config.scoring, list(frame.columns))
    return frame.reset_index(drop=True)


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


def report_step(
    ranking: pd.DataFrame,
    history: History,
    as_of: datetime,
    model_uri: str,
    source: Path,
    config: Config,
    texts: Texts,
    warnings: list[str] | None = None,
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


def score_pipeline(
    source: str | Path,
    as_of: str | datetime,
    model_uri: str | None = None,
    out: str | Path | None = None,
    config: Config | None = None,
    progress: Progress | None = None,
    model=None,
) -> dict[str, Any]:
    """Run every step directly (no Prefect). `model` skips loading from MLflow (tests, bench)."""
    from configs import load_config

    config = config or load_config()
    say = progress or (lambda _msg: None)
    workspace = Workspace.resolve().activate()
    source = Path(source)
    when = parse_as_of(as_of)
    out_dir = output_folder(out, when, workspace)
    uri = model_uri or default_model_uri(config)
    texts = load_texts(config.scoring.language, config)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, func, *args, **kwargs):
        say(name)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = func(*args, **kwargs)
        timings[name] = round(time.perf_counter() - started, 3)
        cpu[name] = round(time.process_time() - cpu_started, 3)
        return result

    if model is None:
        model = timed("model", load_model_step, uri)
    frame = timed(
        "features",
        features_step,
        source,
        config,
        when,
        workspace.tmp,
        lambda m: say(f"features: {m}"),
    )
    risk = timed("predict", predict_step, model, frame)
    history = timed("history", history_step, out_dir, when, config)
    contacts = timed("contacts", contacts_step, source, when, config)
    titles = course_titles_step(source)
    ranking = timed("rank", rank_step, frame, risk, history, contacts, when, config)
    contributions = timed("explain", explain_step, model, frame, ranking)
    ranking = timed("words", words_step, frame, ranking, contributions, titles, when, config, texts)
    warnings: list[str] = []
    report = timed(
        "report", report_step, ranking, history, when, uri, source, config, texts, warnings
    )
    summary = {
        "as_of": when.isoformat(),
        "model_uri": uri,
        "source": str(source),
        "language": config.scoring.language,
        "previous": str(history.previous_folder) if history.previous_folder else None,
        "warnings": warnings,
        **summarise(ranking),
    }
    paths = timed("write", write_step, out_dir, ranking, report, summary, config)
    return {**summary, **paths, "timings": timings, "cpu_seconds": cpu}


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
                )
        else:
            result = score_pipeline(
                source,
                when,
                model_uri,
                out,
                config,
                progress=lambda m: err.print(f"[dim]{m}[/dim]"),
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
    for warning in result.get("warnings") or ():
        console.print(f"  [yellow]warning:[/yellow] {warning}")
