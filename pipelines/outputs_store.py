"""The outputs store: one folder per scored week, written atomically, and reading earlier weeks.

Layout (default root `$NOTALONE_HOME/outputs`, one folder per as-of date):

    <root>/<YYYY-MM-DD>/ranking.parquet         every active enrollment, all columns
                        curators/<curator>.csv  one curator's list
                        report.html             self-contained week report
                        summary.json            counts and paths (what `notalone score` printed)

A week folder is built in a temporary folder beside it and renamed into place, so readers see the
old week or the new one, never a mix: a failed or killed run leaves the previous outputs as they
were. The only window is between the two renames that swap an existing folder out and the new one
in; a run that dies there leaves the old folder as `.<date>.old-<pid>`, which the next write (or
`recover_interrupted`) puts back.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from pipelines.locks import pid_alive

RANKING_FILE = "ranking.parquet"
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
CURATORS_DIR = "curators"
WEEK_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
NAME_HASH_CHARS = 10


def week_folder(root: Path, as_of: datetime) -> Path:
    return Path(root) / as_of.date().isoformat()


def earlier_weeks(root: Path, as_of: datetime) -> list[tuple[date, Path]]:
    """Week folders under `root` dated before `as_of`'s date that hold a ranking, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if not (child.is_dir() and WEEK_NAME.match(child.name)):
            continue
        try:
            day = date.fromisoformat(child.name)
        except ValueError:
            continue
        if day < as_of.date() and (child / RANKING_FILE).is_file():
            found.append((day, child))
    return sorted(found, reverse=True)


def read_ranking(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(Path(folder) / RANKING_FILE, columns=columns)


def read_previous_risk(root: Path, as_of: datetime) -> tuple[pd.DataFrame | None, Path | None]:
    """(student_id, course_id, risk) of the most recent earlier scoring, and its folder."""
    weeks = earlier_weeks(root, as_of)
    if not weeks:
        return None, None
    folder = weeks[0][1]
    return read_ranking(folder, ["student_id", "course_id", "risk"]), folder


def read_columns(folder: Path, wanted: list[str]) -> pd.DataFrame:
    """The columns of `wanted` a week's ranking has (an older week may lack some)."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(folder / RANKING_FILE).names)
    return read_ranking(folder, [c for c in wanted if c in present])


def read_trend(root: Path, as_of: datetime, weeks: int, high: float) -> pd.DataFrame:
    """Per earlier week (oldest first, at most `weeks`): active, listed, mean risk and the share
    at or above `high`."""
    rows = []
    for day, folder in earlier_weeks(root, as_of)[:weeks]:
        try:
            prev = read_ranking(folder, ["risk", "listed"])
        except (OSError, ValueError, KeyError):
            continue  # an unreadable old week is left out of the trend, not fatal
        risk = prev["risk"].astype("float64")
        rows.append(
            {
                "week": day.isoformat(),
                "active": len(prev),
                "listed": int(prev["listed"].sum()),
                "mean_risk": float(risk.mean()) if len(risk) else float("nan"),
                "high_share": float((risk >= high).mean()) if len(risk) else float("nan"),
            }
        )
    columns = ["week", "active", "listed", "mean_risk", "high_share"]
    return pd.DataFrame(rows[::-1], columns=columns)


def curator_file_names(curator_ids: list[str]) -> dict[str, str]:
    """A distinct, filesystem-safe CSV name per curator id: the id itself when it is safe, else
    a cleaned id plus a hash of the original. Names that would collide on a case-insensitive
    filesystem also get the hash, so no curator can ever read another curator's file."""
    names = {}
    for cid in curator_ids:
        if SAFE_NAME.match(cid):
            names[cid] = cid
        else:
            cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", cid)[:60].lstrip(".") or "curator"
            names[cid] = f"{cleaned}-{_short_hash(cid)}"
    lowered: dict[str, int] = {}
    for name in names.values():
        lowered[name.lower()] = lowered.get(name.lower(), 0) + 1
    for cid, name in names.items():
        if lowered[name.lower()] > 1:
            names[cid] = f"{name}-{_short_hash(cid)}"
    return {cid: f"{name}.csv" for cid, name in names.items()}


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:NAME_HASH_CHARS]


def _blank(value: object) -> object:
    missing = value is None or value is pd.NA or (isinstance(value, float) and value != value)
    return "" if missing else value


def csv_header(columns: list[str]) -> str:
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(columns)
    return header.getvalue()


def csv_blocks(table: pd.DataFrame, key: str) -> dict[str, str]:
    """CSV text per value of `key` (rows in their given order, `key` not written), each with the
    header. Rows are formatted once (Python's csv module, "\\n" line ends), then sliced."""
    columns = [c for c in table.columns if c != key]
    header = csv_header(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    ends = []
    for row in table[columns].itertuples(index=False, name=None):
        writer.writerow([_blank(v) for v in row])
        ends.append(buffer.tell())
    text = buffer.getvalue()
    keys = table[key].to_numpy(dtype=object)
    blocks: dict[str, str] = {}
    start_row, start_pos = 0, 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start_row]:
            blocks[keys[start_row]] = header + text[start_pos : ends[i - 1]]
            start_row, start_pos = i, ends[i - 1]
    return blocks


def _pid_of(name: str) -> int | None:
    m = re.search(r"\.(?:tmp|old)-(\d+)", name)
    return int(m.group(1)) if m else None


def recover_interrupted(target: Path) -> None:
    """Undo what a run killed mid-swap left: put a swapped-out week back when the new one never
    arrived; remove temporary and swapped-out folders of runs that are no longer alive."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    dead_olds = [p for p in olds if not pid_alive(_pid_of(p.name) or -1)]
    if not target.exists() and dead_olds:
        os.rename(dead_olds[-1], target)
        dead_olds = dead_olds[:-1]
    for path in dead_olds:
        shutil.rmtree(path, ignore_errors=True)
    for path in parent.glob(f".{target.name}.tmp-*"):
        if not pid_alive(_pid_of(path.name) or -1):
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; when the block succeeds, it replaces
    `target`. On any error (or kill) `target` keeps its previous content."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_week(
    target: Path,
    ranking: pd.DataFrame,
    curator_lists: pd.DataFrame,
    curators: list[str],
    report_html: str,
    summary: dict,
    encoding: str = "utf-8",
) -> dict[str, str]:
    """Write a week folder atomically.

    `curator_lists` holds the CSV columns plus `curator_id`, rows in list order; every curator in
    `curators` gets a file (with only the header when nobody is listed for them).
    """
    names = curator_file_names(sorted(curators))
    blocks = csv_blocks(curator_lists, "curator_id")
    header_only = csv_header([c for c in curator_lists.columns if c != "curator_id"])
    with staged_folder(target) as tmp:
        ranking.to_parquet(tmp / RANKING_FILE, index=False)
        folder = tmp / CURATORS_DIR
        folder.mkdir()
        for cid, name in names.items():
            (folder / name).write_bytes(blocks.get(cid, header_only).encode(encoding))
        (tmp / REPORT_FILE).write_text(report_html, encoding="utf-8")
        paths = {
            "out": str(target),
            "ranking": str(target / RANKING_FILE),
            "report": str(target / REPORT_FILE),
            "curators_dir": str(target / CURATORS_DIR),
        }
        (tmp / SUMMARY_FILE).write_text(
            json.dumps({**summary, **paths}, indent=2, default=str, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return paths
