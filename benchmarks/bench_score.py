"""Benchmark of the weekly scorer (`make bench-score`), issue 5 item 7.

For about 100k and 1M active enrollments it measures, each step in its own process (wall time,
peak RSS of the process tree):

(a) the floor: one DuckDB scan of the events table (every column the features read);
(b) the scorer end to end, in process as `notalone score` runs it (`score_steps`):
    model load, features at T, prediction, cooldown/capacity ranking, contributions for the listed
    students, reasons/tier/message, report, atomic write; with the time of each step;
(c) the straightforward way for comparison: the same with contributions (TreeSHAP) for every
    active enrollment (`scoring.explain: all`), stopped at a time cap (then only a bound is given).

The school: a synthetic school whose course runs all started 4-5 weeks before the data end, so
nearly every enrollment is active at T = the data end (a busy week of a large school; about 130
events per enrollment). The model: the champion trained once (`notalone train`) on a small school
of the default shape, in a workspace under benchmarks/.data/ (git-ignored). Schools and the
model are made once and reused; their making is not measured.

It writes the table to the "## Scoring" section of docs/performance.md (other sections are kept).
Quick run: `python benchmarks/bench_score.py --sizes 20k --skip-naive --no-write`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _measure import (
    GIB,
    Measurement,
    fmt_bytes,
    fmt_seconds,
    machine,
    run_python_step,
    write_doc_section,
    write_result,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
HOME = DATA / "score-home"
DOC = REPO / "docs" / "performance.md"
SECTION = "## Scoring"
SCRIPT = Path(__file__).resolve()

# Targets from issue 5.
TARGET_SECONDS_AT_1M = 180.0
TARGET_MEMORY = 6 * 10**9
TARGET_SIZE = 10**6

TRAIN_STUDENTS = 3000  # the champion's training school (default generator shape)
PILOT_STUDENTS = 2000  # learns active enrollments per student of the week school
# A week of a large school: every run started within ~1 week, 4 weeks before the data end.
WEEK_SCHOOL = {
    "start_spread_weeks": 1,
    "course_weeks_min": 10,
    "data_end_weeks_after_last_start": 4,
}
NAIVE_TIME_CAP = 900.0
MEMORY_CAP = 14 * GIB


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r} is not like 100k or 1M")
    return int(float(m.group(1)) * {"": 1, "k": 10**3, "m": 10**6}[m.group(2).lower()])


def size_label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 10**6 else f"{n / 1e3:g}k"


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NOTALONE_HOME"] = str(HOME)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, env=bench_env(), cwd=REPO, stdout=subprocess.DEVNULL)


# ----------------------------------------------------------------------------- data and model


def child_generate(out: Path, students: int, seed: int, week_school: bool) -> None:
    from configs import load_config
    from features.sources import atomic_dir
    from features.synthetic import write_school

    overrides = {"generator": WEEK_SCHOOL} if week_school else None
    config = load_config(overrides=overrides)
    with atomic_dir(out) as tmp:
        write_school(tmp, students, seed, config.generator)


def ensure_school(name: str, students: int, seed: int, week_school: bool) -> Path:
    folder = DATA / f"{name}-n{students}-seed{seed}"
    if (folder / "school.json").is_file():
        return folder
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"  generating {folder.name} ...", flush=True)
    started = time.perf_counter()
    run_quiet(
        [
            sys.executable,
            str(SCRIPT),
            "--child",
            "generate",
            "--out",
            str(folder),
            "--students",
            str(students),
            "--seed",
            str(seed),
        ]
        + (["--week-school"] if week_school else [])
    )
    print(f"  generated in {fmt_seconds(time.perf_counter() - started)}", flush=True)
    return folder


def school_info(folder: Path) -> dict:
    return json.loads((folder / "school.json").read_text())


def active_at_end(folder: Path) -> int:
    """Enrollments active at the data end (enrolled, not unenrolled, run in progress)."""
    from features.sources import connect, register_views

    end = school_info(folder)["data_end"]
    con = connect()
    try:
        register_views(con, folder)
        return con.execute(
            """
            SELECT count(*) FROM raw_enrollments e JOIN raw_courses c USING (course_id)
            WHERE c.start_at <= CAST($t AS TIMESTAMPTZ) AND CAST($t AS TIMESTAMPTZ) <= c.end_at
              AND e.enrolled_at <= CAST($t AS TIMESTAMPTZ)
              AND (e.unenrolled_at IS NULL OR e.unenrolled_at >= CAST($t AS TIMESTAMPTZ))
            """,
            {"t": end},
        ).fetchall()[0][0]
    finally:
        con.close()


def ensure_model(seed: int) -> str:
    """Train the champion once in the bench workspace; returns the version registered."""
    marker = HOME / "bench-model.json"
    if marker.is_file():
        return json.loads(marker.read_text())["version"]
    school = ensure_school("score-train", TRAIN_STUDENTS, seed, week_school=False)
    print("  training the champion (once) ...", flush=True)
    started = time.perf_counter()
    HOME.mkdir(parents=True, exist_ok=True)
    run_quiet(
        [
            sys.executable,
            str(SCRIPT),
            "--child",
            "train",
            "--source",
            str(school),
            "--result",
            str(marker),
        ]
    )
    result = json.loads(marker.read_text())
    print(
        f"  trained version {result['version']} in {fmt_seconds(time.perf_counter() - started)}",
        flush=True,
    )
    return result["version"]


# -------------------------------------------------------------------------------- child steps


def child_train(source: Path, result: Path) -> None:
    from configs import load_config
    from pipelines.runner import Steps
    from pipelines.settings import Workspace
    from pipelines.train_steps import train_steps

    workspace = Workspace.resolve().activate()
    trained = train_steps(source=source, config=load_config(), workspace=workspace, steps=Steps())
    write_result(result, {"version": trained["version"]})


def child_floor(source: Path, result: Path) -> None:
    from configs import load_config
    from features.sources import connect, register_views

    config = load_config()
    con = connect(config.features.duckdb_memory_limit, config.features.duckdb_threads)
    register_views(con, source)
    started = time.perf_counter()
    (n,) = con.execute(
        "SELECT count(*), max(student_id), max(course_id), max(ts), max(event_type), "
        "max(item_id), sum(value) FROM raw_events"
    ).fetchall()[0][:1]
    write_result(result, {"scan_s": time.perf_counter() - started, "events": n})


def child_score(source: Path, out: Path, result: Path, explain: str) -> None:
    """(b) / (c): the scorer as `notalone score` runs it, with step timings and the
    process's peak RSS so far at the end of each step (which step set the high-water mark)."""
    import resource

    started = time.perf_counter()
    from configs import load_config
    from pipelines.runner import Steps
    from pipelines.schedule import parse_as_of
    from pipelines.score_steps import score_steps
    from pipelines.settings import Workspace

    imported = time.perf_counter() - started
    info = json.loads((source / "school.json").read_text())
    config = load_config(overrides={"scoring": {"explain": explain}})
    high_water: dict[str, int] = {}

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def runner(name: str, step, *step_args, io: bool = False, **step_kwargs):
        # The plain runner, noting the process's peak RSS after each step.
        value = step(*step_args, **step_kwargs)
        high_water[name] = peak()
        return value

    # As `notalone score` does: the sequence validates first (a source that fails is not
    # scored); the build then knows whether exact duplicate events need dropping.
    summary = score_steps(
        source=source,
        as_of=parse_as_of(info["data_end"]),
        config=config,
        workspace=Workspace.resolve().activate(),
        steps=Steps(runner=runner),
        out=out,
    ).result
    write_result(
        result,
        {
            "imports_s": imported,
            "timings": summary["timings"],
            "cpu_seconds": summary["cpu_seconds"],
            "peak_after": high_water,
            "students": summary["students"],
            "listed": summary["listed"],
            "curators": summary["curators"],
            "total_s": time.perf_counter() - started,
        },
    )


# ----------------------------------------------------------------------------------- measure


def measure(args: list[str], time_cap: float | None = None) -> Measurement:
    return run_python_step(
        SCRIPT, args, env=bench_env(), cwd=REPO, time_cap_s=time_cap, memory_cap=MEMORY_CAP
    )


def run_size(target: int, args: argparse.Namespace, pilot_rate: float) -> dict:
    students = math.ceil(target / pilot_rate)
    source = ensure_school("score-week", students, args.seed, week_school=True)
    info = school_info(source)
    label = size_label(target)
    print(f"\n== {label}: {students:,} students, {info['events']:,} events ({source.name})")
    row: dict = {"label": label, "events": info["events"], "students_generated": students}

    floor = measure(["--child", "floor", "--source", str(source)])
    row["floor_s"] = floor.result["scan_s"] if floor.ok and floor.result else None
    print(f"  (a) one scan: {fmt_seconds(row['floor_s'])}", flush=True)

    out = DATA / "score-out" / label
    shutil.rmtree(out, ignore_errors=True)
    m = measure(
        [
            "--child",
            "score",
            "--source",
            str(source),
            "--out",
            str(out / "week"),
            "--explain",
            "listed",
        ]
    )
    row["score"] = {
        "wall_s": m.wall_s,
        "peak": m.peak_rss,
        "ok": m.ok,
        "result": m.result,
        "failure": None if m.ok else m.describe_failure(),
    }
    if m.ok:
        r = m.result
        print(
            f"  (b) scorer: {fmt_seconds(m.wall_s)}, peak {fmt_bytes(m.peak_rss)}; "
            f"{r['students']:,} active, {r['listed']:,} listed for {r['curators']:,} curators; "
            f"steps {r['timings']}",
            flush=True,
        )
    else:
        print(f"  (b) failed: {m.describe_failure()}", flush=True)

    if not args.skip_naive and target <= args.naive_max:
        n = measure(
            [
                "--child",
                "score",
                "--source",
                str(source),
                "--out",
                str(out / "naive"),
                "--explain",
                "all",
            ],
            time_cap=NAIVE_TIME_CAP,
        )
        row["naive"] = {
            "wall_s": n.wall_s,
            "peak": n.peak_rss,
            "ok": n.ok,
            "stopped": n.stopped,
            "result": n.result,
        }
        print(
            f"  (c) explain everyone: {fmt_seconds(n.wall_s)}"
            + (f" (stopped by the {n.stopped})" if n.stopped else ""),
            flush=True,
        )
    shutil.rmtree(out, ignore_errors=True)
    return row


# ------------------------------------------------------------------------------------ report


STEPS = (
    "validate",
    "model",
    "features",
    "predict",
    "drift",
    "history",
    "contacts",
    "rank",
    "explain",
    "words",
    "report",
    "write",
    "record",
)


def table_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| active enrollments | events | listed (curators) | (a) one scan | (b) scorer, wall "
        "| (b) peak memory | (b)/(a) | (c) explain everyone | (c)/(b) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row["score"]
        r = s["result"] or {}
        wall = s["wall_s"] if s["ok"] else None
        naive = row.get("naive")
        if naive is None:
            naive_cell, naive_ratio = "not run", "-"
        elif naive["stopped"]:
            naive_cell = f"> {fmt_seconds(naive['wall_s'])} (stopped)"
            naive_ratio = f"> {naive['wall_s'] / wall:.1f}x" if wall else "-"
        else:
            naive_cell = fmt_seconds(naive["wall_s"])
            naive_ratio = f"{naive['wall_s'] / wall:.1f}x" if wall else "-"
        ratio = f"{wall / row['floor_s']:.0f}x" if wall and row["floor_s"] else "-"
        lines.append(
            f"| {r.get('students', 0):,} | {row['events']:,} | "
            f"{r.get('listed', 0):,} ({r.get('curators', 0):,}) | {fmt_seconds(row['floor_s'])} | "
            f"{fmt_seconds(wall) if wall else s['failure']} | {fmt_bytes(s['peak'])} | {ratio} | "
            f"{naive_cell} | {naive_ratio} |"
        )
    return lines


def steps_lines(rows: list[dict]) -> list[str]:
    """Per step: wall time, CPU time of the process (all threads; on a busy machine wall >> CPU
    / cores) and the peak RSS of the process once the step ended."""
    lines = [
        "| active enrollments | | imports | " + " | ".join(STEPS) + " |",
        "|---|---|" + "---|" * (len(STEPS) + 1),
    ]
    for row in rows:
        r = row["score"]["result"]
        if not r:
            continue
        wall = [fmt_seconds(r["imports_s"])] + [fmt_seconds(r["timings"].get(s)) for s in STEPS]
        cpu = ["-"] + [fmt_seconds(r["cpu_seconds"].get(s)) for s in STEPS]
        peak = ["-"] + [fmt_bytes(r["peak_after"].get(s)) for s in STEPS]
        lines.append(f"| {r['students']:,} | wall | " + " | ".join(wall) + " |")
        lines.append("| | CPU | " + " | ".join(cpu) + " |")
        lines.append("| | peak RSS after | " + " | ".join(peak) + " |")
    return lines


def targets_lines(rows: list[dict]) -> list[str]:
    big = [r for r in rows if r["label"] == size_label(TARGET_SIZE) and r["score"]["ok"]]
    if not big:
        return [
            "Targets (1M active enrollments under 3 minutes, peak memory under 6 GB): "
            "not measured in this run."
        ]
    s = big[0]["score"]
    time_ok = s["wall_s"] < TARGET_SECONDS_AT_1M
    mem_ok = s["peak"] < TARGET_MEMORY
    return [
        f"Targets at 1M active enrollments: under 3 minutes - {'met' if time_ok else 'NOT met'} "
        f"({fmt_seconds(s['wall_s'])}); peak memory under 6 GB - "
        f"{'met' if mem_ok else 'NOT met'} ({fmt_bytes(s['peak'])})."
    ]


def section_text(rows: list[dict], info: dict) -> str:
    return "\n".join(
        [
            SECTION,
            "",
            "`make bench-score` (benchmarks/bench_score.py). A synthetic school in a busy week: "
            "every course run started 4-5 weeks before T, so nearly every enrollment is active; "
            "the champion was trained on a 3,000-student school of the default shape. Each step "
            "runs in its own process; wall time includes Python imports and loading the model "
            "from MLflow; peak memory is the summed RSS of the process tree.",
            "",
            f"Machine: {info['cores']} cores ({info['cpu']}), {fmt_bytes(info['memory_total'])} "
            f"RAM, load {info['load_1m']:.1f} at the start{info.get('load_note', '')}.",
            "",
            "(a) one DuckDB scan of the events; (b) the scorer as `notalone score` "
            "runs it, in process (validation, features at T, prediction, drift check, cooldown "
            "and capacity, contributions for the listed students on every core, reasons, tier, "
            "message, report, atomic write, the week's MLflow run; the Prefect flow adds its "
            "server start and task bookkeeping); (c) the same with contributions for every active "
            "enrollment (`scoring.explain: all`), the straightforward way.",
            "",
            *table_lines(rows),
            "",
            "Steps of (b): wall and CPU seconds (all threads of the process) and the process's "
            "peak RSS at the end of each step:",
            "",
            *steps_lines(rows),
            "",
            *targets_lines(rows),
            "",
        ]
    )


def write_section(text: str, info: dict) -> None:
    write_doc_section(DOC, SECTION, text, info)


# -------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        default=[10**5, 10**6],
        help="active enrollments, comma separated (default 100k,1M)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-naive", action="store_true", help="skip (c)")
    parser.add_argument(
        "--naive-max", type=parse_size, default=10**5, help="largest size (c) runs at"
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument(
        "--child", choices=["generate", "train", "floor", "score"], help=argparse.SUPPRESS
    )
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--students", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--week-school", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--explain", choices=["listed", "all"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "generate":
        return child_generate(args.out, args.students, args.seed, args.week_school)
    if args.child == "train":
        return child_train(args.source, args.result)
    if args.child == "floor":
        return child_floor(args.source, args.result)
    if args.child == "score":
        return child_score(args.source, args.out, args.result, args.explain)

    info = machine()
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {fmt_bytes(info['memory_total'])} RAM, "
        f"load {info['load_1m']:.1f}",
        flush=True,
    )
    if info["load_1m"] > (info["cores"] or 1):
        print("warning: the machine is busy; times will be noisy", flush=True)
        info["load_note"] = " (busy: other work was running, times are noisy)"
    sys.path.insert(0, str(REPO))
    version = ensure_model(args.seed)
    print(f"champion: version {version} in {HOME}", flush=True)
    pilot = ensure_school("score-week", PILOT_STUDENTS, args.seed, week_school=True)
    pilot_rate = active_at_end(pilot) / PILOT_STUDENTS
    print(f"pilot: {pilot_rate:.3f} active enrollments per student at T", flush=True)
    rows = [run_size(target, args, pilot_rate) for target in args.sizes]
    text = section_text(rows, info)
    print("\n" + text)
    if not args.no_write:
        write_section(text, info)
        print(f"wrote the {SECTION!r} section of {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
