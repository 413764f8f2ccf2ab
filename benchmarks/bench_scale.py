"""Features, training and scoring of one synthetic school locally and on `local:1` / `local:2`.

    uv run python benchmarks/bench_scale.py [--students N] [--modes local,local:1,local:2]
                                            [--docs docs/scale.md]

Each mode runs in its own process (clean peak memory): wall time per stage, peak resident
memory of the client and of each worker, and the overhead of the cluster against the local run.
On a cluster every stage follows the location-only rule: validation slices, feature parts,
training rows and scoring parts are read by the workers themselves from the paths. The school
(events hive-partitioned by course run) is generated once into --data. With --docs the
measured table replaces the one between the bench-scale markers in that file.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / ".data" / "scale"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mode(source: Path, mode: str, work: Path) -> dict:
    import numpy as np

    from configs import load_config
    from features.build import write_feature_file
    from features.validate import validate_source
    from models.split import split_by_time
    from models.train import evaluate_models, fit_models
    from pipelines.checks import validate_on_cluster
    from pipelines.cluster_scoring import contributions_on_cluster, predict_on_cluster
    from pipelines.cluster_training import ClusterBoosterFitter
    from pipelines.dask_store import client_at, dask_cluster, parse_scheduler
    from pipelines.feature_partitions import read_located_dataset, write_partitioned_features

    config = load_config(overrides={"dask": {"train_min_rows": 0, "local_memory_limit": "6GiB"}})
    info = json.loads((source / "school.json").read_text())
    as_of = datetime.fromisoformat(info["data_end"]).astimezone(UTC)
    # Five weeks before the data end: runs are going and the week is scored as in production.
    as_of = as_of.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7 * 5)
    seconds: dict[str, float] = {}
    worker_peaks: dict[str, float] = {}

    def stage(name, func):
        started = time.perf_counter()
        value = func()
        seconds[name] = round(time.perf_counter() - started, 2)
        return value

    def run(address):
        out = work / f"features-{mode.replace(':', '')}"
        week = work / f"week-{mode.replace(':', '')}"
        for stale in (out, week):
            shutil.rmtree(stale, ignore_errors=True)
            stale.with_suffix(".parquet").unlink(missing_ok=True)
        if address:
            stage("validate", lambda: validate_on_cluster(source, config, address))
            stage("features", lambda: write_partitioned_features(
                source, out, config, None, False, address, lambda _m: None))  # fmt: skip
            stage("features_as_of", lambda: write_partitioned_features(
                source, week, config, as_of, False, address, lambda _m: None))  # fmt: skip
        else:
            stage("validate", lambda: validate_source(source, config.validation))
            out, week = out.with_suffix(".parquet"), week.with_suffix(".parquet")
            stage("features", lambda: write_feature_file(
                source, out, config, duplicate_events=False))  # fmt: skip
            stage("features_as_of", lambda: write_feature_file(
                source, week, config, as_of, duplicate_events=False))  # fmt: skip
        frame, dataset = read_located_dataset(out)
        split = split_by_time(frame, config.split, config.snapshots.horizon_days)
        train, validation, test = split.frames(frame)
        fitter = ClusterBoosterFitter(address, dataset) if address else None
        fitted = stage("train", lambda: fit_models(train, validation, config,
                                                   booster_fitter=fitter))  # fmt: skip
        metrics = evaluate_models(fitted, test, config)["model"].metrics
        now, now_dataset = read_located_dataset(week)
        model = fitted.model
        risk = stage("score_predict", lambda: (
            predict_on_cluster(model, now, address, now_dataset) if address
            else model.predict_proba(now)))  # fmt: skip
        top = now.index[np.argsort(-np.asarray(risk))[: max(1, len(now) // 10)]]
        stage("score_contributions", lambda: (
            contributions_on_cluster(model, now, top, address, now_dataset) if address
            else model.contributions(now.loc[top])))  # fmt: skip
        if address:
            with client_at(address) as client:
                peaks = client.run(lambda: _peak_mb())
            worker_peaks.update({k: round(v) for k, v in peaks.items()})
        return {
            "feature_rows": len(frame),
            "train_rows": len(train),
            "score_rows": len(now),
            "explained_rows": len(top),
            "test_roc_auc": round(metrics["roc_auc"], 4),
            "test_pr_auc": round(metrics["pr_auc"], 4),
            "trees": fitted.info["best_iteration"],
        }

    started = time.perf_counter()
    if mode == "local":
        result = run(None)
    else:
        with dask_cluster(parse_scheduler(mode), config.dask) as address:
            result = run(address)
    result.update(
        mode=mode,
        seconds=seconds,
        total_s=round(time.perf_counter() - started, 1),
        client_peak_mb=round(_peak_mb()),
        worker_peak_mb=worker_peaks,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=150_000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--modes", default="local,local:1,local:2")
    parser.add_argument("--docs", type=Path, help="write the table into this markdown file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    source = args.data / f"school-{args.students}"
    work = args.data / "work"
    if args.one:
        print(json.dumps(run_mode(source, args.one, work)))
        return
    work.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    if not (source / "school.json").is_file():
        started = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "notalone"), "generate",
             "--students", str(args.students), "--out", str(source), "--partition-events"],
            check=True, cwd=ROOT,
        )  # fmt: skip
        print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    info = json.loads((source / "school.json").read_text())
    events = info["events"]
    results = []
    for mode in args.modes.split(","):
        done = subprocess.run(
            [sys.executable, __file__, "--students", str(args.students), "--data", str(args.data),
             "--one", mode], check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(json.dumps(result), flush=True)
    local = next((r for r in results if r["mode"] == "local"), None)
    print(f"\n{args.students:,} students, {events:,} events")
    for r in results:
        over = f" ({r['total_s'] / local['total_s']:.2f}x local)" if local else ""
        print(f"{r['mode']:8} total {r['total_s']:7.1f} s{over}  {r['seconds']}  "
              f"client peak {r['client_peak_mb']} MB  workers {r['worker_peak_mb']}")  # fmt: skip
    (args.data / f"results-{args.students}.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(results, args.students, info, load_before, _load())
    print("\n" + table)
    if args.docs:
        replace_between_markers(args.docs, table)


STAGES = ("validate", "features", "features_as_of", "train", "score_predict", "score_contributions")
MARK_BEGIN, MARK_END = "<!-- bench-scale:begin -->", "<!-- bench-scale:end -->"


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def markdown_table(results: list[dict], students: int, info: dict, before: str, after: str) -> str:
    """The measured modes as the docs' table, with the school, the machine and its load."""
    import os

    local = next((r for r in results if r["mode"] == "local"), None)
    head = "| mode | " + " | ".join(STAGES) + " | total | vs local | client peak | worker peak |"
    lines = [
        f"School: {students:,} students, {info['enrollments']:,} enrolments, "
        f"{info['events']:,} events ({results[0]['feature_rows']:,} weekly feature rows, "
        f"{results[0]['train_rows']:,} training rows, {results[0]['score_rows']:,} scored, "
        f"{results[0]['explained_rows']:,} explained). Machine: {os.cpu_count()} cores. "
        f"Load (`uptime`) before: `{before.split('load average:')[-1].strip()}`, after: "
        f"`{after.split('load average:')[-1].strip()}`.",
        "",
        head,
        "|" + "---|" * (len(STAGES) + 5),
    ]
    for r in results:
        cells = [f"{r['seconds'].get(s, float('nan')):.1f} s" for s in STAGES]
        over = f"{r['total_s'] / local['total_s']:.2f}x" if local else "-"
        workers = " / ".join(_mb(v) for v in r["worker_peak_mb"].values()) or "-"
        lines.append(
            f"| {r['mode']} | " + " | ".join(cells)
            + f" | {r['total_s']:.1f} s | {over} | {_mb(r['client_peak_mb'])} | {workers} |"
        )  # fmt: skip
    metrics = "; ".join(
        f"{r['mode']} ROC AUC {r['test_roc_auc']} / PR AUC {r['test_pr_auc']} ({r['trees']} trees)"
        for r in results
    )
    lines += ["", f"Test metrics on the same split: {metrics}."]
    return "\n".join(lines)


def replace_between_markers(path: Path, text: str) -> None:
    doc = path.read_text(encoding="utf-8")
    if MARK_BEGIN not in doc or MARK_END not in doc:
        raise SystemExit(f"{path} has no {MARK_BEGIN} ... {MARK_END} block")
    before, rest = doc.split(MARK_BEGIN, 1)
    _, after = rest.split(MARK_END, 1)
    path.write_text(f"{before}{MARK_BEGIN}\n{text}\n{MARK_END}{after}", encoding="utf-8")
    print(f"wrote the table into {path}")


if __name__ == "__main__":
    main()
