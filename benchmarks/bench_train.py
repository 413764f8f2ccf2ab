"""Training benchmark: fit the dropout model and both baselines on ~1M snapshot rows.

The feature matrix is generated directly (`models.frames.synthetic_feature_frame`, the agreed
feature-frame layout with a planted signal), so this measures training, not feature building.
Times the split, LightGBM with early stopping, calibration, the drift reference, both baselines
and the test evaluation with the default config (fixed `model.num_threads`), and reports them
against one scan of the same data (a column-wise mean over the frame). The table replaces the
"## Training" section of docs/performance.md.

    uv run python benchmarks/bench_train.py [--rows 1000000] [--threads N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
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
ROWS_PER_STUDENT_PROBE = 4000  # students in the probe used to size the benchmark frame


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build_frame(rows: int, config):
    probe = synthetic_feature_frame(ROWS_PER_STUDENT_PROBE, config, seed=1)
    students = max(1, round(ROWS_PER_STUDENT_PROBE * rows / len(probe)))
    return synthetic_feature_frame(students, config, seed=1), students


def replace_section(text: str, section: str) -> str:
    """Replace (or append) the '## Training' section, leaving every other section alone."""
    if HEADING not in text:
        return text.rstrip() + "\n\n" + section if text.strip() else "# Performance\n\n" + section
    start = text.index(HEADING)
    rest = text[start + len(HEADING) :]
    next_heading = rest.find("\n## ")
    end = start + len(HEADING) + next_heading + 1 if next_heading >= 0 else len(text)
    return text[:start] + section + ("\n" + text[end:] if next_heading >= 0 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=None, help="override model.num_threads")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    overrides = {"model": {"num_threads": args.threads}} if args.threads else None
    config = load_config(overrides=overrides)
    started = time.perf_counter()
    frame, students = build_frame(args.rows, config)
    generate_s = time.perf_counter() - started

    started = time.perf_counter()
    numeric = frame.select_dtypes("number")
    numeric.mean()
    scan_s = time.perf_counter() - started

    times: dict[str, float] = {}
    started = time.perf_counter()
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    train, validation, test = split.frames(frame)
    times["split"] = time.perf_counter() - started
    started = time.perf_counter()
    fitted = fit_models(train, validation, config)
    times["fit (all)"] = time.perf_counter() - started
    started = time.perf_counter()
    evaluations = evaluate_models(fitted, test, config)
    times["evaluate (3 scorers)"] = time.perf_counter() - started
    total = times["split"] + times["fit (all)"] + times["evaluate (3 scorers)"]

    parts = fitted.info["timings"]
    rows = [
        ("split by time", times["split"]),
        (
            f"LightGBM ({fitted.info['best_iteration']} trees kept, early stopping)",
            parts["lightgbm_s"],
        ),
        (
            f"calibration ({fitted.info['calibration']} chosen, cross-fitted)",
            parts["calibration_s"],
        ),
        ("drift reference", parts["reference_s"]),
        ("rule baseline", parts["rule_s"]),
        ("logistic-regression baseline", parts["logistic_s"]),
        ("evaluation of model + baselines", times["evaluate (3 scorers)"]),
        ("**total (split + fit + evaluate)**", total),
    ]
    model = evaluations["model"].metrics
    rule = evaluations["rule"].metrics
    logistic = evaluations["logistic"].metrics
    load = os.getloadavg()
    counts = {part: split.summary[part]["rows"] for part in ("train", "validation", "test")}
    lines = [
        HEADING,
        "",
        f"`make bench-train` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{psutil.cpu_count()} logical CPUs, load average at the end {load[0]:.1f}; "
        f"model.num_threads = {config.model.num_threads}). Synthetic feature frame of "
        f"**{len(frame):,} snapshot rows** ({students:,} enrolments, "
        f"{len(fitted.model.feature_names)} features): train {counts['train']:,} / validation "
        f"{counts['validation']:,} / test {counts['test']:,} rows; "
        f"generating it took {generate_s:.1f} s (not counted).",
        "",
        "| step | seconds | x one scan |",
        "|---|---:|---:|",
        *[f"| {name} | {sec:.1f} | {sec / scan_s:,.0f} |" for name, sec in rows],
        f"| one scan (column means of the frame) | {scan_s:.2f} | 1 |",
        "",
        f"Target: under {TARGET_SECONDS} s on 2 cores -> "
        f"**{'met' if total < TARGET_SECONDS else 'MISSED'}** ({total:.0f} s). "
        f"Peak resident memory {peak_rss_mb():,.0f} MB. Test PR-AUC on the planted signal: "
        f"model {model['pr_auc']:.3f}, logistic {logistic['pr_auc']:.3f}, "
        f"rule {rule['pr_auc']:.3f}.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        DOC.write_text(replace_section(text, section), encoding="utf-8")
        print(f"updated {DOC}")


if __name__ == "__main__":
    main()
