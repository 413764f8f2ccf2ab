"""Benchmark of the everyday commands (`make bench-commands`), issue 13 items 1, 2 and 4.

On OULAD (`notalone ingest oulad` of ../shared/data/oulad, or --oulad DIR) it times, each call as
its own process, whole process (Python start, imports, work), in a bench workspace under
benchmarks/.data/commands/ (git-ignored):

- `notalone --help` (target < 1 s);
- `notalone train --source OULAD --json`, default config: a first (cold) call that builds the
  feature cache and the MLflow database, then warm calls (target <= 60 s warm);
- `notalone score --source OULAD --as-of 2014-12-01`: a cold call, then warm ones (target
  <= 10 s warm);
- `notalone backtest --source OULAD --from 2014-02-10 --to 2015-01-19 --every 14`: the 26
  two-weekly dates of the 2014 presentations (target <= 2 min);
- unless `--skip-prefect`: the same `score` run as a Prefect flow (`--prefect`), once with
  Prefect's temporary local server and twice against a workspace Prefect server started once
  beforehand (`prefect server start`, its start timed apart): the measurement behind running
  plain steps by default (README, "Commands that start fast").

The table replaces the "## Commands that start fast" section of docs/performance.md (other
sections are kept); the raw numbers go to benchmarks/.data/results/commands.json.

    uv run python benchmarks/bench_commands.py [--warm 2] [--skip-prefect] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

from _measure import (
    code_version,
    fmt_seconds,
    machine,
    notalone_exe,
    run_measured,
    write_doc_section,
    write_result,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
BENCH = DATA / "commands"
HOME = BENCH / "workspace"
RESULTS = DATA / "results" / "commands.json"
DOC = REPO / "docs" / "performance.md"
SECTION = "## Commands that start fast"
DEFAULT_OULAD = REPO.parent / "shared" / "data" / "oulad"

# Targets from issue 13, whole process, warm.
TARGET_HELP_S = 1.0
TARGET_SCORE_S = 10.0
TARGET_TRAIN_S = 60.0
TARGET_BACKTEST_S = 120.0

SCORE_AS_OF = "2014-12-01"
BACKTEST_RANGE = ("2014-02-10", "2015-01-19", "14")
HELP_RUNS = 5
SERVER_START_TIMEOUT_S = 180.0


def bench_env(prefect_api_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "NOTALONE_HOME")}
    env["NOTALONE_HOME"] = str(HOME)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_HOME"] = str(HOME / "prefect")
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    return env


def timed(cmd: list[str], env: dict[str, str], what: str) -> dict:
    """Run one command measured; stop the benchmark with its output when it fails."""
    load = os.getloadavg()[0]
    m = run_measured(cmd, env=env, cwd=REPO)
    if not m.ok:
        raise SystemExit(f"{what} failed: {m.describe_failure()}")
    print(f"  {what}: {m.wall_s:.2f} s (load {load:.1f})", flush=True)
    return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "load": load, "stdout": m.stdout}


def ingest(oulad: Path, exe: str) -> tuple[Path, dict]:
    """The OULAD source in the contract, made once (not timed as part of any target)."""
    source = BENCH / "oulad"
    if not (source / "enrollments.parquet").is_file():
        shutil.rmtree(source, ignore_errors=True)
        print(f"ingesting {oulad} -> {source}", flush=True)
        timed(
            [exe, "ingest", "oulad", "--path", str(oulad), "--out", str(source)],
            bench_env(),
            "ingest",
        )
    import pyarrow.parquet as pq

    counts = {
        "enrollments": pq.ParquetFile(source / "enrollments.parquet").metadata.num_rows,
        "events": sum(pq.ParquetFile(p).metadata.num_rows for p in source.glob("events/*.parquet"))
        if (source / "events").is_dir()
        else pq.ParquetFile(source / "events.parquet").metadata.num_rows,
    }
    return source, counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect_server(env: dict[str, str]) -> tuple[subprocess.Popen, str, float]:
    """`prefect server start` on 127.0.0.1; returns the process, its API URL, seconds to healthy."""
    port = free_port()
    prefect = str(Path(sys.executable).with_name("prefect"))
    log = (HOME / "prefect-bench-server.log").open("w")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    while time.perf_counter() - started < SERVER_START_TIMEOUT_S:
        if proc.poll() is not None:
            raise SystemExit(f"prefect server exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, url, time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"prefect server not healthy after {SERVER_START_TIMEOUT_S:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, 9)


def measure(args: argparse.Namespace) -> dict:
    exe = notalone_exe()
    source, counts = ingest(args.oulad, exe)
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    env = bench_env()
    out: dict = {"counts": counts}

    print("notalone --help", flush=True)
    out["help"] = [timed([exe, "--help"], env, f"--help #{i + 1}") for i in range(HELP_RUNS)]

    print("notalone train (default config)", flush=True)
    train = [exe, "train", "--source", str(source), "--json"]
    out["train"] = [timed(train, env, f"train #{i + 1}") for i in range(1 + args.warm)]
    for run in out["train"]:
        summary = json.loads(run.pop("stdout"))
        run["steps"] = summary.get("seconds", {})
        run["served_rows"] = summary.get("served_rows")
        run["roc_auc"] = summary["metrics"]["model"]["roc_auc"]
        run["pr_auc"] = summary["metrics"]["model"]["pr_auc"]
        run["champion_candidate"] = summary.get("champion_candidate")

    print(f"notalone score --as-of {SCORE_AS_OF}", flush=True)
    score = [exe, "score", "--source", str(source), "--as-of", SCORE_AS_OF]
    out["score"] = [timed(score, env, f"score #{i + 1}") for i in range(2 + args.warm)]

    start, end, every = BACKTEST_RANGE
    print(f"notalone backtest {start}..{end} every {every} days", flush=True)
    backtest = [exe, "backtest", "--source", str(source), "--from", start, "--to", end]
    backtest += ["--every", every, "--out", str(BENCH / "backtest"), "--json"]
    out["backtest"] = [timed(backtest, env, f"backtest #{i + 1}") for i in range(args.backtests)]
    for run in out["backtest"]:
        overall = json.loads(run.pop("stdout")).get("overall", {})
        run["weeks"] = overall.get("weeks")
        run["rows"] = overall.get("rows")

    for runs in (out["help"], out["score"]):
        for run in runs:
            run.pop("stdout", None)

    if not args.skip_prefect:
        print("notalone score --prefect, Prefect's temporary local server", flush=True)
        out["score_prefect_temporary"] = [timed([*score, "--prefect"], env, "score --prefect")]
        print("notalone score --prefect, a workspace Prefect server started once", flush=True)
        proc, url, seconds = start_prefect_server(env)
        print(f"  server healthy after {seconds:.1f} s", flush=True)
        try:
            server_env = bench_env(url)
            out["prefect_server_start_s"] = seconds
            out["score_prefect_server"] = [
                timed([*score, "--prefect"], server_env, f"score --prefect (server) #{i + 1}")
                for i in range(2)
            ]
        finally:
            stop(proc)
        for key in ("score_prefect_temporary", "score_prefect_server"):
            for run in out[key]:
                run.pop("stdout", None)
    return out


def walls(runs: list[dict]) -> str:
    return ", ".join(fmt_seconds(r["wall_s"]) for r in runs)


def loads(runs: list[dict]) -> str:
    low, high = (f"{f(r['load'] for r in runs):.1f}" for f in (min, max))
    return low if low == high else f"{low}-{high}"


def replayed_dates() -> int:
    start, end, every = BACKTEST_RANGE
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days
    return days // int(every) + 1


def verdict(value: float, target: float, at_most: bool = True) -> str:
    met = value <= target if at_most else value < target
    return "met" if met else "MISSED"


def section_text(r: dict, info: dict) -> str:
    warm_train = r["train"][1:] or r["train"]
    warm_score = r["score"][2:] or r["score"]
    best_help = min(x["wall_s"] for x in r["help"])
    best_train = min(x["wall_s"] for x in warm_train)
    best_score = min(x["wall_s"] for x in warm_score)
    best_backtest = min(x["wall_s"] for x in r["backtest"])
    steps = warm_train[0]["steps"]
    step_text = ", ".join(f"{k} {v:.1f} s" for k, v in steps.items() if v >= 0.05)
    bt = r["backtest"][0]
    lines = [
        SECTION,
        "",
        f"Measured by `make bench-commands` (benchmarks/bench_commands.py) on {info['date']}, "
        f"{info['cores']} cores ({info['cpu']}), load {info['load_1m']:.1f} at the start; "
        f"build {info['build']}. Data: OULAD through `notalone ingest oulad` "
        f"({r['counts']['enrollments']:,} enrollments, {r['counts']['events']:,} events: daily "
        "click counts where the shared clickstream has them, and submissions); default config; "
        "every call a new process (`.venv/bin/notalone`), whole process: Python start, imports "
        "and the work. Warm = the feature cache and the remembered validation in the workspace "
        "from an earlier call.",
        "",
        "| command | runs (whole process) | load | target |",
        "|---|---|---|---|",
        f"| `notalone --help` | {walls(r['help'])} | {loads(r['help'])} | < 1 s: "
        f"**{verdict(best_help, TARGET_HELP_S, at_most=False)}** |",
        f"| `notalone train --source OULAD --json`, first call (builds the feature cache and the "
        f"MLflow database) | {walls(r['train'][:1])} | {loads(r['train'][:1])} | - |",
        f"| the same, warm | {walls(warm_train)} | {loads(warm_train)} | <= 60 s: "
        f"**{verdict(best_train, TARGET_TRAIN_S)}** |",
        f"| `notalone score --as-of {SCORE_AS_OF}`, first two calls (the first builds the "
        f"features of the week) | {walls(r['score'][:2])} | {loads(r['score'][:2])} | - |",
        f"| the same, warm | {walls(warm_score)} | {loads(warm_score)} | <= 10 s: "
        f"**{verdict(best_score, TARGET_SCORE_S)}** |",
        f"| `notalone backtest --from {BACKTEST_RANGE[0]} --to {BACKTEST_RANGE[1]} --every "
        f"{BACKTEST_RANGE[2]}` ({replayed_dates()} dates, {bt['weeks']} with active "
        f"enrollments; {bt['rows']:,} rows) | {walls(r['backtest'])} | {loads(r['backtest'])} "
        f"| <= 2 min: **{verdict(best_backtest, TARGET_BACKTEST_S)}** |",
    ]
    if "score_prefect_temporary" in r:
        lines += [
            f"| `score --prefect`, Prefect's temporary local server (PREFECT_API_URL unset) | "
            f"{walls(r['score_prefect_temporary'])} | {loads(r['score_prefect_temporary'])} | - |",
            f"| `score --prefect` against a workspace Prefect server started once beforehand "
            f"({r['prefect_server_start_s']:.1f} s to healthy) | {walls(r['score_prefect_server'])}"
            f" | {loads(r['score_prefect_server'])} | - |",
        ]
    lines += [
        "",
        f"Steps of the first warm `train` call (its `--json` `seconds`): {step_text}; "
        f"served model learned from {warm_train[0]['served_rows']:,} labelled snapshots; held-out "
        f"(2014 runs) ROC-AUC {warm_train[0]['roc_auc']:.3f}, PR-AUC {warm_train[0]['pr_auc']:.3f}"
        f" ({warm_train[0]['champion_candidate']} chosen).",
        "",
    ]
    if "score_prefect_temporary" in r:
        lines += [
            "Why commands run plain steps and only `serve`, the weekly flow and `demo` record in "
            "Prefect: a reused server removes the temporary server's start but still adds "
            "Prefect's client start-up and the flow and task bookkeeping over HTTP to every "
            "command, with the server competing for the same cores, and someone must keep it "
            'alive (README, "Commands that start fast").',
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oulad", type=Path, default=DEFAULT_OULAD, help="OULAD CSV folder")
    parser.add_argument("--warm", type=int, default=2, help="warm calls of train and score")
    parser.add_argument("--backtests", type=int, default=1, help="backtest calls")
    parser.add_argument("--skip-prefect", action="store_true", help="skip the --prefect rows")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument(
        "--render", action="store_true", help="write the section again from the saved results"
    )
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(RESULTS.read_text())
        info = saved.pop("machine")
        write_doc_section(DOC, SECTION, section_text(saved, info), info)
        return
    if not (args.oulad / "studentInfo.csv").is_file():
        raise SystemExit(f"no OULAD files in {args.oulad} (pass --oulad DIR)")
    info = machine()
    info["build"] = code_version(REPO)
    info["date"] = time.strftime("%Y-%m-%d")
    print(f"machine: {info['cores']} cores ({info['cpu']}), load {info['load_1m']:.1f}", flush=True)
    result = measure(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_result(RESULTS, {"machine": info, **result})
    text = section_text(result, info)
    print(text)
    if not args.no_write:
        write_doc_section(DOC, SECTION, text, info)
        print(f"wrote the {SECTION!r} section of {DOC}")


if __name__ == "__main__":
    main()
