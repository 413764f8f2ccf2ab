"""`notalone generate` end to end: files on disk, summary, atomic replacement, refusals."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from features.contract import REQUIRED_TABLES
from pipelines.cli import app

runner = CliRunner()


def test_generate_writes_a_complete_source(tmp_path):
    out = tmp_path / "school"
    result = runner.invoke(app, ["generate", "--students", "300", "--out", str(out), "--seed", "4"])
    assert result.exit_code == 0, result.output
    for name in REQUIRED_TABLES:
        assert (out / f"{name}.parquet").is_file() or (out / name).is_dir(), name
    assert list((out / "events").glob("part-*.parquet"))
    info = json.loads((out / "school.json").read_text())
    assert info["students"] == 300 and info["seed"] == 4
    events = pd.read_parquet(out / "events")
    assert len(events) == info["events"] > 300 * 50
    assert events.ts.max() < pd.Timestamp(info["data_end"])
    enrollments = pd.read_parquet(out / "enrollments.parquet")
    assert enrollments.student_id.nunique() == 300
    assert "dropouts" in result.output and "events/s" in result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_generate_output_passes_validation(tmp_path):
    out = tmp_path / "school"
    assert runner.invoke(app, ["generate", "--students", "300", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["validate", "--source", str(out)])
    assert result.exit_code == 0, result.output


def test_generate_replaces_an_earlier_school_atomically(tmp_path):
    out = tmp_path / "school"
    runner.invoke(app, ["generate", "--students", "200", "--out", str(out), "--seed", "1"])
    result = runner.invoke(app, ["generate", "--students", "250", "--out", str(out), "--seed", "2"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "school.json").read_text())
    assert (info["students"], info["seed"]) == (250, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["school"]


def test_generate_refuses_to_replace_a_folder_that_is_not_a_school(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["generate", "--students", "50", "--out", str(out)])
    assert result.exit_code == 2
    assert "refusing" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_generate_with_an_invalid_config_exits_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("generator:\n  course_weeks_min: 3\n")
    out = tmp_path / "school"
    result = runner.invoke(
        app, ["generate", "--students", "50", "--out", str(out), "--config", str(config)]
    )
    assert result.exit_code == 2
    assert "course_weeks_min" in result.output
    assert not out.exists()
