"""Features, training and scoring of one synthetic school locally and on `local:1` / `local:2`.

    uv run python benchmarks/bench_scale.py [--students N] [--modes local,local:1,local:2]

Each mode runs in its own process (clean peak memory): wall time per stage, peak resident
memory of the client and of each worker, and the overhead of the cluster against the local run.
The school (events hive-partitioned by course run) is generated once into --data.
"""

from __future__ import annotations

import argparse
import json
import resource
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
    from models.split import split_by_time
    from models.train import evaluate_models, fit_models
    from pipelines.cluster_scoring import contributions_on_cluster
    from pipelines.cluster_training import ClusterBoosterFitter
    from pipelines.dask_store import client_at, dask_cluster, parse_scheduler
    from pipelines.feature_partitions import read_feature_dataset, write_partitioned_features
    from pipelines.score_steps import predict_step

    config = load_config(overrides={"dask": {"train_min_rows": 0, "local_memory_limit": "3GiB"}})
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
        if address:
            stage("features", lambda: write_partitioned_features(
                source, out, config, None, False, address, lambda _m: None))  # fmt: skip
            stage("features_as_of", lambda: write_partitioned_features(
                source, week, config, as_of, False, address, lambda _m: None))  # fmt: skip
        else:
            out, week = out.with_suffix(".parquet"), week.with_suffix(".parquet")
            stage("features", lambda: write_feature_file(
                source, out, config, duplicate_events=False))  # fmt: skip
            stage("features_as_of", lambda: write_feature_file(
                source, week, config, as_of, duplicate_events=False))  # fmt: skip
        frame = read_feature_dataset(out)
        split = split_by_time(frame, config.split, config.snapshots.horizon_days)
        train, validation, test = split.frames(frame)
        fitter = ClusterBoosterFitter(address) if address else None
        fitted = stage("train", lambda: fit_models(train, validation, config,
                                                   booster_fitter=fitter))  # fmt: skip
        metrics = evaluate_models(fitted, test, config)["model"].metrics
        now = read_feature_dataset(week)
        risk = stage("score_predict", lambda: predict_step(fitted.model, now, address))
        top = now.iloc[np.argsort(-risk)[: max(1, len(now) // 10)]]
        stage("score_contributions", lambda: (
            contributions_on_cluster(fitted.model, top, address, 2) if address
            else fitted.model.contributions(top)))  # fmt: skip
        if address:
            with client_at(address) as client:
                peaks = client.run(lambda: _peak_mb())
            worker_peaks.update({k: round(v) for k, v in peaks.items()})
        return {
            "feature_rows": len(frame),
            "train_rows": len(train),
            "score_rows": len(now),
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
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    source = args.data / f"school-{args.students}"
    work = args.data / "work"
    if args.one:
        print(json.dumps(run_mode(source, args.one, work)))
        return
    work.mkdir(parents=True, exist_ok=True)
    if not (source / "school.json").is_file():
        started = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "notalone"), "generate",
             "--students", str(args.students), "--out", str(source), "--partition-events"],
            check=True, cwd=ROOT,
        )  # fmt: skip
        print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    events = json.loads((source / "school.json").read_text())["events"]
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


if __name__ == "__main__":
    main()
