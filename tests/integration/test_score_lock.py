"""Two scorers of the same week never interleave: the second waits for the lock, then stops."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from typer.testing import CliRunner

from features.synthetic import read_school_info
from pipelines.cli import app
from pipelines.locks import LockBusy, workspace_lock
from pipelines.settings import Workspace


def test_second_holder_stops_with_a_clear_message(tmp_path):
    with (
        workspace_lock(tmp_path, "week", wait_seconds=0),
        pytest.raises(LockBusy, match="another run is writing week"),
        workspace_lock(tmp_path, "week", wait_seconds=0.6),
    ):
        pass


def test_second_holder_waits_for_the_first(tmp_path):
    order: list[str] = []

    def first() -> None:
        with workspace_lock(tmp_path, "week", wait_seconds=0):
            order.append("first in")
            time.sleep(1.0)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.2)
    with workspace_lock(tmp_path, "week", wait_seconds=10):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]


def test_score_command_refuses_while_another_scorer_holds_the_week(tmp_path, trained_school):
    home, source, _ = trained_school
    as_of = read_school_info(source)["data_end"][:10]
    out = tmp_path / "week"
    ws = Workspace.resolve(home)
    name = "score-" + hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    config = tmp_path / "wait.yaml"
    config.write_text("scoring:\n  lock_wait_seconds: 0\n")
    with workspace_lock(ws.locks, name, wait_seconds=0):
        result = CliRunner().invoke(
            app,
            ["score", "--source", str(source), "--as-of", as_of, "--out", str(out)]
            + ["--config", str(config), "--no-prefect"],
            env={"NOTALONE_HOME": str(home)},
        )
    assert result.exit_code == 2, result.output
    assert "another run is writing" in result.output
    assert not out.exists()
