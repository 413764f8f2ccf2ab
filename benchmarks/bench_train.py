"""Training benchmark: fit the dropout model and both baselines on ~1M snapshot rows.

Two feature frames of about `--rows` weekly snapshots, made before the clock starts:

- `school` (the target): the synthetic school (`features.synthetic.write_school`) through the
  feature builder (`features.build.build_feature_frame`), i.e. the rows `notalone train` sees;
- `planted` (a stress case): `models.frames.synthetic_feature_frame`, the agreed layout with a
  strong planted signal that keeps early stopping busy for over a thousand trees.

Timed: the split, LightGBM with early stopping, calibration, the refit on training + validation,
the drift reference, both baselines and the test evaluation, with the default config, against one
scan of the same frame (column means). Wall-clock and CPU seconds are both reported, since the
machine may be shared. The table replaces the "## Training" section of docs/performance.md.

    uv run python benchmarks/bench_train.py [--rows 1000000] [--frames school,planted]
                                            [--threads N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs import load_config  # noqa: E402
from models.frames import synthetic_feature_frame  # noqa: E402
from models.split import split_by_time  # noqa: E402
from models.train import evaluate_models, fit_models  # noqa: E402

DOC = REPO / "docs" / "performance.md"
HEADING = "## Training"
TARGET_SECONDS = 180
PROBE_STUDENTS = 3000  # a small frame first, to size the real one to about --rows rows
SCHOOL_SEED = 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def school_frame(students: int, config, folder: Path):
    from features.build import build_feature_frame
    from features.synthetic import write_school

    folder.mkdir(parents=True, exist_ok=True)
    write_school(folder, students, SCHOOL_SEED, config.generator)
    return build_feature_frame(folder, config, temp_dir=folder.parent)


def make_frame(kind: str, rows: int, config, tmp: Path):
    """A frame of about `rows` snapshots, sized by a small probe of the same kind."""
    if kind == "school":
        probe = school_frame(PROBE_STUDENTS, config, tmp / "probe")
        students = max(1, round(PROBE_STUDENTS * rows / len(probe)))
        return school_frame(students, config, tmp / "school"), students
    probe = synthetic_feature_frame(PROBE_STUDENTS, config, seed=1)
    students = max(1, round(PROBE_STUDENTS * rows / len(probe)))
    return synthetic_feature_frame(students, config, seed=1), students


class Clock:
    def __init__(self):
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def run(kind: str, rows: int, config, tmp: Path) -> dict:
    clock = Clock()
    frame, students = make_frame(kind, rows, config, tmp)
    make_s = clock.lap()[0]
    frame.select_dtypes("number").mean()
    scan_s = clock.lap()[0]
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    train, validation, test = split.frames(frame)
    split_s = clock.lap()
    fitted = fit_models(train, validation, config)
    fit_s = clock.lap()
    evaluations = evaluate_models(fitted, test, config)
    evaluate_s = clock.lap()
    return {
        "kind": kind,
        "rows": len(frame),
        "students": students,
        "features": len(fitted.model.feature_names),
        "make_s": make_s,
        "scan_s": scan_s,
        "split": split_s,
        "fit": fit_s,
        "evaluate": evaluate_s,
        "parts": fitted.info["timings"],
        "trees": fitted.info["best_iteration"],
        "calibration": fitted.info["calibration"],
        "counts": {p: split.summary[p]["rows"] for p in ("train", "validation", "test")},
        "pr_auc": {name: ev.metrics["pr_auc"] for name, ev in evaluations.items()},
    }


def table(result: dict) -> list[str]:
    parts = result["parts"]
    scan = result["scan_s"]
    wall_total = result["split"][0] + result["fit"][0] + result["evaluate"][0]
    cpu_total = result["split"][1] + result["fit"][1] + result["evaluate"][1]
    steps = [
        ("split by time", result["split"][0]),
        (f"LightGBM, early stopping ({result['trees']} trees kept)", parts["lightgbm_s"]),
        (f"calibration ({result['calibration']} chosen, cross-fitted)", parts["calibration_s"]),
        ("refit on training + validation", parts.get("refit_s", 0.0)),
        ("drift reference", parts["reference_s"]),
        ("rule baseline", parts["rule_s"]),
        ("logistic-regression baseline", parts["logistic_s"]),
        ("evaluation of model + baselines", result["evaluate"][0]),
    ]
    lines = ["| step | seconds | x one scan |", "|---|---:|---:|"]
    lines += [f"| {name} | {sec:.1f} | {sec / scan:,.0f} |" for name, sec in steps]
    lines += [
        f"| **total (split + fit + evaluate)** | **{wall_total:.1f}** | {wall_total / scan:,.0f} |",
        f"| CPU time of the total | {cpu_total:.1f} | |",
        f"| one scan (column means of the frame) | {scan:.2f} | 1 |",
    ]
    verdict = "met" if wall_total < TARGET_SECONDS else "MISSED"
    pr = result["pr_auc"]
    counts = result["counts"]
    intro = (
        f"**{result['kind']}** frame: {result['rows']:,} snapshot rows ({result['students']:,} "
        f"students, {result['features']} features; train {counts['train']:,} / validation "
        f"{counts['validation']:,} / test {counts['test']:,}); making it took "
        f"{result['make_s']:.0f} s (not counted). Target under {TARGET_SECONDS} s: **{verdict}** "
        f"({wall_total:.0f} s). Test PR-AUC: model {pr['model']:.3f}, logistic "
        f"{pr['logistic']:.3f}, rule {pr['rule']:.3f}."
    )
    return [intro, "", *lines, ""]


def replace_section(text: str, section: str) -> str:
    """Replace (or append) the '## Training' section, leaving every other section alone."""
    if HEADING not in text:
        return text.rstrip() + "\n\n" + section if text.strip() else "# Performance\n\n" + section
    start = text.index(HEADING)
    rest = text[start + len(HEADING) :]
    next_heading = rest.find("\n## ")
    if next_heading < 0:
        return text[:start] + section
    return text[:start] + section + "\n" + rest[next_heading + 1 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--frames", default="school,planted")
    parser.add_argument("--threads", type=int, default=None, help="override model.num_threads")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    overrides = {"model": {"num_threads": args.threads}} if args.threads else None
    config = load_config(overrides=overrides)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for kind in args.frames.split(","):
            results.append(run(kind, args.rows, config, Path(tmp) / kind))
            print(f"{kind}: done", file=sys.stderr)
    load = os.getloadavg()
    lines = [
        HEADING,
        "",
        f"`make bench-train` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{psutil.cpu_count()} logical CPUs, load average {load[0]:.1f} at the end; "
        f"model.num_threads = {config.model.num_threads}; peak resident memory "
        f"{peak_rss_mb():,.0f} MB). Default config: learning rate "
        f"{config.model.params.get('learning_rate')}, early stopping after "
        f"{config.model.early_stopping_rounds} rounds, refit on training + validation "
        f"{'on' if config.model.refit_on_validation else 'off'}.",
        "",
    ]
    for result in results:
        lines += table(result)
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        DOC.write_text(replace_section(text, section), encoding="utf-8")
        print(f"updated {DOC}")


if __name__ == "__main__":
    main()
