"""The backtest's self-contained HTML page: settings, the overall table, plots over the weeks
(inlined as PNG), and the weekly table. Counts and metrics only: no student id."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from models.plots import lead_time_figure, weekly_series_figure
from pipelines.summaries import format_number

OVERALL_LABELS = {
    "weeks": "weeks replayed",
    "list_slots": "list slots",
    "roc_auc": "ROC-AUC (pooled)",
    "pr_auc": "PR-AUC (pooled)",
    "mean_weekly_roc_auc": "ROC-AUC, mean of weeks",
    "precision_at_capacity": "precision at capacity",
    "recall_at_capacity": "recall at capacity",
    "recall_active_dropouts": "recall at capacity, dropouts active in the last 14 days",
    "dropouts": "eventual dropouts",
    "dropouts_reached_share": "dropouts listed before they left",
    "median_lead_weeks": "median lead time, weeks",
    "win_back_slots": "win-back slots (students already gone, listed apart)",
    "already_gone_share_of_slots": "early-warning slots given to students already gone",
    "already_gone_share_of_population": "students already gone (population)",
    "max_weekly_triggered_share": "highest weekly share with a rule trigger",
    "mean_churn": "list churn, week to week",
    "drift_warnings": "weeks with a drift warning",
    "unseen_rows": "rows of runs (or weeks) the model never learned from",
    "unseen_roc_auc": "ROC-AUC (pooled), those rows",
    "unseen_pr_auc": "PR-AUC (pooled), those rows",
    "unseen_mean_weekly_roc_auc": "ROC-AUC, mean of weeks, those rows",
}
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{padding:.25rem .6rem;"
    "border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}"
    "img{max-width:32rem;margin:.5rem}"
)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_number(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def backtest_html(
    weekly: pd.DataFrame, overall: dict[str, Any], leads: pd.DataFrame, settings: dict[str, Any]
) -> str:
    """The page, with every figure inlined (no network at view time)."""
    shown = weekly.assign(as_of=pd.to_datetime(weekly["as_of"]).dt.date.astype(str))
    overall_rows = pd.DataFrame(
        [(OVERALL_LABELS.get(k, k), v) for k, v in overall.items() if k in OVERALL_LABELS],
        columns=["metric", "value"],
    )
    figures = [
        weekly_series_figure(
            weekly, {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}, "Ranking by week", "AUC"
        ),
        weekly_series_figure(
            weekly,
            {"precision_at_capacity": "precision", "recall_at_capacity": "recall"},
            "The lists at capacity",
            "share",
        ),
        weekly_series_figure(
            weekly,
            {
                "already_gone_share_of_slots": "slots to students already gone",
                "already_gone_share_of_population": "already gone in the population",
                "triggered_share": "students with a rule trigger",
            },
            "Who takes the slots",
            "share",
        ),
        lead_time_figure(leads["lead_weeks"]) if len(leads) else None,
    ]
    settings_text = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Backtest {html.escape(settings['from'])} .. {html.escape(settings['to'])}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>How the weekly lists would have done, {html.escape(settings['from'])} .. "
        f"{html.escape(settings['to'])}</h1><p>{html.escape(settings_text)}</p>"
        f"<h2>Overall</h2>{_table(overall_rows)}"
        "<h2>Over the weeks</h2>"
        + "".join(_png(f) for f in figures if f is not None)
        + f"<h2>Week by week</h2>{_table(shown)}</body></html>"
    )
