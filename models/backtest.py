"""How replayed weekly lists would have done: plain functions over the backtest's replay table.

The replay table has one row per (enrollment, as-of time) the weekly job would have scored:
student_id, course_id, as_of, risk, listed, triggered, label (1 dropout within the horizon, 0
stayed, NaN unknown yet), already_gone (no activity for the whole horizon before t), recently
active (some activity in the last `active_days` days), and left_at (when the enrollment ended, if
it did). Metrics are measured against what happened, never against the model's own view.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from models.evaluation import ranking_metrics

WIN_BACK = "win_back"  # the section name of interventions.winback (models cannot import it)

ENROLLMENT = ["student_id", "course_id"]
SECONDS_PER_WEEK = 7 * 86400


def _share(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def _early_warning(frame: pd.DataFrame) -> np.ndarray:
    """Rows in the early-warning section (every row when the lists have no sections)."""
    if "section" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return frame["section"].astype("str").to_numpy(dtype=object, na_value=None) != WIN_BACK


def week_metrics(week: pd.DataFrame, previous_listed: set[tuple[str, str]] | None) -> dict:
    """The metrics of one replayed week (`previous_listed`: who was listed the week before).
    "Already gone" slots are counted among the early-warning slots: the win-back section is
    for students already gone, by design."""
    listed = week["listed"].to_numpy(dtype=bool)
    early = listed & _early_warning(week)
    labelled = week["label"].notna().to_numpy()
    y = week["label"].to_numpy(dtype=float)
    positive = labelled & (y == 1)
    gone = week["already_gone"].to_numpy(dtype=bool)
    active = week["recently_active"].to_numpy(dtype=bool)
    ranked = ranking_metrics(y[labelled].astype(int), week["risk"].to_numpy()[labelled])
    keys = set(zip(week["student_id"][listed], week["course_id"][listed], strict=True))
    churn = math.nan
    if previous_listed is not None and keys:
        churn = _share(len(keys - previous_listed), len(keys))
    return {
        "students": int(len(week)),
        "listed": int(listed.sum()),
        "labelled": int(labelled.sum()),
        "dropouts": int(positive.sum()),
        "roc_auc": ranked["roc_auc"],
        "pr_auc": ranked["pr_auc"],
        "precision_at_capacity": _share((listed & positive).sum(), (listed & labelled).sum()),
        "recall_at_capacity": _share((listed & positive).sum(), positive.sum()),
        "recall_active_dropouts": _share(
            (listed & positive & active).sum(), (positive & active).sum()
        ),
        "triggered_share": _share(week["triggered"].to_numpy(dtype=bool).sum(), len(week)),
        "win_back_listed": int((listed & ~early).sum()),
        "already_gone_share_of_slots": _share((early & gone).sum(), early.sum()),
        "already_gone_share_of_population": _share(gone.sum(), len(week)),
        "churn": churn,
    }


def weekly_table(replay: pd.DataFrame) -> pd.DataFrame:
    """One row of `week_metrics` per as-of time, oldest first."""
    rows = []
    previous: set[tuple[str, str]] | None = None
    for as_of, week in replay.groupby("as_of", sort=True):
        rows.append({"as_of": as_of, **week_metrics(week, previous)})
        listed = week[week["listed"].to_numpy(dtype=bool)]
        previous = set(zip(listed["student_id"], listed["course_id"], strict=True))
    return pd.DataFrame(rows)


def lead_times(replay: pd.DataFrame) -> pd.DataFrame:
    """Per eventual dropout (an enrollment labelled 1 at some scored week): whether it was on a
    list before it left, and the weeks from its first listing to leaving.

    Leaving is `left_at` when the enrollment ended formally, else the latest as-of time at which
    the dropout label held (the horizon then ends within the next weeks: a lower bound).
    """
    positive = replay[replay["label"] == 1]
    if positive.empty:
        columns = [*ENROLLMENT, "left_at", "first_listed", "reached", "lead_weeks"]
        return pd.DataFrame(columns=columns)
    left = positive.groupby(ENROLLMENT, sort=True).agg(
        left_at=("left_at", "max"), last_positive=("as_of", "max")
    )
    left["left_at"] = left["left_at"].fillna(left["last_positive"])
    listed = replay[replay["listed"].to_numpy(dtype=bool)]
    first = listed.groupby(ENROLLMENT, sort=True)["as_of"].min().rename("first_listed")
    table = left.join(first, how="left").reset_index()
    reached = table["first_listed"].notna() & (table["first_listed"] <= table["left_at"])
    table["reached"] = reached
    lead = (table["left_at"] - table["first_listed"]).dt.total_seconds() / SECONDS_PER_WEEK
    table["lead_weeks"] = lead.where(reached)
    return table.drop(columns="last_positive")


def overall_metrics(replay: pd.DataFrame, weekly: pd.DataFrame, leads: pd.DataFrame) -> dict:
    """The whole backtest in one row: pooled ranking and list metrics, reach and lead time."""
    listed = replay["listed"].to_numpy(dtype=bool)
    early = listed & _early_warning(replay)
    labelled = replay["label"].notna().to_numpy()
    y = replay["label"].to_numpy(dtype=float)
    positive = labelled & (y == 1)
    gone = replay["already_gone"].to_numpy(dtype=bool)
    active = replay["recently_active"].to_numpy(dtype=bool)
    ranked = ranking_metrics(y[labelled].astype(int), replay["risk"].to_numpy()[labelled])
    lead = leads["lead_weeks"].dropna()
    return {
        "weeks": int(len(weekly)),
        "rows": int(len(replay)),
        "list_slots": int(listed.sum()),
        "roc_auc": ranked["roc_auc"],
        "pr_auc": ranked["pr_auc"],
        "mean_weekly_roc_auc": float(weekly["roc_auc"].mean()) if len(weekly) else math.nan,
        "precision_at_capacity": _share((listed & positive).sum(), (listed & labelled).sum()),
        "recall_at_capacity": _share((listed & positive).sum(), positive.sum()),
        "recall_active_dropouts": _share(
            (listed & positive & active).sum(), (positive & active).sum()
        ),
        "dropouts": int(len(leads)),
        "dropouts_reached_share": _share(leads["reached"].sum(), len(leads)),
        "median_lead_weeks": float(lead.median()) if len(lead) else math.nan,
        "win_back_slots": int((listed & ~early).sum()),
        "already_gone_share_of_slots": _share((early & gone).sum(), early.sum()),
        "already_gone_share_of_population": _share(gone.sum(), len(replay)),
        "max_weekly_triggered_share": float(weekly["triggered_share"].max())
        if len(weekly)
        else math.nan,
        "mean_churn": float(weekly["churn"].mean()) if weekly["churn"].notna().any() else math.nan,
    }


def unseen_rows(
    replay: pd.DataFrame, learned_runs: list[str], learned_as_of_max: str | pd.Timestamp
) -> np.ndarray:
    """Rows the model cannot have learned from: course runs it never saw, and its runs' weeks
    after the last snapshot it learned from."""
    seen_run = replay["course_id"].astype("str").isin([str(r) for r in learned_runs]).to_numpy()
    later = (pd.to_datetime(replay["as_of"]) > pd.Timestamp(learned_as_of_max)).to_numpy()
    return ~seen_run | later


def unseen_metrics(replay: pd.DataFrame, unseen: np.ndarray) -> dict[str, float]:
    """Ranking metrics over the rows the model never learned from (`unseen_rows`): the honest
    figures of a backtest whose range overlaps the model's training data."""
    rows = replay[unseen]
    labelled = rows[rows["label"].notna()]
    y = labelled["label"].to_numpy(dtype=float).astype(int)
    ranked = ranking_metrics(y, labelled["risk"].to_numpy())
    weekly = [
        ranking_metrics(w["label"].to_numpy(dtype=float).astype(int), w["risk"].to_numpy())
        for _, w in labelled.groupby("as_of", sort=True)
    ]
    week_roc = [m["roc_auc"] for m in weekly if not math.isnan(m["roc_auc"])]
    return {
        "unseen_rows": int(unseen.sum()),
        "unseen_runs": int(rows["course_id"].nunique()),
        "unseen_roc_auc": ranked["roc_auc"],
        "unseen_pr_auc": ranked["pr_auc"],
        "unseen_mean_weekly_roc_auc": float(np.mean(week_roc)) if week_roc else math.nan,
    }


def as_of_times(available: pd.Series, start: pd.Timestamp, end: pd.Timestamp, every_days: int):
    """The as-of times of the replay: `start`, `start` + every, ... up to `end`, as far as the
    snapshot frame has rows at them."""
    wanted = pd.date_range(start, end, freq=f"{every_days}D")
    present = set(pd.to_datetime(available).unique())
    return [t for t in wanted if t in present]
