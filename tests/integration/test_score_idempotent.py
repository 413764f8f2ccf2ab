"""Re-running the same week gives the same lists: same seed, same data, same champion ->
byte-identical curator CSVs and the same ranking, in separate processes (different hash seeds)
and when a week is scored again into the default output folder (whose "change" column compares
with the previous *week*, never with an earlier run of the same week)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.synthetic import read_school_info
from pipelines.cli import app

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def week(trained_school) -> dict:
    """The demo school, its champion's workspace and the latest week with the one before it."""
    home, source, _ = trained_school
    end = pd.Timestamp(read_school_info(source)["data_end"])
    return {
        "demo_home": home,
        "source": source,
        "as_of": end.date().isoformat(),
        "previous": (end - pd.Timedelta(days=7)).date().isoformat(),
    }


def workspace_with_champion(week: dict, home: Path) -> Path:
    """A fresh workspace whose registry is a copy of the demo's (the scorer records its runs
    there, so runs that may overlap never share one SQLite file)."""
    home.mkdir(parents=True)
    for name in ("mlflow.db", "secret.key"):
        if (week["demo_home"] / name).is_file():
            shutil.copy2(week["demo_home"] / name, home / name)
    return home


def score_args(week: dict, as_of: str, out: Path | None = None) -> list[str]:
    args = ["score", "--source", str(week["source"]), "--as-of", as_of, "--no-prefect"]
    return args if out is None else [*args, "--out", str(out)]


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted((folder / "curators").glob("*"))
        if p.is_file()
    }


def test_separate_processes_write_byte_identical_lists(week, tmp_path, subprocess_env):
    procs, outs = [], []
    for seed in ("1", "2"):  # different hash seeds, run at the same time
        home = workspace_with_champion(week, tmp_path / f"home{seed}")
        out = tmp_path / f"run{seed}" / week["as_of"]
        outs.append(out)
        env = {**subprocess_env, "NOTALONE_HOME": str(home), "PYTHONHASHSEED": seed}
        command = [sys.executable, "-m", "pipelines.cli", *score_args(week, week["as_of"], out)]
        procs.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_SECONDS)
        assert proc.returncode == 0, stdout + stderr

    first, second = (files(out) for out in outs)
    assert len(first) >= 2 and sum(b.count(b"\n") - 1 for b in first.values()) > 0
    assert first == second
    ranking = [pd.read_parquet(out / "ranking.parquet") for out in outs]
    pd.testing.assert_frame_equal(ranking[0], ranking[1])
    assert ranking[0]["listed"].any()


def test_rescoring_a_week_in_the_default_folder_gives_the_same_lists(week, tmp_path, monkeypatch):
    home = workspace_with_champion(week, tmp_path / "home")
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    outputs = home / "outputs"
    for as_of in (week["previous"], week["as_of"]):
        result = CliRunner().invoke(app, score_args(week, as_of))
        assert result.exit_code == 0, result.output
    folder = outputs / week["as_of"]
    first_files = files(folder)
    first = pd.read_parquet(folder / "ranking.parquet")

    result = CliRunner().invoke(app, score_args(week, week["as_of"]))
    assert result.exit_code == 0, result.output
    assert files(folder) == first_files
    again = pd.read_parquet(folder / "ranking.parquet")
    pd.testing.assert_frame_equal(first, again)

    # "change" compares with the previous week (not with the first run of this week).
    summary = json.loads((folder / "summary.json").read_text())
    assert Path(summary["previous"]).name == week["previous"]
    before = pd.read_parquet(outputs / week["previous"] / "ranking.parquet")
    merged = again.merge(
        before[["student_id", "course_id", "risk"]],
        on=["student_id", "course_id"],
        suffixes=("", "_week_before"),
    )
    assert len(merged) > 0
    pd.testing.assert_series_equal(
        merged["previous_risk"], merged["risk_week_before"], check_names=False
    )
    assert (merged["change"] - (merged["risk"] - merged["risk_week_before"])).abs().max() < 1e-9
    assert merged["change"].abs().max() > 0  # a real comparison, not one with itself
