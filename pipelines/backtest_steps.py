"""The backtest: replay the weekly lists of a range of weeks with one model, and measure them
against what happened. One step sequence for `notalone backtest` (and its tests).

    validate   the contract check
    model      the champion (or --model-uri)
    features   every week's snapshots at once (calendar weeks, through the feature cache; with
               --dask built on the cluster, and the risk of every row predicted there)
    replay     per week, the weekly job's rules: risk, triggers, cooldown (contacts recorded in
               the source, and with --assume-contacted the backtest's own earlier lists),
               capacity -> who is listed; plus the drift check
    measure    per week and overall: ranking, precision and recall at capacity, reach and lead
               time, "already gone" slots, churn, drift warnings
    write      weekly.csv, overall.json, replay.parquet and a self-contained report.html
    record     an MLflow run of kind backtest
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import Config
from features.build import CalendarWeeks
from features.errors import NotaloneError
from features.sources import all_contacts, atomic_dir, read_table
from interventions.triggers import state_from_ranking
from interventions.weekly import ENROLLMENT_KEYS, rank_week
from models.backtest import (
    as_of_times,
    lead_times,
    overall_metrics,
    unseen_metrics,
    unseen_rows,
    weekly_table,
)
from pipelines import mlflow_store
from pipelines.backtest_report import backtest_html
from pipelines.checks import check_source
from pipelines.feature_cache import workspace_features
from pipelines.feature_partitions import LocatedFrame, workspace_cluster_features
from pipelines.runner import Progress, Steps
from pipelines.score_steps import drift_step, predict_step, with_scoring_threads
from pipelines.settings import Workspace
from pipelines.summaries import format_number, json_safe

# A contact within this many days before t counts as "recently active" for the recall of
# dropouts who could still be reached.
RECENTLY_ACTIVE_DAYS = 14


class BacktestError(NotaloneError):
    """The range has nothing to replay, or its settings do not fit together."""


def features_step(
    source: Path,
    config: Config,
    weeks: CalendarWeeks,
    duplicate_events: bool | None,
    workspace: Workspace,
    progress: Progress,
) -> pd.DataFrame:
    cached = workspace_features(
        source, config, weeks, duplicate_events, lambda m: progress(f"features: {m}"), workspace
    )
    return cached.frame


def cluster_features_step(
    source: Path,
    config: Config,
    weeks: CalendarWeeks,
    duplicate_events: bool | None,
    workspace: Workspace,
    dask: str,
    progress: Progress,
) -> LocatedFrame:
    """`features_step` built on the cluster into a partitioned dataset in the workspace cache."""
    return workspace_cluster_features(
        source,
        config,
        weeks,
        duplicate_events,
        workspace,
        dask,
        lambda m: progress(f"features: {m}"),
    )


def latest_contacts(contacts: pd.DataFrame | None, start: datetime, end: datetime):
    """Latest contact per enrollment in [start, end), in the scorer's shape (or None)."""
    if contacts is None or contacts.empty:
        return None
    window = contacts[(contacts["ts"] >= start) & (contacts["ts"] < end)]
    return window.groupby(ENROLLMENT_KEYS, as_index=False, sort=False)["ts"].max()


def replay_step(
    frame: pd.DataFrame,
    model,
    times: list[pd.Timestamp],
    recorded: pd.DataFrame | None,
    left_at: pd.Series,
    *,
    config: Config,
    assume_contacted: bool,
    progress: Progress,
    risks: np.ndarray | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Each week as the weekly job would have listed it; the replay table and the drift checks.
    `risks`: the risk of every row of `frame`, predicted beforehand (on a cluster)."""
    horizon = config.snapshots.horizon_days
    cooldown = timedelta(days=config.scoring.cooldown_days)
    previous = None
    state = None
    assumed: list[pd.DataFrame] = []
    weeks, drifts = [], []
    for i, t in enumerate(times, start=1):
        progress(f"week {i}/{len(times)}: {t.date()}")
        in_week = (frame["as_of"] == t).to_numpy()
        week = frame[in_week].reset_index(drop=True)
        risk = predict_step(model, week) if risks is None else risks[in_week]
        drift = drift_step(model, week, risk, config)
        drifts.append(
            {
                "as_of": t,
                "drift_warning": bool(drift.count),
                "drifted": drift.count,
                # which inputs, with PSI / limit: what a lead checks before trusting a warning
                "drifted_inputs": "; ".join(
                    f"{r.name} {r.psi:.2f}/{r.limit:.2f}"
                    for r in drift.drifted.itertuples(index=False)
                ),
            }
        )
        contacts = recorded
        if assume_contacted and assumed:
            contacts = pd.concat([c for c in (recorded, *assumed) if c is not None])
        when = t.to_pydatetime()
        ranking = rank_week(
            week,
            risk,
            when,
            config,
            previous_risk=previous,
            previous_state=state_from_ranking(state, config.scoring),
            contacts=latest_contacts(contacts, when - cooldown, when),
        )
        # What the next week reads back, as the scorer reads last week's ranking.parquet.
        previous = ranking[[*ENROLLMENT_KEYS, "risk"]]
        state = ranking
        listed = ranking["listed"].to_numpy(dtype=bool)
        if assume_contacted:
            assumed.append(ranking.loc[listed, ENROLLMENT_KEYS].assign(ts=t))
        idle = week["days_since_last_activity"].to_numpy(dtype=float, na_value=np.nan)
        enrolled_days = week["days_since_enrolment"].to_numpy(dtype=float, na_value=np.nan)
        already_gone = np.where(np.isnan(idle), enrolled_days >= horizon, idle >= horizon)
        keys = list(zip(ranking["student_id"], ranking["course_id"], strict=True))
        weeks.append(
            pd.DataFrame(
                {
                    "student_id": ranking["student_id"],
                    "course_id": ranking["course_id"],
                    "curator_id": ranking["curator_id"],
                    "as_of": t,
                    "risk": risk,
                    "listed": listed,
                    "section": ranking["section"],
                    "rank": ranking["rank"],
                    "triggered": ranking["triggered"].to_numpy(dtype=bool),
                    "hold_back": ranking["hold_back"],
                    "label": week["label"].to_numpy(dtype=float),
                    "already_gone": already_gone,
                    "recently_active": idle < RECENTLY_ACTIVE_DAYS,
                    "left_at": left_at.reindex(keys).to_numpy(),
                }
            )
        )
    return pd.concat(weeks, ignore_index=True), drifts


def left_at_step(source: Path) -> pd.Series:
    """When each enrollment ended (unenrolled_at; NaT while enrolled), by (student, course)."""
    enrollments = read_table(source, "enrollments")
    ended = pd.to_datetime(enrollments["unenrolled_at"], utc=True)
    index = pd.MultiIndex.from_arrays(
        [enrollments["student_id"].astype("str"), enrollments["course_id"].astype("str")]
    )
    series = pd.Series(ended.to_numpy(), index=index)
    return series[~series.index.duplicated()]


def _series(weekly: pd.DataFrame, column: str) -> list[tuple[int, float]]:
    values = weekly[column].to_numpy(dtype=float)
    return [(i, float(v)) for i, v in enumerate(values) if not math.isnan(v)]


def backtest_steps(
    *,
    source: str | Path,
    config: Config,
    workspace: Workspace,
    steps: Steps,
    start: datetime,
    end: datetime,
    every_days: int,
    model_uri: str | None = None,
    model=None,
    assume_contacted: bool = False,
    out: str | Path | None = None,
    record: bool = True,
    dask: str | None = None,
) -> dict[str, Any]:
    """Replay the weekly lists of [start, end] every `every_days` days and measure them.
    `dask`: a scheduler address; validation, the features and the risks then run on its workers
    (the replay, on the client, is the same)."""
    source = Path(source)
    step_days = config.snapshots.step_days
    if every_days < step_days or every_days % step_days:
        raise BacktestError(
            f"--every {every_days}: must be a multiple of snapshots.step_days ({step_days})"
        )
    if end < start:
        raise BacktestError(f"--to {end.date()} is before --from {start.date()}")
    uri = model_uri or mlflow_store.champion_uri(config.registry.model_name)
    duplicate_events = steps(
        "validate", None, check_source, source, config, workspace, steps.say, dask=dask
    )
    if model is None:
        model = steps("model", f"model {uri}", mlflow_store.load_model, uri, io=True)
    model = with_scoring_threads(model, config)
    weeks = CalendarWeeks(start, end)
    risks = None
    if dask:
        located = steps(
            "features",
            f"features of every week {start.date()} .. {end.date()} on the Dask cluster",
            cluster_features_step,
            source,
            config,
            weeks,
            duplicate_events,
            workspace,
            dask,
            steps.say,
            io=True,
        )
        frame = located.frame
        if len(frame):
            risks = steps(
                "predict",
                f"predicting {len(frame):,} rows on the Dask cluster",
                predict_step,
                model,
                frame,
                dask,
                located.dataset,
            )
    else:
        frame = steps(
            "features",
            f"features of every week {start.date()} .. {end.date()}",
            features_step,
            source,
            config,
            weeks,
            duplicate_events,
            workspace,
            steps.say,
            io=True,
        )
    times = as_of_times(frame["as_of"], pd.Timestamp(start), pd.Timestamp(end), every_days)
    if not times:
        raise BacktestError(
            f"no active enrollments in {source} between {start.date()} and {end.date()}: "
            "nothing to replay"
        )
    recorded = steps("contacts", "recorded contacts", all_contacts, source, io=True)
    left_at = steps("enrollments", None, left_at_step, source, io=True)
    replay, drifts = steps(
        "replay",
        f"replaying {len(times)} weeks",
        replay_step,
        frame,
        model,
        times,
        recorded,
        left_at,
        config=config,
        assume_contacted=assume_contacted,
        progress=steps.say,
        risks=risks,
    )
    weekly = weekly_table(replay).merge(pd.DataFrame(drifts), on="as_of", how="left")
    leads = lead_times(replay)
    overall = overall_metrics(replay, weekly, leads)
    overall["drift_warnings"] = int(weekly["drift_warning"].sum())
    # A model refit on every labelled snapshot may have learned from the replayed weeks: its
    # ranking metrics there are in sample. Say so, and measure the rows it never saw apart.
    meta = getattr(model, "metadata", None) or {}
    learned = meta.get("learned_as_of_max")
    warnings = []
    if learned and meta.get("learned_runs") is not None:
        unseen = unseen_rows(replay, meta["learned_runs"], learned)
        overall.update(unseen_metrics(replay, unseen))
        if not unseen.all():
            warnings.append(
                f"{int((~unseen).sum()):,} of {len(replay):,} replayed rows are of course runs "
                f"the model learned from (up to {str(learned)[:10]}): the pooled ranking metrics "
                f"are in sample; over the {overall['unseen_rows']:,} rows it never saw "
                f"({overall['unseen_runs']} runs): ROC-AUC "
                f"{format_number(overall['unseen_roc_auc'])}, PR-AUC "
                f"{format_number(overall['unseen_pr_auc'])}"
            )
    elif learned and pd.Timestamp(learned) >= pd.Timestamp(start):
        warnings.append(
            f"the model learned from snapshots up to {str(learned)[:10]}, inside the "
            f"replayed range: its ranking metrics here are in sample (train on data before "
            f"{start.date()} for an honest backtest)"
        )
    settings = {
        "source": str(source),
        "from": start.date().isoformat(),
        "to": end.date().isoformat(),
        "every_days": every_days,
        "model_uri": uri,
        "assume_contacted": assume_contacted,
        "capacity": config.scoring.capacity,
    }
    folder = Path(out) if out else workspace.outputs / "backtests" / f"{start.date()}_{end.date()}"
    html = backtest_html(weekly, overall, leads, {**settings, "warnings": "; ".join(warnings)})
    with atomic_dir(folder) as tmp:
        weekly.to_csv(tmp / "weekly.csv", index=False)
        replay.to_parquet(tmp / "replay.parquet", index=False)
        summary = json.dumps(json_safe(overall), indent=2)
        (tmp / "overall.json").write_text(summary, encoding="utf-8")
        (tmp / "report.html").write_text(html, encoding="utf-8")
    run_id = None
    if record:
        run_id = steps(
            "record",
            "recording the backtest in MLflow",
            mlflow_store.record_backtest_run,
            run_name=f"backtest {start.date()}..{end.date()}",
            experiment=config.registry.experiment,
            params=settings,
            metrics=overall,
            weekly={
                c: _series(weekly, c)
                for c in ("roc_auc", "pr_auc", "precision_at_capacity", "recall_at_capacity")
            },
            texts={"backtest/weekly.csv": weekly.to_csv(index=False), "backtest/report.html": html},
            io=True,
        )
    return {
        **settings,
        "overall": json_safe(overall),
        "warnings": warnings,
        "weekly": json_safe(weekly.assign(as_of=weekly["as_of"].astype(str)).to_dict("records")),
        "out": str(folder),
        "report": str(folder / "report.html"),
        "mlflow_run_id": run_id,
        "seconds": dict(steps.seconds),
    }
