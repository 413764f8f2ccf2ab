"""Lists a curator can trust (issue 12, items 3 and 4), measured week by week on a real source.

What it does, for every second week of a range (default: the 26 two-weekly Wednesdays of the OULAD
2014 presentations, 2014-02-12 .. 2015-01-28):

1. features at T exactly as `notalone score` builds them (`features.build.build_feature_frame`
   with `as_of=T`), cached as parquet under `--cache` (built once, reused);
2. the deadline features of issue 12 item 2 (`latest_deadline_missed`, `days_since_missed_deadline`,
   `missed_streak`, `submission_streak`) when the frame lacks them: computed HERE from the source's
   assignments and submissions, for measurement only (the feature builder is another engineer's);
3. risk from the champion in `NOTALONE_HOME` (trained once with `notalone train`);
4. "before": the stateless triggers of the old default (`days_since_last_submission >= 14`, ...)
   and one list per curator; "after": win-back section, onset triggers carried week to week
   (`interventions.weekly.rank_week`), with the old and the deadline-based trigger condition;
5. the drift guard: the model's stored reference as trained ("before") and the reference rebuilt
   by today's `models.drift.build_drift_reference` from the training rows ("after").

Prints, per week and overall: the share of active students a trigger fired for, the "already gone"
share of early-warning slots and of the population, recall at capacity of dropouts still active in
the last 14 days, the median lead time, and the weeks the drift guard warned.

    NOTALONE_HOME=/tmp/lists-home uv run python benchmarks/lists_on_oulad.py \
        --source /tmp/oulad-lists --config configs/oulad.yaml --cache /tmp/oulad-lists-weeks
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configs import load_config  # noqa: E402
from configs.schema import Config  # noqa: E402

DAY = 86_400.0
ACTIVE_RECENT_DAYS = 14  # "dropouts still active in the last 14 days"


def week_dates(first: str, count: int, every_days: int) -> list[datetime]:
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    return [start + timedelta(days=every_days * k) for k in range(count)]


def deadline_features(source: Path, as_of: datetime) -> pd.DataFrame:
    """latest_deadline_missed, days_since_missed_deadline, missed_streak, submission_streak and
    days_to_next_deadline per (student, course) at T, from assignments and submissions before T.
    Measurement only: the definitions of issue 12 item 2, not the feature builder's code."""
    events = source / "events.parquet"
    events_sql = str(events) if events.is_file() else f"{source}/events/**/*.parquet"
    con = duckdb.connect()
    try:
        return con.execute(
            f"""
            WITH due AS (
                SELECT course_id, assignment_id, due_at,
                       row_number() OVER (PARTITION BY course_id ORDER BY due_at DESC) AS back
                FROM '{source}/assignments.parquet' WHERE due_at < $t
            ),
            enr AS (
                SELECT student_id, course_id, enrolled_at FROM '{source}/enrollments.parquet'
            ),
            sub AS (
                SELECT DISTINCT student_id, course_id, item_id AS assignment_id
                FROM read_parquet('{events_sql}')
                WHERE event_type = 'assignment_submit' AND ts < $t
            ),
            grid AS (
                SELECT e.student_id, e.course_id, d.due_at, d.back,
                       s.assignment_id IS NULL AS missed
                FROM enr e JOIN due d USING (course_id)
                LEFT JOIN sub s ON s.student_id = e.student_id AND s.course_id = e.course_id
                                AND s.assignment_id = d.assignment_id
            ),
            streaks AS (
                SELECT student_id, course_id,
                       max(CASE WHEN back = 1 THEN missed::INT END)::DOUBLE
                           AS latest_deadline_missed,
                       min(CASE WHEN missed THEN epoch($t) - epoch(due_at) END) / {DAY}
                           AS days_since_missed_deadline,
                       coalesce(min(CASE WHEN NOT missed THEN back END) - 1, count(*))::DOUBLE
                           AS missed_streak,
                       coalesce(min(CASE WHEN missed THEN back END) - 1, count(*))::DOUBLE
                           AS submission_streak
                FROM grid GROUP BY ALL
            ),
            nxt AS (
                SELECT course_id, (epoch(min(due_at)) - epoch($t)) / {DAY} AS days_to_next_deadline
                FROM '{source}/assignments.parquet' WHERE due_at >= $t GROUP BY ALL
            )
            SELECT e.student_id, e.course_id, s.latest_deadline_missed,
                   s.days_since_missed_deadline, s.missed_streak, s.submission_streak,
                   n.days_to_next_deadline
            FROM enr e LEFT JOIN streaks s USING (student_id, course_id)
            LEFT JOIN nxt n USING (course_id)
            """,
            {"t": as_of},
        ).df()
    finally:
        con.close()


DEADLINE_COLUMNS = (
    "latest_deadline_missed",
    "days_since_missed_deadline",
    "missed_streak",
    "submission_streak",
    "days_to_next_deadline",
)


def build_weeks(
    source: Path, config: Config, dates: list[datetime], cache: Path, model
) -> dict[datetime, pd.DataFrame]:
    """Features (+ measurement-only deadline features, risk, unenrolment time) per week, cached."""
    from features.build import build_feature_frame

    cache.mkdir(parents=True, exist_ok=True)
    unenrol = pd.read_parquet(
        source / "enrollments.parquet", columns=["student_id", "course_id", "unenrolled_at"]
    )
    unenrol[["student_id", "course_id"]] = unenrol[["student_id", "course_id"]].astype("str")
    weeks = {}
    for t in dates:
        path = cache / f"week-{t.date().isoformat()}.parquet"
        if path.is_file():
            weeks[t] = pd.read_parquet(path)
            continue
        started = time.perf_counter()
        frame = build_feature_frame(source, config, as_of=t).reset_index(drop=True)
        if frame.empty:
            continue
        frame["risk"] = np.asarray(model.predict_proba(frame), dtype="float64")
        keys = frame[["student_id", "course_id"]].astype("str")
        extra = deadline_features(source, t)
        extra[["student_id", "course_id"]] = extra[["student_id", "course_id"]].astype("str")
        missing = [c for c in DEADLINE_COLUMNS if c not in frame.columns]
        merged = keys.merge(extra, on=["student_id", "course_id"], how="left")
        merged = merged.merge(unenrol, on=["student_id", "course_id"], how="left")
        for c in missing:
            frame[c] = merged[c].to_numpy(dtype="float64", na_value=np.nan)
        frame["unenrolled_at"] = merged["unenrolled_at"].to_numpy()
        frame.to_parquet(path, index=False)
        weeks[t] = frame
        print(f"  built {t.date()} {len(frame):,} rows in {time.perf_counter() - started:.1f} s")
    return weeks


# ----------------------------------------------------------------------------- the lists


OLD_TRIGGERS = [  # the default before issue 12 (stateless: fires whenever it holds)
    {
        "name": "stopped_submitting",
        "feature": "days_since_last_submission",
        "reason_group": "submissions",
        "tier": "curator",
        "action": "write_first",
        "onset": False,
        "when": {
            "any_of": [
                {"feature": "days_since_last_submission", "op": ">=", "value": 14},
                {
                    "all_of": [
                        {"feature": "days_since_last_submission", "op": "missing"},
                        {"feature": "deadlines_due", "op": ">=", "value": 1},
                        {"feature": "days_since_enrolment", "op": ">=", "value": 14},
                    ]
                },
            ]
        },
    },
    {
        "name": "many_questions",
        "feature": "questions_14d",
        "reason_group": "questions",
        "tier": "mentor",
        "action": "offer_consultation",
        "onset": False,
        "when": {"feature": "questions_14d", "op": ">=", "value": 5},
    },
]
DEADLINE_TRIGGER = {  # once the deadline features exist (issue 12 item 2)
    "name": "stopped_submitting",
    "feature": "missed_streak",
    "reason_group": "deadlines",
    "tier": "curator",
    "action": "write_first",
    "when": {
        "all_of": [
            {"feature": "latest_deadline_missed", "op": "==", "value": 1},
            {"feature": "submissions_14d", "op": "==", "value": 0},
            {"feature": "days_since_enrolment", "op": ">=", "value": 14},
            {"feature": "days_since_start", "op": ">=", "value": 14},
        ]
    },
    "severity": "missed_streak",
    "worse_by": 1,
    "worse_ratio": 2,
}


def variant_configs(path: Path) -> dict[str, Config]:
    default = load_config(path)
    many = [t.model_dump(exclude_none=True) for t in default.scoring.triggers][1:]
    return {
        "before": load_config(path, {"scoring": {"triggers": OLD_TRIGGERS}}),
        "after (default: missed_28d & no submission 14d)": default,
        "after (latest_deadline_missed & no submission 14d)": load_config(
            path, {"scoring": {"triggers": [DEADLINE_TRIGGER, *many]}}
        ),
    }


def already_gone(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """No activity at all for the whole horizon (never active: in the course that long)."""
    from interventions.winback import days_in_course

    silence = frame["days_since_last_activity"].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return np.where(
            np.isnan(silence), days_in_course(frame) >= horizon_days, silence >= horizon_days
        )


def before_week(frame: pd.DataFrame, as_of: datetime, config: Config) -> pd.DataFrame:
    """The ranking as the scorer built it before issue 12: stateless triggers, one section."""
    from interventions.ranking import rank_for_curators
    from interventions.routing import fire_triggers

    table = frame[["student_id", "course_id", "curator_id"]].astype("str")
    table = table.assign(risk=frame["risk"].to_numpy(), change=np.nan, last_contact_at=pd.NaT)
    table = pd.concat([table, fire_triggers(frame, config.scoring)], axis=1)
    return pd.concat([table, rank_for_curators(table, as_of, config.scoring)], axis=1)


def replay(weeks: dict[datetime, pd.DataFrame], config: Config, stateless: bool) -> pd.DataFrame:
    """Week by week, carrying the trigger state; one row per (week, enrollment)."""
    from interventions.triggers import state_from_ranking
    from interventions.weekly import rank_week

    rows = []
    previous = None
    for t, frame in weeks.items():
        if stateless:
            ranking = before_week(frame, t, config)
            ranking["section"] = "early_warning"
        else:
            state = state_from_ranking(previous, config.scoring)
            prev_risk = None if previous is None else previous[["student_id", "course_id", "risk"]]
            ranking = rank_week(frame, frame["risk"].to_numpy(), t, config, prev_risk, state)
            previous = ranking
        ranking = ranking.assign(
            week=pd.Timestamp(t),
            label=frame["label"].to_numpy(),
            unenrolled_at=pd.to_datetime(frame["unenrolled_at"], utc=True).to_numpy(),
            gone=already_gone(frame, config.snapshots.horizon_days),
            recent=(
                frame["days_since_last_activity"].to_numpy(dtype="float64", na_value=np.nan)
                < ACTIVE_RECENT_DAYS
            ),
            in_2014=frame["course_id"].astype("str").str.contains("2014").to_numpy(),
        )
        keep = [
            "week", "student_id", "course_id", "risk", "section", "listed", "triggered",
            "label", "unenrolled_at", "gone", "recent", "in_2014",
        ]  # fmt: skip
        rows.append(ranking[keep])
    return pd.concat(rows, ignore_index=True)


def lead_times(replayed: pd.DataFrame) -> tuple[float, float, int]:
    """(median days from first early-warning listing to unenrolment, share of the eventual
    dropouts of the replayed weeks that were listed before leaving, dropouts)."""
    r = replayed.assign(
        unenrolled_at=pd.to_datetime(replayed["unenrolled_at"], utc=True),
        week=pd.to_datetime(replayed["week"], utc=True),
    )
    r = r[r["unenrolled_at"].notna()]
    r = r[r["unenrolled_at"] > r["week"]]
    dropouts = r.drop_duplicates(["student_id", "course_id"])
    early = r[r["listed"] & (r["section"] == "early_warning")]
    first = early.groupby(["student_id", "course_id"])[["week", "unenrolled_at"]].min()
    lead = (
        pd.to_datetime(first["unenrolled_at"], utc=True) - pd.to_datetime(first["week"], utc=True)
    ).dt.total_seconds() / DAY
    return (
        float(np.median(lead)) if len(lead) else float("nan"),
        len(first) / max(len(dropouts), 1),
        len(dropouts),
    )


def list_table(replayed: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for t, r in replayed.groupby("week", sort=True):
        early = r["listed"] & (r["section"] == "early_warning")
        target = (r["label"] == 1) & r["recent"]
        rows.append(
            {
                "week": t.date().isoformat(),
                "active": len(r),
                "trigger_share": r["triggered"].mean(),
                "early_slots": int(early.sum()),
                "triggered_slots": float((early & r["triggered"]).sum() / max(early.sum(), 1)),
                "winback_slots": int((r["listed"] & (r["section"] == "win_back")).sum()),
                "gone_in_early": float(r.loc[early, "gone"].mean()) if early.any() else np.nan,
                "gone_population": r["gone"].mean(),
                "recall_active_dropouts": float(early[target].mean()) if target.any() else np.nan,
                "active_dropouts": int(target.sum()),
            }
        )
    return pd.DataFrame(rows)


def summarise(name: str, replayed: pd.DataFrame) -> dict:
    early = replayed["listed"] & (replayed["section"] == "early_warning")
    target = (replayed["label"] == 1) & replayed["recent"]
    target14 = target & replayed["in_2014"]
    median_lead, reached, dropouts = lead_times(replayed)
    table = list_table(replayed)
    return {
        "variant": name,
        "max_trigger_share": table["trigger_share"].max(),
        "mean_trigger_share": table["trigger_share"].mean(),
        "triggered_share_of_early_slots": float(
            (early & replayed["triggered"]).sum() / early.sum()
        ),
        "gone_in_early_slots": float(replayed.loc[early, "gone"].mean()),
        "gone_population": float(replayed["gone"].mean()),
        "recall_active_dropouts": float(early[target].mean()),
        "recall_active_dropouts_2014_runs": float(early[target14].mean()),
        "median_lead_days": median_lead,
        "dropouts_listed_before_leaving": reached,
        "dropouts": dropouts,
    }


def measure_lists(args, weeks: dict[datetime, pd.DataFrame]) -> None:
    summaries = []
    for name, config in variant_configs(args.config).items():
        started = time.perf_counter()
        replayed = replay(weeks, config, stateless=name == "before")
        seconds = time.perf_counter() - started
        table = list_table(replayed)
        print(f"\n## {name}  ({len(weeks)} weeks replayed in {seconds:.1f} s)")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summaries.append(summarise(name, replayed))
    print("\n## lists: before / after (all weeks pooled)")
    print(
        pd.DataFrame(summaries).set_index("variant").T.to_string(float_format=lambda v: f"{v:.3f}")
    )


def training_frame(config: Config) -> pd.DataFrame:
    """Every labelled weekly snapshot, from the workspace's feature cache (the training run's)."""
    from pipelines.settings import Workspace

    files = sorted((Workspace.resolve().cache / "features").glob("*.parquet"))
    if not files:
        raise SystemExit("no cached training features: run `notalone train` in this NOTALONE_HOME")
    return pd.read_parquet(max(files, key=lambda f: f.stat().st_mtime))


def rebuilt_reference(config: Config, model) -> dict:
    """The reference today's `build_drift_reference` gives for the champion's training rows.
    The validation scores come from the served model (refit on train + validation), not from the
    early-stopped trees as in training: close, not identical."""
    from models.drift import build_drift_reference
    from models.split import split_by_time

    frame = training_frame(config)
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    train, validation, _ = split.frames(frame)
    return build_drift_reference(
        model,
        train,
        validation,
        model.predict_proba(validation),
        config,
        train_scores=model.predict_proba(train),
    )


def drift_table(reference: dict, config: Config, weeks: dict[datetime, pd.DataFrame]):
    from models.drift import check_drift

    rows = []
    for t, frame in weeks.items():
        check = check_drift(reference, frame, frame["risk"].to_numpy(), config.drift, seed=42)
        drifted = check.drifted
        rows.append(
            {
                "week": t.date().isoformat(),
                "rows": check.rows,
                "drifted": check.count,
                "max_psi": check.max_psi,
                "inputs": ", ".join(
                    f"{r.name} {r.psi:.2f}/{r.limit:.2f}" for r in drifted.itertuples()
                ),
            }
        )
    return pd.DataFrame(rows)


def with_risk(frame: pd.DataFrame, model) -> pd.DataFrame:
    """The frame with `risk` from `model` (the measurement-only columns left out of its input)."""
    added = [*DEADLINE_COLUMNS, "risk", "unenrolled_at"]
    inputs = frame.drop(columns=[c for c in added if c in frame.columns])
    return frame.assign(risk=np.asarray(model.predict_proba(inputs), dtype="float64"))


def planted_shift(frame: pd.DataFrame, model) -> pd.DataFrame:
    """Clicks halved (every non-submission count) and every score 15 points lower, the risk
    recomputed: what a broken click feed and a changed grading scale would look like."""
    shifted = frame.copy()
    for col in shifted.columns:
        if (
            col.startswith(("events_", "lesson_", "logins_", "active_days_", "quiz_"))
            and (shifted[col].dtype.kind == "f")
            and not col.endswith("pct_in_run")
            and col != "events_change_7d"
        ):
            shifted[col] = np.floor(shifted[col] * 0.5)
    for col in ("score_mean", "score_last"):
        shifted[col] = (shifted[col] - 15).clip(lower=0)
    return with_risk(shifted, model)


def measure_drift(args, config: Config, model, weeks: dict[datetime, pd.DataFrame]) -> None:
    started = time.perf_counter()
    after_ref = rebuilt_reference(config, model)
    print(f"\nreference rebuilt in {time.perf_counter() - started:.1f} s")
    for name, reference in (("before: stored", model.reference), ("after: rebuilt", after_ref)):
        table = drift_table(reference, config, weeks)
        print(
            f"\n## drift guard, {name} reference: {int((table['drifted'] > 0).sum())} of "
            f"{len(table)} weeks warn"
        )
        with pd.option_context("display.max_colwidth", 200, "display.width", 250):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.after_model_uri:
        from pipelines.mlflow_store import load_model

        retrained = load_model(args.after_model_uri)
        rescored = {t: with_risk(frame, retrained) for t, frame in weeks.items()}
        table = drift_table(retrained.reference, config, rescored)
        print(
            f"\n## drift guard, reference stored by training with today's code "
            f"({args.after_model_uri}, its own risks): {int((table['drifted'] > 0).sum())} of "
            f"{len(table)} weeks warn"
        )
        with pd.option_context("display.max_colwidth", 200, "display.width", 250):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    shifted = {t: planted_shift(frame, model) for t, frame in weeks.items()}
    table = drift_table(after_ref, config, shifted)
    print(
        f"\n## planted shift (clicks halved, scores -15), rebuilt reference: "
        f"{int((table['drifted'] > 0).sum())} of {len(table)} weeks warn"
    )
    with pd.option_context("display.max_colwidth", 200, "display.width", 250):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/tmp/oulad-lists"))
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "oulad.yaml")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/oulad-lists-weeks"))
    parser.add_argument("--first", default="2014-02-12")
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--every", type=int, default=14)
    parser.add_argument("--only-cache", action="store_true")
    parser.add_argument("--skip-lists", action="store_true")
    parser.add_argument("--skip-drift", action="store_true")
    parser.add_argument(
        "--after-model-uri",
        help="also check the reference this model stored at training (e.g. a model trained "
        "with today's code: models:/notalone-dropout/2)",
    )
    args = parser.parse_args(argv)

    from pipelines.mlflow_store import load_model
    from pipelines.settings import Workspace

    Workspace.resolve().activate()
    config = load_config(args.config)
    model = load_model()
    dates = week_dates(args.first, args.weeks, args.every)
    weeks = build_weeks(args.source, config, dates, args.cache, model)
    if args.only_cache:
        return 0
    if not args.skip_lists:
        measure_lists(args, weeks)
    if not args.skip_drift:
        measure_drift(args, config, model, weeks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
