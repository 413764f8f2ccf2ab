"""Killing the scorer (SIGKILL) while it writes leaves the previous outputs of the week intact;
the next run recovers and produces the same lists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.synthetic import read_school_info
from pipelines.cli import app
from pipelines.outputs_store import recover_interrupted

REPO = Path(__file__).resolve().parents[2]

# Runs the scorer in a child process that kills itself at a chosen point of the write: after
# ranking.parquet landed in the temporary folder, or between the two renames of the swap.
CHILD = """
import os, pickle, signal, sys
import pandas as pd
from configs import load_config
from tests.steps import score_week

mode, source, as_of, out, model_file = sys.argv[1:6]
with open(model_file, "rb") as fh:
    model = pickle.load(fh)  # the champion, pickled by the test: no MLflow import in the child

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if mode == "mid_write":
    real_to_parquet = pd.DataFrame.to_parquet
    def to_parquet(self, path, *args, **kwargs):
        real_to_parquet(self, path, *args, **kwargs)
        if ".tmp-" in str(path):
            die()
    pd.DataFrame.to_parquet = to_parquet
elif mode == "mid_swap":
    real_rename = os.rename
    def rename(src, dst):
        real_rename(src, dst)
        if ".old-" in str(dst):
            die()
    os.rename = rename
config = load_config(overrides={"scoring": {"capacity": 3}})  # a finished run would differ
score_week(source, as_of, out=out, config=config, model=model, validate=False)
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def model_file(trained_school, tmp_path_factory):
    import pickle

    from pipelines.mlflow_store import load_model

    home, _, _ = trained_school
    path = tmp_path_factory.mktemp("model") / "champion.pkl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)  # left by earlier tests' workspaces
        path.write_bytes(pickle.dumps(load_model(None)))
    return path


@pytest.fixture()
def week(trained_school, tmp_path, monkeypatch):
    home, source, _ = trained_school
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    as_of = pd.Timestamp(read_school_info(source)["data_end"]).date().isoformat()
    out = tmp_path / "outputs" / as_of
    args = ["score", "--source", str(source), "--as-of", as_of, "--out", str(out), "--no-prefect"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return home, source, as_of, out, args


def kill_child(mode: str, home: Path, source: Path, as_of: str, out: Path, model: Path) -> int:
    env = {**os.environ, "NOTALONE_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(source), as_of, str(out), str(model)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode


def test_killed_while_writing_leaves_the_previous_week_intact(week, model_file):
    home, source, as_of, out, args = week
    before = snapshot(out)
    assert kill_child("mid_write", home, source, as_of, out, model_file) == -signal.SIGKILL
    assert snapshot(out) == before
    result = CliRunner().invoke(app, args)  # the next run cleans up and gives the same lists
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in snapshot(out).items() if k.endswith(".csv")} == {
        k: v for k, v in before.items() if k.endswith(".csv")
    }
    assert sorted(p.name for p in out.parent.iterdir()) == [as_of]


def test_killed_between_the_renames_is_recovered(week, model_file):
    home, source, as_of, out, args = week
    before = snapshot(out)
    assert kill_child("mid_swap", home, source, as_of, out, model_file) == -signal.SIGKILL
    assert not out.exists()  # the one moment a week folder is missing...
    assert any(p.name.startswith(f".{as_of}.old-") for p in out.parent.iterdir())
    recover_interrupted(out)  # ...which the next run (or this call) undoes
    assert snapshot(out) == before
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k.endswith(".csv")} == {
        k: v for k, v in before.items() if k.endswith(".csv")
    }
