"""`notalone demo`: the first run on an empty workspace does the whole weekly job; the second
reuses the school and the champion and still writes the week."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app


def _flow_runs(ids: list[str]):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [client.read_flow_run(i) for i in ids]


def test_first_run_generates_trains_scores_and_records_flow_runs(demo_workspace):
    from pipelines.prefect_store import flow_run_artifacts

    home, config, summary = demo_workspace
    source = Path(summary["source"])
    assert source == home / "data" / config.demo.folder
    assert (summary["school_reused"], summary["trained"]) == (False, True)
    assert summary["students"] == config.demo.students
    assert summary["champion_version"] == summary["train"]["version"] == "1"
    scored = summary["score"]
    week = summary["as_of"][:10]
    assert Path(scored["out"]) == home / "outputs" / week
    assert Path(scored["report"]).stat().st_size > 0
    ranking = pd.read_parquet(scored["ranking"])
    curator_files = list(Path(scored["curators_dir"]).glob("*.csv"))
    assert len(curator_files) == ranking["curator_id"].nunique() > 0
    # The week scored is a week start (Monday 00:00 UTC) with active enrollments.
    as_of = pd.Timestamp(summary["as_of"])
    assert (as_of.weekday(), as_of.hour, as_of.minute) == (config.schedule.week_starts_on, 0, 0)
    assert len(ranking) > 0
    runs = _flow_runs([summary["train"]["flow_run_id"], scored["flow_run_id"]])
    assert [r.state.is_completed() for r in runs] == [True, True]
    assert flow_run_artifacts(scored["flow_run_id"])


def test_second_run_reuses_the_school_and_the_champion(demo_workspace, monkeypatch, tmp_path):
    from pipelines import mlflow_store

    home, config, summary = demo_workspace
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    school_file = Path(summary["source"]) / "school.json"
    generated_at = school_file.stat().st_mtime_ns
    override = tmp_path / "demo.yaml"
    override.write_text(yaml.safe_dump({"demo": config.demo.model_dump()}))

    result = CliRunner().invoke(app, ["demo", "--config", str(override)])

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "reused: trained on this school" in result.output
    assert "notalone ui mlflow" in result.output and "notalone ui prefect" in result.output
    assert school_file.stat().st_mtime_ns == generated_at
    client = mlflow_store.connect()
    versions = client.search_model_versions(f"name = '{config.registry.model_name}'")
    assert [str(v.version) for v in versions] == ["1"]  # no second training
    week = home / "outputs" / summary["as_of"][:10]
    assert (week / "report.html").is_file() and (week / "ranking.parquet").is_file()


@pytest.mark.parametrize("students", [0, -5])
def test_demo_rejects_a_school_without_students(students, tmp_path):
    override = tmp_path / "demo.yaml"
    override.write_text(yaml.safe_dump({"demo": {"students": students}}))
    result = CliRunner().invoke(app, ["demo", "--config", str(override)])
    assert result.exit_code == 2
    assert "demo.students" in result.output
