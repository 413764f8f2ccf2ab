"""The outputs store: atomic week folders, recovery after a kill, safe curator file names, CSV."""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, datetime

import pandas as pd
import pytest

from pipelines.outputs_store import (
    csv_blocks,
    curator_file_names,
    earlier_weeks,
    read_trend,
    recover_interrupted,
    staged_folder,
)

DEAD_PID = 999_999_999  # above any pid_max: never a live process


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_staged_folder_replaces_the_target_only_on_success(tmp_path):
    target = tmp_path / "2026-03-02"
    write(target, "a.txt", "old")
    with pytest.raises(RuntimeError), staged_folder(target) as tmp:
        write(tmp, "a.txt", "new")
        raise RuntimeError("killed halfway")
    assert (target / "a.txt").read_text() == "old"
    with staged_folder(target) as tmp:
        write(tmp, "a.txt", "new")
    assert (target / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-03-02"]


def test_a_week_swapped_out_by_a_killed_run_is_put_back(tmp_path):
    target = tmp_path / "2026-03-02"
    write(tmp_path / f".2026-03-02.old-{DEAD_PID}", "a.txt", "previous")
    write(tmp_path / f".2026-03-02.tmp-{DEAD_PID}-xyz", "a.txt", "half written")
    recover_interrupted(target)
    assert (target / "a.txt").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-03-02"]


def test_leftovers_of_a_live_run_are_not_touched(tmp_path):
    target = tmp_path / "2026-03-02"
    write(target, "a.txt", "current")
    live = tmp_path / f".2026-03-02.tmp-{os.getpid()}-abc"
    write(live, "a.txt", "in progress")
    recover_interrupted(target)
    assert live.exists() and (target / "a.txt").read_text() == "current"


def test_earlier_weeks_and_trend_read_only_dated_folders_before_t(tmp_path):
    for day, risks in (
        ("2026-02-16", [0.1, 0.5]),
        ("2026-02-23", [0.2, 0.4]),
        ("2026-03-02", [0.9, 0.9]),
    ):
        (tmp_path / day).mkdir()
        pd.DataFrame({"risk": risks, "listed": [True, False]}).to_parquet(
            tmp_path / day / "ranking.parquet"
        )
    (tmp_path / "notes").mkdir()
    (tmp_path / ".2026-02-27.tmp-1-x").mkdir()
    t = datetime(2026, 3, 2, tzinfo=UTC)
    assert [d.isoformat() for d, _ in earlier_weeks(tmp_path, t)] == ["2026-02-23", "2026-02-16"]
    trend = read_trend(tmp_path, t, weeks=8, high=0.45)
    assert trend["week"].tolist() == ["2026-02-16", "2026-02-23"]
    assert trend["mean_risk"].tolist() == pytest.approx([0.3, 0.3])
    assert trend["high_share"].tolist() == [0.5, 0.0]


@pytest.mark.parametrize(
    "ids",
    [["cur-1", "cur 1", "cur/1", "../cur-1"], ["Anna", "anna"], [".hidden", "ok"], ["à-é", "a-e"]],
)
def test_curator_file_names_are_safe_and_distinct(ids):
    names = curator_file_names(ids)
    files = list(names.values())
    assert len({f.lower() for f in files}) == len(ids)
    for name in files:
        assert "/" not in name and not name.startswith(".") and name.endswith(".csv")


def test_csv_blocks_split_rows_by_curator_and_quote_text():
    table = pd.DataFrame(
        {
            "curator_id": ["a", "a", "b"],
            "rank": ["1", "2", "1"],
            "message": ['Hi, "you"', "line one\nline two", "plain"],
        }
    )
    blocks = csv_blocks(table, "curator_id")
    assert set(blocks) == {"a", "b"}
    rows = list(csv.reader(io.StringIO(blocks["a"])))
    assert rows == [["rank", "message"], ["1", 'Hi, "you"'], ["2", "line one\nline two"]]
    assert blocks["b"] == "rank,message\n1,plain\n"
