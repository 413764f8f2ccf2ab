"""What a person reads about a run: numbers formatted one way, markdown summaries of a training
and of a scored week (Prefect artifacts), and the compare table of training runs.

Counts and metrics only: no student id reaches a summary.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import Config
from interventions.ranking import curator_lists
from models.evaluation import top_label
from models.train import SCORERS
from pipelines.texts import load_texts

# Percentiles of the week's risk shown in the week summary.
SUMMARY_QUANTILES = (0.5, 0.9, 0.99)
# Training metrics shown in the training summary and by `notalone train`.
SHOWN_METRICS = (
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
    ("brier", "Brier"),
    ("log_loss", "log loss"),
    ("precision_{top}", "precision, top {pct}% per week"),
    ("recall_{top}", "recall, top {pct}% per week"),
    ("lift_{top}", "lift, top {pct}%"),
    ("precision_capacity", "precision at capacity"),
    ("recall_capacity", "recall at capacity"),
)
SUMMARY_METRICS = ("roc_auc", "pr_auc", "brier")
COMPARE_METRICS = ("pr_auc", "roc_auc", "brier", "precision_{top}")


def format_number(value: Any, decimals: int = 3, blank: str = "-") -> str:
    """A metric for people: `decimals` places; `blank` for missing or non-finite values; large
    numbers with thousands separators; anything that is not a number as text."""
    if value is None:
        return blank
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(float(value)):
        return blank
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{decimals}f}" if abs(value) < 10 else f"{value:,.0f}"


def metric_rows(config: Config) -> list[tuple[str, str]]:
    """(metric key, label) of the training metrics shown to people, for this config's top share."""
    top = top_label(config.evaluation.top_share)
    pct = round(config.evaluation.top_share * 100)
    return [(key.format(top=top), label.format(pct=pct)) for key, label in SHOWN_METRICS]


def markdown_table(table: pd.DataFrame, decimals: int = 4) -> str:
    def cell(value: Any) -> str:
        return format_number(value, decimals, blank="").replace("|", "\\|")

    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    for record in table.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in record) + " |")
    return "\n".join(lines) + "\n"


def training_markdown(result: dict[str, Any]) -> str:
    """The training summary: the version, the promotion decision and model vs baselines."""
    metrics = result["metrics"]
    lines = [
        f"# Training: {result['model_name']} version {result['version']}",
        "",
        f"- MLflow run: `{result['run_id']}` (experiment `{result['experiment']}`)",
        f"- aliases: {', '.join(result['aliases']) or 'none'}",
        f"- promotion: {result['promotion']['reason']}",
        f"- test period: {result['split']['test']['as_of_min'][:10]} .. "
        f"{result['split']['test']['as_of_max'][:10]}",
        "",
        "| scorer | " + " | ".join(SUMMARY_METRICS) + " |",
        "|---|" + "---|" * len(SUMMARY_METRICS),
    ]
    for scorer, values in metrics.items():
        cells = [format_number(values.get(k)) for k in SUMMARY_METRICS]
        lines.append(f"| {scorer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curator_tables(ranking: pd.DataFrame, config: Config) -> dict[str, pd.DataFrame]:
    """Each curator's list, exactly the rows and columns of `curators/<curator_id>.csv`; every
    curator of the week gets one (empty when nobody is listed for them)."""
    texts = load_texts(config.scoring.language)
    lists = curator_lists(ranking, texts.tiers, texts.actions, config.scoring.risk_decimals)
    columns = [c for c in lists.columns if c != "curator_id"]
    grouped = {str(cid): part[columns] for cid, part in lists.groupby("curator_id", sort=True)}
    curators = sorted(ranking["curator_id"].astype("str").unique())
    return {cid: grouped.get(cid, pd.DataFrame(columns=columns)) for cid in curators}


def drift_line(drift: dict[str, Any]) -> str:
    """One line about the week's drift check for the week summary."""
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


def week_markdown(
    ranking: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    as_of: datetime,
    context: dict[str, Any],
    config: Config,
) -> str:
    """The markdown summary of a scored week (counts only, no student ids)."""
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


def compare_table(
    runs: list, champion: str | None, model_name: str, config: Config
) -> pd.DataFrame:
    """One row per training run: model vs baselines on the main metrics, window, version."""
    top = top_label(config.evaluation.top_share)
    rows = []
    for run in runs:
        tags = run.data.tags
        metrics = run.data.metrics
        version = tags.get("registered_version")
        is_champion = (
            version is not None
            and version == champion
            and tags.get("registered_model") == model_name
        )
        row: dict[str, Any] = {
            "started": datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime(
                "%Y-%m-%d %H:%M"
            ),
            "run": run.info.run_name,
            "run_id": run.info.run_id,
            "version": version or "",
            "champion": "*" if is_champion else "",
            "decision": tags.get("promotion.promotion_decision", ""),
            "train_window": tags.get("train_window", ""),
            "test_window": tags.get("test_window", ""),
            "test_rows": metrics.get("model_rows"),
            "base_rate": metrics.get("model_base_rate"),
        }
        for metric in COMPARE_METRICS:
            key = metric.format(top=top)
            for scorer in SCORERS:
                row[f"{scorer}_{key}"] = metrics.get(f"{scorer}_{key}")
        rows.append(row)
    return pd.DataFrame(rows)


def json_safe(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
