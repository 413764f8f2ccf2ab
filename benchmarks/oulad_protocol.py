"""The OULAD protocol of issue 12: train on the 2013 presentations, score 2014 every second week.

1. The 2013 presentations (courses, enrolments, assignments, events of runs starting in 2013) are
   written as their own source, so the training data ends where 2013 ends (labels included).
2. Features are built with the library (`features.build.build_feature_frame`, weekly snapshots),
   and the models are trained with the `models/` functions on the default config (or --config).
3. The full source is scored at every second Monday from the first 2014 snapshot on, as
   `notalone score --as-of T` builds its features (one as-of frame per date, 2014 runs only),
   while the 28-day label is known. The pooled ROC-AUC / PR-AUC of "unenrols within 28 days"
   over all scored rows are the targets (>= 0.78 and >= 0.10); the within-date AUCs of the model
   and of logistic regression are reported beside them.

Usage:
    uv run notalone ingest oulad --path /work/shared/data/oulad --out /tmp/oulad-model
    nice -n 10 uv run python benchmarks/oulad_protocol.py --source /tmp/oulad-model \
        [--config FILE] [--tune-trials N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs import load_config  # noqa: E402
from features.build import build_feature_frame  # noqa: E402
from features.catalog import LABEL_COLUMN  # noqa: E402

TABLES = ("courses", "enrollments", "assignments", "events")
TRAIN_YEAR = "2013"
TEST_YEAR = "2014"
STEP_DAYS = 14


def year_source(source: Path, out: Path, year: str) -> Path:
    """The presentations of one year as their own source (course ids end in YYYYB / YYYYJ)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frame = pd.read_parquet(source / f"{name}.parquet")
        keep = frame["course_id"].astype(str).str.contains(f"-{year}", regex=False)
        frame[keep.to_numpy()].reset_index(drop=True).to_parquet(out / f"{name}.parquet")
    return out


def training_frame(source: Path, work: Path, config) -> pd.DataFrame:
    """The weekly snapshots of the 2013 presentations, built from them alone (their own source)."""
    train_source = year_source(source, work / f"oulad-{TRAIN_YEAR}", TRAIN_YEAR)
    return build_feature_frame(train_source, config)


def scoring_dates(source: Path, horizon_days: int, first_offset_days: int) -> list[pd.Timestamp]:
    """Every second Monday from the first 2014 snapshot while a 2014 run is on and labelled."""
    courses = pd.read_parquet(source / "courses.parquet")
    test = courses[courses["course_id"].astype(str).str.contains(f"-{TEST_YEAR}", regex=False)]
    events = pd.read_parquet(source / "events.parquet", columns=["ts"])
    data_end = events["ts"].max()
    first = test["start_at"].min() + pd.Timedelta(days=first_offset_days)
    first = first.normalize() + pd.Timedelta(days=(7 - first.weekday()) % 7)
    last = min(test["end_at"].max(), data_end - pd.Timedelta(days=horizon_days))
    return list(pd.date_range(first, last, freq=f"{STEP_DAYS}D"))


def test_frame(source: Path, config) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """The labelled 2014 rows as `notalone score --as-of T` builds them, at every scoring date
    (column `as_of`), and the dates that had any."""
    planned = scoring_dates(
        source, config.snapshots.horizon_days, config.snapshots.first_offset_days
    )
    parts, dates = [], []
    for when in planned:
        at = build_feature_frame(source, config, as_of=when.to_pydatetime())
        at = at[at["course_id"].astype(str).str.contains(f"-{TEST_YEAR}", regex=False)]
        at = at[at[LABEL_COLUMN].notna()]
        if not at.empty:
            parts.append(at)
            dates.append(when)
    return pd.concat(parts, ignore_index=True), dates


def auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def within_date_auc(scored: pd.DataFrame, column: str) -> float:
    """Row-weighted mean of the per-date ROC-AUCs (dates with both classes)."""
    values, weights = [], []
    for _, part in scored.groupby("as_of"):
        a = auc(part[LABEL_COLUMN].to_numpy(), part[column].to_numpy())
        if not np.isnan(a):
            values.append(a)
            weights.append(len(part))
    return float(np.average(values, weights=weights))


def train(frame: pd.DataFrame, config, tune_trials: int) -> tuple[dict, dict]:
    """Split, evaluate, refit on all labelled rows; returns scorers and a summary."""
    from models.champion import train_champion

    result = train_champion(frame, config, tune_trials=tune_trials)
    return result.scorers(), result.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=Path("/tmp/oulad-model"))
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/oulad-protocol"))
    parser.add_argument("--tune-trials", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    config = load_config(args.config)
    clock = time.perf_counter()
    frame = training_frame(args.source, args.work, config)
    labelled = frame[frame[LABEL_COLUMN].notna()]
    print(
        f"training frame: {len(frame):,} snapshots, {len(labelled):,} labelled, "
        f"{labelled['course_id'].nunique()} runs ({time.perf_counter() - clock:.0f} s)",
        flush=True,
    )
    clock = time.perf_counter()
    scorers, summary = train(frame, config, args.tune_trials)
    print(f"trained in {time.perf_counter() - clock:.0f} s", flush=True)
    print(json.dumps(summary, indent=2, default=str), flush=True)

    clock = time.perf_counter()
    scored, dates = test_frame(args.source, config)
    scored = scored.assign(**{f"p_{name}": scorer(scored) for name, scorer in scorers.items()})
    y = scored[LABEL_COLUMN].to_numpy().astype(int)
    print(
        f"scored {len(dates)} dates ({dates[0].date()} .. {dates[-1].date()}), "
        f"{len(scored):,} rows, {y.sum():,} dropouts ({y.mean():.2%}) "
        f"in {time.perf_counter() - clock:.0f} s",
        flush=True,
    )
    table = {}
    for name in scorers:
        p = scored[f"p_{name}"].to_numpy()
        table[name] = {
            "roc_auc": auc(y, p),
            "pr_auc": float(average_precision_score(y, p)),
            "within_date_roc_auc": within_date_auc(scored, f"p_{name}"),
        }
    print(f"{'scorer':<10} {'ROC-AUC':>8} {'PR-AUC':>8} {'AUC/date':>9}")
    for name, m in table.items():
        print(
            f"{name:<10} {m['roc_auc']:>8.4f} {m['pr_auc']:>8.4f} {m['within_date_roc_auc']:>9.4f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "dates": [d.isoformat() for d in dates],
                    "rows": len(scored),
                    "positives": int(y.sum()),
                    "metrics": table,
                    "training": summary,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
