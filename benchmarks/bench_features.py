"""Benchmark of feature building (`make bench-features`), issue 13 item 3.

On synthetic schools of at least 1M, 20M and 50M events it measures, each step in its own process
(wall time, CPU time and peak RSS of the process tree):

(a) the floor: one grouped DuckDB aggregation of the events per (student_id, course_id), reading
    every column the features read (count, count per event type, max ts, sum value, count of
    item_id), with the builder's DuckDB settings (threads, memory limit from config.features);
(b) `notalone features --source DIR --all --out F.parquet --no-validate`, end to end; at the
    `--profile` sizes
    the same build also runs in process, split at the stages features/build.py reports (wall,
    CPU, peak RSS and DuckDB spill per stage);
(c) the straightforward pandas implementation (benchmarks/pandas_features.py): load the events,
    filter `ts < t` and group by enrolment for every weekly snapshot. Past a time budget it stops
    and extrapolates its snapshot loop from the snapshots it did (in random order, every course
    run sampled), and says so. Optional (`--skip-pandas`): no longer a target, shown for scale.

The target (issue 13 item 3): (b)/(a) whole process <= 3x at sizes of 20M events and more.
It prints the ratios (b)/(a) and (c)/(b), checks that (b) and (c) agree on a random sample of
rows (and on the population size of every snapshot (c) did), and writes the tables to the
"## Features" section of docs/performance.md (other sections of that file are kept). Each size's
numbers are also saved to benchmarks/.data/results/ as soon as they are measured.

Synthetic schools are generated once into benchmarks/.data/ (git-ignored), keyed by students and
seed, and reused; delete the folder after changing the generator. A size is a minimum: the school
has at least that many events (the students are scaled up from a pilot school until it has).
Quick run: `python benchmarks/bench_features.py --sizes 200k --skip-pandas --profile ''`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _measure import (
    GIB,
    Measurement,
    PeakSampler,
    code_version,
    fmt_bytes,
    fmt_seconds,
    machine,
    notalone_exe,
    run_measured,
    run_python_step,
    write_doc_section,
    write_result,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
DOC = REPO / "docs" / "performance.md"
SECTION = "## Features"
CONFIG_JSON = DATA / "config.json"  # the config every step of one run uses
RESULTS = DATA / "results"  # each size's measurements, saved as soon as they are taken
KEYS = ["student_id", "course_id", "as_of"]

# The target of issue 13 item 3 (it replaces issue 3's (b)/(a) <= 5x against a per-type scan).
TARGET_B_OVER_A_PROCESS = 3.0  # (b) whole process / (a) whole process
TARGET_MIN_EVENTS = 20_000_000  # ... at sizes of this many events and more
# Issue 3's other targets, still shown (informational here).
TARGET_C_OVER_B = 10.0
TARGET_B_MEMORY_AT_50M = 4 * 10**9
BIG_SIZE = 50_000_000  # the size the memory target applies to

PILOT_STUDENTS = 1000  # school generated once to learn events per student
FLOAT_TOLERANCE = 1e-6  # relative and absolute, for the agreement check

# The contract's event types (features.contract.EventType), counted per (student, course).
FLOOR_TYPES = (
    "login",
    "lesson_view",
    "lesson_complete",
    "assignment_submit",
    "quiz_attempt",
    "question",
    "support_ticket",
    "feedback",
    "activity",
)
# (a): one grouped aggregation of the events per (student, course). The outer query only folds
# the groups into one row (so that no Python conversion of ~N groups is timed) and reads every
# aggregate, so that none is optimised away.
FLOOR_SQL = f"""
SELECT count(*) AS groups, sum(n) AS n, max(last_ts) AS last_ts, sum(v) AS v, sum(items) AS items,
       {", ".join(f"sum(n_{t}) AS n_{t}" for t in FLOOR_TYPES)}
FROM (
    SELECT student_id, course_id, count(*) AS n, max(ts) AS last_ts, sum(value) AS v,
           count(item_id) AS items,
           {", ".join(f"count(*) FILTER (WHERE event_type = '{t}') AS n_{t}" for t in FLOOR_TYPES)}
    FROM raw_events GROUP BY student_id, course_id
)
"""


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size {text!r} is not like 200k, 1M or 50M")
    scale = {"": 1, "k": 10**3, "m": 10**6}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def size_label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 10**6 else f"{n / 1e3:g}k"


# --------------------------------------------------------------------------------------- data


def bench_env() -> dict[str, str]:
    """Children run in their own workspace under benchmarks/.data, never the user's."""
    env = dict(os.environ)
    env["NOTALONE_HOME"] = str(DATA / "home")
    return env


def school_dir(students: int, seed: int) -> Path:
    return DATA / f"school-n{students}-seed{seed}"


def ensure_school(students: int, seed: int) -> Path:
    """Generate the synthetic school once; reuse it when it is already there."""
    folder = school_dir(students, seed)
    if (folder / "school.json").is_file():
        return folder
    DATA.mkdir(parents=True, exist_ok=True)
    print(f"  generating {students:,} students (seed {seed}) into {folder} ...", flush=True)
    started = time.perf_counter()
    subprocess.run(
        [notalone_exe(), "generate", "--students", str(students), "--out", str(folder)]
        + ["--seed", str(seed)],
        check=True,
        env=bench_env(),
        cwd=REPO,
    )
    print(f"  generated in {fmt_seconds(time.perf_counter() - started)}", flush=True)
    return folder


def count_rows(folder: Path) -> dict[str, int]:
    from features.sources import connect, register_views

    con = connect()
    try:
        register_views(con, folder)
        return {
            name: con.execute(f"SELECT count(*) FROM raw_{name}").fetchall()[0][0]
            for name in ("events", "enrollments")
        }
    finally:
        con.close()


def students_for(target_events: int, seed: int) -> int:
    """Students needed for at least `target_events` events: estimated from a pilot school's
    rate, then scaled up (and the school generated again) while the school has fewer."""
    pilot = ensure_school(PILOT_STUDENTS, seed)
    per_student = count_rows(pilot)["events"] / PILOT_STUDENTS
    students = max(1, round(target_events / per_student))
    for _ in range(5):
        events = count_rows(ensure_school(students, seed))["events"]
        if events >= target_events:
            break
        students = math.ceil(students * target_events / max(events, 1) * 1.002)
    return students


# -------------------------------------------------------------------------------- child steps


def freeze_config() -> None:
    """Load the config once per run; every step of the run reads this copy, so an edit of
    configs/ during a long run cannot change (or break) it half-way. (`notalone features` reads
    configs/ itself.)"""
    from configs import load_config

    DATA.mkdir(parents=True, exist_ok=True)
    CONFIG_JSON.write_text(load_config().model_dump_json())


def load_frozen_config(path: Path):
    from configs.schema import Config

    return Config.model_validate_json(Path(path).read_text())


def child_floor(source: Path, result: Path, config_json: Path) -> None:
    """(a): one grouped aggregation of the events per (student, course)."""
    from features.sources import connect, register_views

    config = load_frozen_config(config_json)
    con = connect(config.features.duckdb_memory_limit, config.features.duckdb_threads)
    register_views(con, source)
    started, cpu = time.perf_counter(), time.process_time()
    (row,) = con.execute(FLOOR_SQL).fetchall()
    scan_s, scan_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    (threads,) = con.execute("SELECT current_setting('threads')").fetchall()[0]
    (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
    con.close()
    write_result(
        result,
        {
            "scan_s": scan_s,
            "scan_cpu_s": scan_cpu_s,
            "events": int(row[1]),
            "groups": int(row[0]),
            "threads": threads,
            "memory_limit": limit,
        },
    )


def child_profile(source: Path, out: Path, result: Path, config_json: Path) -> None:
    """(b) in process, split by the stages the builder reports through its progress callback:
    wall and CPU seconds, peak RSS and the most DuckDB had spilled to disk, per stage."""
    from features.build import write_feature_file

    config = load_frozen_config(config_json)
    spill_dir = DATA / "tmp"
    sampler = StageSampler(spill_dir)
    with sampler:
        # As (b) runs it: `--no-validate` takes the source as clean (no duplicate search).
        rows = write_feature_file(
            source,
            out,
            config,
            progress=sampler.mark,
            temp_dir=spill_dir,
            duplicate_events=False,
        )
    write_result(result, {"rows": rows, **sampler.summary()})


class StageSampler(PeakSampler):
    """Per reported stage: wall and CPU seconds, peak RSS, peak bytes spilled to `spill_dir`."""

    def __init__(self, spill_dir: Path) -> None:
        self.spill_dir = spill_dir
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        self.stats: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._open("(open, data end)")
        super().__init__()

    def _open(self, stage: str) -> None:
        self.stage = re.sub(r" \d+/\d+$", " (all chunks)", stage)
        entry = self.stats.setdefault(
            self.stage, {"wall_s": 0.0, "cpu_s": 0.0, "rss": 0, "spill": 0}
        )
        entry["_wall0"], entry["_cpu0"] = time.perf_counter(), time.process_time()

    def _close(self) -> None:
        entry = self.stats[self.stage]
        entry["wall_s"] += time.perf_counter() - entry.pop("_wall0")
        entry["cpu_s"] += time.process_time() - entry.pop("_cpu0")

    def mark(self, stage: str) -> None:
        with self._lock:
            self._close()
            self._open(stage)

    def sample(self, rss: int) -> None:
        spilled = 0
        for f in self.spill_dir.rglob("*"):
            try:
                spilled += f.stat().st_size if f.is_file() else 0
            except OSError:
                continue  # a spill file removed while we looked
        with self._lock:
            entry = self.stats[self.stage]
            entry["rss"] = max(entry["rss"], rss)
            entry["spill"] = max(entry["spill"], spilled)

    def summary(self) -> dict:
        with self._lock:
            self._close()
        return {
            "total_s": time.perf_counter() - self.started,
            "cpu_s": time.process_time() - self.cpu_started,
            "peak_rss": self.peak,
            "stages": self.stats,
        }


def interleaved_plan(snapshots: dict[str, list], seed: int) -> list[tuple[str, object]]:
    """All (course, t) pairs, each course's in random order, courses taking turns."""
    rng = random.Random(seed)
    queues = []
    for course, times in snapshots.items():
        order = list(times)
        rng.shuffle(order)
        queues.append([(course, t) for t in order])
    plan = []
    while any(queues):
        for q in queues:
            if q:
                plan.append(q.pop())
    return plan


def child_pandas(
    source: Path,
    result: Path,
    sample_out: Path,
    config_json: Path,
    budget_s: float,
    per_snapshot: int,
    seed: int,
) -> None:
    """(c): the pandas implementation; stops past `budget_s` of snapshot work and extrapolates."""
    import pandas_features as pf

    config = load_frozen_config(config_json)
    started = time.perf_counter()
    tables = pf.read_source(source)
    loaded = time.perf_counter()
    prep = pf.prepare(tables, config)
    del tables
    prepared = time.perf_counter()
    plan = interleaved_plan(prep.snapshots, seed)
    course_s: dict[str, float] = {}
    snap_s: dict[str, list[float]] = {}
    snapshot_rows: list[tuple[str, str, int]] = []
    kept: list[pd.DataFrame] = []
    rng = np.random.default_rng(seed)

    def on_course(course: str, seconds: float) -> None:
        course_s[course] = seconds

    def on_snapshot(course: str, t: pd.Timestamp, seconds: float) -> None:
        snap_s.setdefault(course, []).append(seconds)

    loop_started, loop_cpu = time.perf_counter(), time.process_time()
    frames = pf.iter_snapshot_frames(prep, config, plan, on_course, on_snapshot)
    for (course, t), frame in zip(plan, frames, strict=False):
        snapshot_rows.append((course, t.isoformat(), len(frame)))
        take = rng.choice(len(frame), size=min(per_snapshot, len(frame)), replace=False)
        kept.append(frame.iloc[np.sort(take)])
        if time.perf_counter() - loop_started > budget_s:
            break
    loop_s = time.perf_counter() - loop_started
    loop_cpu_s = time.process_time() - loop_cpu
    pf.finish_frame(kept, config).to_parquet(sample_out, index=False)

    # Extrapolate the loop: per course run, mean seconds per snapshot x its snapshots.
    done = sum(len(v) for v in snap_s.values())
    total = sum(len(v) for v in prep.snapshots.values())
    all_times = [s for v in snap_s.values() for s in v]
    mean_setup = float(np.mean(list(course_s.values()))) if course_s else 0.0
    estimated_loop = 0.0
    for course, times in prep.snapshots.items():
        per = float(np.mean(snap_s[course])) if course in snap_s else float(np.mean(all_times))
        estimated_loop += course_s.get(course, mean_setup) + per * len(times)
    write_result(
        result,
        {
            "load_s": loaded - started,
            "prepare_s": prepared - loaded,
            "loop_s": loop_s,
            "loop_cpu_s": loop_cpu_s,
            "snapshots_done": done,
            "snapshots_total": total,
            "estimated_loop_s": estimated_loop if done < total else loop_s,
            "events_in_memory": int(len(prep.events)),
            "snapshot_rows": snapshot_rows,
        },
    )


# ------------------------------------------------------------------------------ measurements


def measure_floor(source: Path) -> Measurement:
    args = ["--child", "floor", "--source", str(source), "--config-json", str(CONFIG_JSON)]
    return run_python_step(Path(__file__), args, env=bench_env(), cwd=REPO)


def measure_features(source: Path, out: Path) -> Measurement:
    # --no-validate: the contract check is its own scan (`notalone validate`), not feature work;
    # the pandas side (c) does not validate either.
    cmd = [notalone_exe(), "features", "--source", str(source), "--all", "--out", str(out)]
    cmd.append("--no-validate")
    # The workspace's feature cache would hand a repeated run the file of an earlier one (same
    # source, config and code): empty it, so that every run builds.
    shutil.rmtree(DATA / "home" / "cache" / "features", ignore_errors=True)
    m = run_measured(cmd, env=bench_env(), cwd=REPO)
    if "from the cache" in m.stdout + m.stderr:
        raise SystemExit("(b) was served from the feature cache: not a measurement of the build")
    return m


def measure_validate(source: Path) -> Measurement:
    """`notalone validate`: the contract check the default `notalone features` runs first."""
    cmd = [notalone_exe(), "validate", "--source", str(source)]
    return run_measured(cmd, env=bench_env(), cwd=REPO)


def measure_profile(source: Path, out: Path) -> Measurement:
    args = ["--child", "profile", "--source", str(source), "--out", str(out)]
    args += ["--config-json", str(CONFIG_JSON)]
    return run_python_step(Path(__file__), args, env=bench_env(), cwd=REPO)


def measure_pandas(source: Path, sample_out: Path, args: argparse.Namespace) -> Measurement:
    child = [
        "--child",
        "pandas",
        "--source",
        str(source),
        "--out",
        str(sample_out),
        "--config-json",
        str(CONFIG_JSON),
        "--pandas-budget",
        str(args.pandas_budget),
        "--sample-per-snapshot",
        str(args.sample_per_snapshot),
        "--seed",
        str(args.seed),
    ]
    return run_python_step(
        Path(__file__),
        child,
        env=bench_env(),
        cwd=REPO,
        time_cap_s=args.pandas_budget * 4 + 1800,  # generous: loading 50M rows takes a while
        memory_cap=pandas_memory_cap(args),
    )


def pandas_memory_cap(args: argparse.Namespace) -> int:
    """The cap for (c), lowered to leave 2 GiB free when the machine has less to spare."""
    import psutil

    cap = int(args.pandas_memory_cap * GIB)
    spare = psutil.virtual_memory().available - 2 * GIB
    if spare < cap:
        print(f"    memory cap lowered to {fmt_bytes(spare)} (available memory)", flush=True)
        return max(spare, GIB)
    return cap


def internal_seconds(m: Measurement) -> float | None:
    """The build time `notalone features` prints ("... in 12.3 s")."""
    found = re.findall(r" in ([0-9.]+) s", m.stdout + m.stderr)
    return float(found[-1]) if found else None


def agreement(features_file: Path, sample_file: Path, snapshot_rows: list, config) -> dict:
    """Compare (c)'s sampled rows with (b)'s rows of the same keys, feature by feature."""
    import duckdb
    import pandas_features as pf

    columns = [*pf.covered_features(config), "label"]
    sample = pd.read_parquet(sample_file)
    con = duckdb.connect()
    con.register("sample_keys", sample[KEYS])
    path = str(features_file).replace("'", "''")
    built = con.execute(
        f"SELECT b.* FROM read_parquet('{path}') b JOIN sample_keys USING (student_id, "
        "course_id, as_of)"
    ).df()
    counts = con.execute(
        f"SELECT course_id, as_of, count(*) FROM read_parquet('{path}') GROUP BY ALL"
    ).fetchall()
    con.close()
    built_counts = {(c, pd.Timestamp(t).isoformat()): n for c, t, n in counts}
    size_mismatch = [
        (c, t, n, built_counts.get((c, pd.Timestamp(t).isoformat()), 0))
        for c, t, n in snapshot_rows
        if built_counts.get((c, pd.Timestamp(t).isoformat()), 0) != n
    ]
    merged = sample.merge(built, on=KEYS, suffixes=("_c", "_b"))
    bad: dict[str, int] = {}
    example = None
    for col in columns:
        x, y = merged[f"{col}_c"].to_numpy(float), merged[f"{col}_b"].to_numpy(float)
        ok = np.isclose(x, y, rtol=FLOAT_TOLERANCE, atol=FLOAT_TOLERANCE, equal_nan=True)
        if not ok.all():
            bad[col] = int((~ok).sum())
            if example is None:
                row = merged.loc[~ok].iloc[0]
                example = (
                    f"{col} for {row.student_id}/{row.course_id} at {row.as_of}: "
                    f"pandas {row[f'{col}_c']}, features {row[f'{col}_b']}"
                )
    return {
        "rows": len(sample),
        "matched": len(merged),
        "columns": len(columns),
        "bad_columns": bad,
        "example": example,
        "snapshots_checked": len(snapshot_rows),
        "snapshot_size_mismatches": size_mismatch[:5],
        "n_snapshot_size_mismatches": len(size_mismatch),
        "ok": len(merged) == len(sample) and not bad and not size_mismatch,
    }


# ---------------------------------------------------------------------------------- reporting


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.1f}x"


def agreement_text(agree: dict | None) -> str:
    if agree is None:
        return "not checked"
    text = (
        f"{agree['matched']}/{agree['rows']} sampled rows, {agree['columns']} columns; "
        f"population size equal on "
        f"{agree['snapshots_checked'] - agree['n_snapshot_size_mismatches']}/"
        f"{agree['snapshots_checked']} snapshots"
    )
    if agree["ok"]:
        return "agree: " + text
    bad = ", ".join(f"{c} ({n} rows)" for c, n in agree["bad_columns"].items())
    return f"DISAGREE: {text}; differing: {bad or 'none'}; e.g. {agree['example']}"


def pandas_time_text(row: dict) -> str:
    c = row.get("c")
    if c is None:
        return "skipped"
    if c.get("failed"):
        return c["failed"]
    text = (
        f"{fmt_seconds(c['work_s'])} (process {fmt_seconds(c['wall_s'])}, "
        f"CPU {fmt_seconds(c['cpu_s'])})"
    )
    if c["extrapolated"]:
        text += f", extrapolated from {c['done']}/{c['total']} snapshots"
    return text


def validate_text(r: dict) -> str:
    if r.get("v_check_s") is None:
        return "-"
    return (
        f"{fmt_seconds(r['v_check_s'])} (process {fmt_seconds(r['v_wall_s'])}, "
        f"peak {fmt_bytes(r['v_peak'])})"
    )


def table_lines(rows: list[dict]) -> list[str]:
    """Two tables: what each approach took, and the ratios."""
    lines = [
        "| size | events | enrollments | snapshot rows | (a) grouped aggregation "
        "| (b) features --all | (b) peak RSS | (v) validate | (c) pandas | (c) peak RSS "
        "| load (a) / (b) |",
        "|---|---:|---:|---:|---|---|---:|---|---|---:|---:|",
    ]
    for r in rows:
        c = r.get("c") or {}
        lines.append(
            f"| {size_label(r['target'])} | {r['events']:,} | {r['enrollments']:,} "
            f"| {r['b_rows']:,} "
            f"| {fmt_seconds(r['a_scan_s'])} (process {fmt_seconds(r['a_wall_s'])}, "
            f"CPU {fmt_seconds(r['a_cpu_s'])}) "
            f"| {fmt_seconds(r['b_build_s'])} (process {fmt_seconds(r['b_wall_s'])}, "
            f"CPU {fmt_seconds(r['b_cpu_s'])}) "
            f"| {fmt_bytes(r['b_peak'])} | {validate_text(r)} "
            f"| {pandas_time_text(r)} | {fmt_bytes(c.get('peak'))} "
            f"| {r.get('load_a', r['load_1m']):.1f} / {r.get('load_b', r['load_1m']):.1f} |"
        )
    lines += [
        "",
        "| size | **(b)/(a) process** | (b)/(a) work | (b)/(a) CPU | (c)/(b) work "
        "| (c)/(b) process | (c)/(b) CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {size_label(r['target'])} | **{fmt_ratio(r['b_over_a_process'])}** "
            f"| {fmt_ratio(r['b_over_a'])} | {fmt_ratio(r['b_over_a_cpu'])} "
            f"| {fmt_ratio(r.get('c_over_b'))} | {fmt_ratio(r.get('c_over_b_process'))} "
            f"| {fmt_ratio(r.get('c_over_b_cpu'))} |"
        )
    return lines


def targets_lines(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        label = size_label(r["target"])
        process = r["b_over_a_process"]
        checks = []
        if r["events"] >= TARGET_MIN_EVENTS:
            met = process is not None and process <= TARGET_B_OVER_A_PROCESS
            checks.append(
                f"**(b)/(a) whole process {fmt_ratio(process)} <= "
                f"{TARGET_B_OVER_A_PROCESS:g}x: {'met' if met else 'MISSED'}**"
            )
        else:
            checks.append(
                f"(b)/(a) whole process {fmt_ratio(process)} (under "
                f"{TARGET_MIN_EVENTS / 1e6:g}M events: the target does not apply)"
            )
        if r.get("b_over_a_work_cpu") is not None:
            checks[0] += (
                f" (in CPU seconds, profiled build / aggregation query: "
                f"{fmt_ratio(r['b_over_a_work_cpu'])})"
            )
        if r.get("c_over_b") is not None:
            met = r["c_over_b"] >= TARGET_C_OVER_B
            checks.append(
                f"issue 3, informational: (c)/(b) {fmt_ratio(r['c_over_b'])} >= "
                f"{TARGET_C_OVER_B:g}x: {'met' if met else 'MISSED'}"
            )
        if r["target"] >= BIG_SIZE:
            met = r["b_peak"] <= TARGET_B_MEMORY_AT_50M
            checks.append(
                f"issue 3: (b) peak RSS {fmt_bytes(r['b_peak'])} <= 4 GB: "
                f"{'met' if met else 'MISSED'}"
            )
        out.append(
            f"- {label}: " + "; ".join(checks) + f"; agreement: {agreement_text(r.get('agree'))}"
        )
    return out


def profile_lines(profiles: dict[str, dict]) -> list[str]:
    """A table per profiled size: each stage's wall and CPU seconds, peak RSS, spill."""
    out = []
    for label, prof in profiles.items():
        total = prof["total_s"]
        out += [
            f"{label}: in-process build {fmt_seconds(total)} (CPU {fmt_seconds(prof['cpu_s'])}, "
            f"peak RSS {fmt_bytes(prof['peak_rss'])})",
            "",
            "| stage | wall | share | CPU | peak RSS | spilled to disk |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for stage, st in prof["stages"].items():
            out.append(
                f"| {stage} | {fmt_seconds(st['wall_s'])} | {st['wall_s'] / total:.0%} "
                f"| {fmt_seconds(st['cpu_s'])} | {fmt_bytes(st['rss']) if st['rss'] else '-'} "
                f"| {fmt_bytes(st['spill']) if st['spill'] else '-'} |"
            )
        out.append("")
    return out


def section_text(rows: list[dict], profiles: dict[str, dict], info: dict, args) -> str:
    covered = (
        "every catalogue feature of features.catalog (recency, windowed counts and active days "
        "by type, trend, deadlines, scores, support, progress, cohort percentiles) and the "
        "label; not attr_*"
    )
    lines = [
        SECTION,
        "",
        f"Measured by `make bench-features` (benchmarks/bench_features.py) on {info['cores']} "
        f"cores ({info['cpu']}), {fmt_bytes(info['memory_total'])} RAM "
        f"({fmt_bytes(info['memory_available'])} available at the start), load average "
        f"{info['load_1m']:.1f} at the start{info.get('load_note', '')}; "
        f"{time.strftime('%Y-%m-%d')}; features/build.py at {info.get('build', 'unknown')}. "
        f"Synthetic schools (`notalone generate`, seed {args.seed}); a size is a minimum "
        "number of events."
        + (
            f" (a) and (b) ran {args.repeat} times each, taking turns; shown: each one's "
            "fastest whole process."
            if args.repeat > 1
            else ""
        ),
        "",
        *table_lines(rows),
        "",
        "- (a) the floor (issue 13 item 3): one grouped DuckDB aggregation of the events per "
        "(student_id, course_id), reading every column the features read: count, count per "
        "event type (the nine of the contract), max ts, sum value, count of item_id; folded "
        "into one result row, so no Python conversion of the groups is timed. The builder's "
        "settings (all cores, memory limit from `features.duckdb_memory_limit`) and its way of "
        "opening the source (`features.sources`, views over the Parquet files). Shown: the "
        "query alone (wall), its whole process (wall) and the process's CPU time.",
        "- (b) `notalone features --source DIR --all --out F.parquet --no-validate` as a "
        "subprocess, end to end (the contract check is a separate scan, `notalone validate`) "
        "(every weekly snapshot of every course run, with labels, written to Parquet); shown: "
        "the build time the command prints (open the source, build, write), the whole process "
        "(wall) and its CPU time. Peak RSS: the process tree, sampled every 50 ms with psutil. "
        "`--no-validate` takes the source as clean, so the build does not look for exact "
        "duplicate events either (that is a hash aggregation of every event).",
        "- (v) `notalone validate --source DIR`: the contract check, including exact duplicate "
        "events, that `notalone features` runs first unless told `--no-validate` (it passes on "
        "whether duplicates exist, so the build de-duplicates only when needed). The default "
        "command therefore takes (v) + (b); shown: the check time it prints and its process.",
        "- Ratios: *process* compares whole processes, wall time (the target; starting Python "
        "and importing pandas/DuckDB is a fixed cost on both sides that dominates small sizes); "
        "*work* compares the work itself ((b) build / (a) aggregation query; (c) load + "
        "prepare + snapshot loop / (b) build); *CPU* compares the processes' CPU seconds (all "
        "threads), which a busy machine disturbs least. Wall times stretch when other work "
        "competes for the cores.",
        f"- (c), optional (`--skip-pandas`), no longer a target: "
        f"benchmarks/pandas_features.py: pandas loads the tables, then for every weekly "
        f"snapshot filters `ts < t` and groups by enrolment. Covers {covered}. "
        f"Past {fmt_seconds(args.pandas_budget)} of snapshot work it stops; its time is then "
        "the measured load and preparation plus the snapshot loop extrapolated per course run "
        "(mean seconds per snapshot, over snapshots done in random order, x the run's "
        f"snapshots). Memory cap {args.pandas_memory_cap:g} GiB.",
        "- load (a) / (b): the 1-minute load average when the (a) and (b) runs shown began "
        f"(the machine has {info['cores']} cores; above that, steps wait for a core and wall "
        "times stretch).",
        "",
        f"Target (issue 13 item 3): (b)/(a) whole process <= {TARGET_B_OVER_A_PROCESS:g}x at "
        f"{TARGET_MIN_EVENTS / 1e6:g}M events and more (it replaces issue 3's (b)/(a) <= 5x "
        "against a scan grouped by event type).",
        *targets_lines(rows),
    ]
    if profiles:
        lines += [
            "",
            "Where (b) spends its time: the same build in process, split at the stages "
            "features/build.py reports through its progress callback (a stage runs until the "
            "next is reported; RSS and the DuckDB spill folder sampled every 50 ms).",
            "",
        ]
        lines += profile_lines(profiles)
        lines += budget_lines(rows, profiles)
    return "\n".join(lines) + "\n"


CHUNK_STAGE = "features (all chunks)"


def budget_lines(rows: list[dict], profiles: dict[str, dict]) -> list[str]:
    """Per profiled size: the DuckDB stages and the chunk stage against the target's budget."""
    out = []
    for r in rows:
        prof = profiles.get(size_label(r["target"]))
        if not prof or CHUNK_STAGE not in prof["stages"]:
            continue
        chunks = prof["stages"][CHUNK_STAGE]["wall_s"]
        duckdb_s = prof["total_s"] - chunks
        budget = TARGET_B_OVER_A_PROCESS * r["a_wall_s"]
        outside = r["b_wall_s"] - (r["b_build_s"] or 0.0)
        out.append(
            f"- {size_label(r['target'])}: the target allows (b) {fmt_seconds(budget)} "
            f"({TARGET_B_OVER_A_PROCESS:g} x (a)'s process). In process, the stages before the "
            f"chunks (DuckDB: rollups, deadlines, first seen) take {fmt_seconds(duckdb_s)} "
            f"({fmt_ratio(ratio(duckdb_s, r['a_scan_s']))} the (a) query), the chunks (grid "
            f"fetch, window and deadline features in numpy, frame, Parquet) "
            f"{fmt_seconds(chunks)}; the command adds {fmt_seconds(outside)} outside its "
            "build (starting Python, imports, exit)."
        )
    return ["", *out] if out else []


def write_section(text: str, info: dict) -> None:
    write_doc_section(DOC, SECTION, text, info)


# --------------------------------------------------------------------------------------- main


def run_size(target: int, args: argparse.Namespace, profiles: dict[str, dict]) -> dict:
    students = students_for(target, args.seed)
    source = ensure_school(students, args.seed)
    load_start = os.getloadavg()[0]
    counts = count_rows(source)
    label = size_label(target)
    print(
        f"\n== {label} (at least): {students:,} students -> {counts['events']:,} events, "
        f"{counts['enrollments']:,} enrollments ({source.name})",
        flush=True,
    )
    out_dir = DATA / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    key = f"n{students}-seed{args.seed}"
    features_file = out_dir / f"features-{key}.parquet"

    # (a) and (b) take turns `--repeat` times; each keeps its fastest whole process (the run
    # least disturbed by other work on the machine). All runs are saved.
    a_runs: list[Measurement] = []
    b_runs: list[Measurement] = []
    a_loads: list[float] = []
    b_loads: list[float] = []
    for attempt in range(1, args.repeat + 1):
        of = f" {attempt}/{args.repeat}" if args.repeat > 1 else ""
        a_loads.append(os.getloadavg()[0])
        print(f"(a) floor: grouped aggregation{of} ... [load {a_loads[-1]:.1f}]", flush=True)
        a = measure_floor(source)
        if not a.ok:
            raise SystemExit(f"(a) failed: {a.describe_failure()}")
        a_runs.append(a)
        print(
            f"    query {fmt_seconds(a.result['scan_s'])} "
            f"(CPU {fmt_seconds(a.result['scan_cpu_s'])}, {a.result['groups']:,} groups), "
            f"process {fmt_seconds(a.wall_s)} (CPU {fmt_seconds(a.cpu_s)}), "
            f"peak {fmt_bytes(a.peak_rss)} (threads {a.result['threads']}, "
            f"memory_limit {a.result['memory_limit']})",
            flush=True,
        )
        b_loads.append(os.getloadavg()[0])
        print(f"(b) notalone features --all{of} ... [load {b_loads[-1]:.1f}]", flush=True)
        b = measure_features(source, features_file)
        if not b.ok:
            raise SystemExit(f"(b) failed: {b.describe_failure()}")
        b_runs.append(b)
        print(
            f"    {fmt_seconds(b.wall_s)} (build {fmt_seconds(internal_seconds(b))} as printed; "
            f"CPU {fmt_seconds(b.cpu_s)}), peak {fmt_bytes(b.peak_rss)}",
            flush=True,
        )
    best_a = min(range(len(a_runs)), key=lambda i: a_runs[i].wall_s)
    best_b = min(range(len(b_runs)), key=lambda i: b_runs[i].wall_s)
    a, b = a_runs[best_a], b_runs[best_b]
    b_rows = pd.read_parquet(features_file, columns=["label"]).shape[0]
    print(f"    {b_rows:,} snapshot rows", flush=True)
    print(f"(v) notalone validate ... [load {os.getloadavg()[0]:.1f}]", flush=True)
    v = measure_validate(source)
    if not v.ok:
        raise SystemExit(f"(v) failed: {v.describe_failure()}")
    print(
        f"    {fmt_seconds(v.wall_s)} (check {fmt_seconds(internal_seconds(v))} as printed; "
        f"CPU {fmt_seconds(v.cpu_s)}), peak {fmt_bytes(v.peak_rss)}",
        flush=True,
    )
    row = {
        "target": target,
        "v_check_s": internal_seconds(v),
        "v_wall_s": v.wall_s,
        "v_peak": v.peak_rss,
        "load_1m": load_start,
        "load_a": a_loads[best_a],
        "load_b": b_loads[best_b],
        "repeat": args.repeat,
        "a_walls": [m.wall_s for m in a_runs],
        "b_walls": [m.wall_s for m in b_runs],
        "a_queries": [m.result["scan_s"] for m in a_runs],
        "b_builds": [internal_seconds(m) for m in b_runs],
        "loads_a": a_loads,
        "loads_b": b_loads,
        "a_groups": a.result["groups"],
        "students": students,
        "events": counts["events"],
        "enrollments": counts["enrollments"],
        "a_scan_s": a.result["scan_s"],
        "a_scan_cpu_s": a.result["scan_cpu_s"],
        "a_wall_s": a.wall_s,
        "a_cpu_s": a.cpu_s,
        "a_peak": a.peak_rss,
        "b_wall_s": b.wall_s,
        "b_cpu_s": b.cpu_s,
        "b_build_s": internal_seconds(b),
        "b_peak": b.peak_rss,
        "b_rows": b_rows,
        "b_over_a": ratio(internal_seconds(b), a.result["scan_s"]),
        "b_over_a_process": ratio(b.wall_s, a.wall_s),
        "b_over_a_cpu": ratio(b.cpu_s, a.cpu_s),
    }
    best = f" (fastest of {args.repeat} each)" if args.repeat > 1 else ""
    print(
        f"    (b)/(a) = {fmt_ratio(row['b_over_a_process'])} process / process{best} "
        f"({fmt_ratio(row['b_over_a'])} build / query, {fmt_ratio(row['b_over_a_cpu'])} CPU)",
        flush=True,
    )

    if label in args.profile:
        print(f"(b) stage profile ... [load {os.getloadavg()[0]:.1f}]", flush=True)
        p = measure_profile(source, out_dir / f"profile-{key}.parquet")
        if p.ok:
            profiles[label] = p.result
            row["b_over_a_work_cpu"] = ratio(p.result["cpu_s"], a.result["scan_cpu_s"])
            print("\n".join("    " + line for line in profile_lines({label: p.result})), flush=True)
        else:
            print(f"    profile failed: {p.describe_failure()}", flush=True)

    if not args.skip_pandas:
        print(f"(c) pandas ... [load {os.getloadavg()[0]:.1f}]", flush=True)
        sample_file = out_dir / f"pandas-sample-{key}.parquet"
        c = measure_pandas(source, sample_file, args)
        if not c.ok or c.result is None:
            row["c"] = {"failed": f"did not finish: {c.describe_failure()}", "peak": c.peak_rss}
            print(f"    {row['c']['failed']}, peak {fmt_bytes(c.peak_rss)}", flush=True)
        else:
            r = c.result
            extrapolated = r["snapshots_done"] < r["snapshots_total"]
            # Work = load + prepare + snapshot loop (extrapolated when cut short); the process
            # adds Python start and imports, like (b)'s process.
            work = r["load_s"] + r["prepare_s"] + r["estimated_loop_s"]
            total = c.wall_s - r["loop_s"] + r["estimated_loop_s"]
            # CPU of the loop scales like its wall time when extrapolated.
            stretch = r["estimated_loop_s"] / r["loop_s"] - 1 if r["loop_s"] > 0 else 0.0
            cpu = c.cpu_s + r["loop_cpu_s"] * stretch
            row["c"] = {
                "work_s": work,
                "wall_s": total,
                "cpu_s": cpu,
                "measured_wall_s": c.wall_s,
                "peak": c.peak_rss,
                "extrapolated": extrapolated,
                "done": r["snapshots_done"],
                "total": r["snapshots_total"],
                "load_s": r["load_s"],
                "prepare_s": r["prepare_s"],
            }
            row["c_over_b"] = ratio(work, row["b_build_s"])
            row["c_over_b_process"] = ratio(total, b.wall_s)
            row["c_over_b_cpu"] = ratio(cpu, b.cpu_s)
            how = (
                f"extrapolated from {r['snapshots_done']}/{r['snapshots_total']} snapshots "
                f"({fmt_seconds(c.wall_s)} measured)"
                if extrapolated
                else "all snapshots"
            )
            print(
                f"    work {fmt_seconds(work)}, process {fmt_seconds(total)} ({how}; load "
                f"{fmt_seconds(r['load_s'])}, prepare {fmt_seconds(r['prepare_s'])}), peak "
                f"{fmt_bytes(c.peak_rss)}; (c)/(b) = {fmt_ratio(row['c_over_b'])} work / build "
                f"({fmt_ratio(row['c_over_b_process'])} process / process, "
                f"{fmt_ratio(row['c_over_b_cpu'])} CPU)",
                flush=True,
            )
            row["agree"] = agreement(
                features_file, sample_file, r["snapshot_rows"], load_frozen_config(CONFIG_JSON)
            )
            print(f"    check: {agreement_text(row['agree'])}", flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        default=[10**6, 2 * 10**7, 5 * 10**7],
        help="minimum event counts, comma separated (default 1M,20M,50M)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run (a) and (b) this many times, taking turns; each keeps its fastest process",
    )
    parser.add_argument("--skip-pandas", action="store_true", help="skip (c)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic school seed")
    parser.add_argument(
        "--pandas-budget",
        type=float,
        default=600.0,
        help="seconds of (c) snapshot work before it stops and extrapolates",
    )
    parser.add_argument(
        "--pandas-memory-cap", type=float, default=14.0, help="GiB; (c) is stopped past this"
    )
    parser.add_argument("--sample-per-snapshot", type=int, default=40, help="rows checked each")
    parser.add_argument(
        "--profile",
        type=lambda s: [size_label(parse_size(x)) for x in s.split(",") if x],
        default=["20M", "50M"],
        help="sizes at which to also run (b) in process and time its stages (default 20M,50M; "
        "'' for none)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--keep-output", action="store_true", help="keep (b)'s Parquet output")
    # Child steps (run by this script in separate processes).
    parser.add_argument("--child", choices=["floor", "pandas", "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "floor":
        return child_floor(args.source, args.result, args.config_json)
    if args.child == "profile":
        return child_profile(args.source, args.out, args.result, args.config_json)
    if args.child == "pandas":
        return child_pandas(
            args.source,
            args.result,
            args.out,
            args.config_json,
            args.pandas_budget,
            args.sample_per_snapshot,
            args.seed,
        )

    info = machine()
    info["build"] = code_version(REPO, "features/build.py")
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {fmt_bytes(info['memory_total'])} RAM, "
        f"{fmt_bytes(info['memory_available'])} available, load {info['load_1m']:.1f}",
        flush=True,
    )
    if info["load_1m"] > (info["cores"] or 1):
        print("warning: the machine is busy; times will be noisy", flush=True)
        info["load_note"] = " (busy: other work was running, times are noisy)"
    freeze_config()
    rows: list[dict] = []
    profiles: dict[str, dict] = {}
    for target in args.sizes:
        row = run_size(target, args, profiles)
        rows.append(row)
        # Saved at once, so that a failure later in a long run loses nothing measured.
        RESULTS.mkdir(parents=True, exist_ok=True)
        saved = {"row": row, "profile": profiles.get(size_label(target)), "machine": info}
        (RESULTS / f"{size_label(target)}-seed{args.seed}.json").write_text(
            json.dumps(saved, indent=1, default=str)
        )
        if not args.keep_output:
            for f in (DATA / "out").glob("*.parquet"):
                f.unlink()
    text = section_text(rows, profiles, info, args)
    print("\n" + text)
    if not args.no_write:
        write_section(text, info)
        print(f"wrote the {SECTION!r} section of {DOC.relative_to(REPO)}")
    shutil.rmtree(DATA / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
