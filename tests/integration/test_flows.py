"""Prefect flows end to end on a small synthetic school, under one temporary Prefect server.

Checks what the Prefect UI will show: flow runs that completed, recorded their parameters, and
published the artifacts (a table per curator, a markdown summary of the week); and what lands on
disk: the curator lists, the report, the ranking.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.errors import NotaloneError

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _flow_run(flow_run_id: str):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def _artifacts(flow_run_id: str) -> dict[str, object]:
    from pipelines.prefect_store import flow_run_artifacts

    return {a.key: a for a in flow_run_artifacts(flow_run_id)}


@pytest.fixture
def demo_home(demo_workspace, monkeypatch):
    """Run the test in the demo's workspace (its school, champion and outputs)."""
    home, config, summary = demo_workspace
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    return config, summary


def champion_info(config):
    from pipelines import mlflow_store

    return mlflow_store.champion_info(mlflow_store.connect(), config.registry.model_name)


def test_train_flow_registers_a_champion_and_records_the_run(demo_home):
    from pipelines.feature_cache import source_fingerprint

    config, summary = demo_home
    result = summary["train"]
    assert result["version"] == "1" and "champion" in result["aliases"]
    assert set(result["metrics"]) == {"model", "rule", "logistic"}
    run = _flow_run(result["flow_run_id"])
    assert run.state.is_completed()
    assert run.parameters["source"] == summary["source"]
    assert run.parameters["config"]["demo"]["seed"] == config.demo.seed
    assert "training-summary" in _artifacts(str(run.id))
    champion = champion_info(config)
    assert champion.version == "1"
    assert champion.source_fingerprint == source_fingerprint(summary["source"])


def test_score_flow_publishes_a_table_per_curator_and_a_week_summary(demo_home):
    from pipelines.outputs_store import curator_file_names
    from pipelines.prefect_store import artifact_key

    config, summary = demo_home
    scored = summary["score"]
    run = _flow_run(scored["flow_run_id"])
    assert run.state.is_completed()
    assert run.parameters["as_of"] == summary["as_of"]
    ranking = pd.read_parquet(scored["ranking"])
    curators = sorted(ranking["curator_id"].astype(str).unique())
    artifacts = _artifacts(scored["flow_run_id"])
    expected = {artifact_key("curator", c) for c in curators} | {"weekly-summary"}
    assert set(artifacts) == expected
    assert all(a.type == "table" for k, a in artifacts.items() if k.startswith("curator-"))
    markdown = artifacts["weekly-summary"].data
    assert f"Week of {summary['as_of'][:10]}" in markdown
    assert f"{len(ranking):,}" in markdown
    # Each table is that curator's CSV: same students, same order.
    files = curator_file_names(curators)
    for curator in curators:
        table = artifacts[artifact_key("curator", curator)].data
        rows = json.loads(table) if isinstance(table, str) else table
        csv = pd.read_csv(Path(scored["curators_dir"]) / files[curator], dtype=str)
        assert [r["student"] for r in rows] == csv["student"].tolist()
        assert len(rows) <= config.scoring.capacity + config.scoring.winback_capacity
    assert Path(scored["report"]).stat().st_size > 0


def test_weekly_flow_scores_with_a_young_champion_and_reuses_features(demo_home):
    from prefect import get_client

    from pipelines.flows import weekly_flow

    config, summary = demo_home
    state = weekly_flow(
        source=summary["source"], config=config, as_of=summary["as_of"], return_state=True
    )
    assert state.is_completed(), state
    result = state.result()
    assert result["retrained"] is None and result["train"] is None
    assert result["score"]["features_cached"] is True  # the demo built this week already
    assert result["score"]["students"] == summary["score"]["students"]
    assert champion_info(config).version == "1"
    score_run = _flow_run(result["score"]["flow_run_id"])
    weekly_run = _flow_run(str(state.state_details.flow_run_id))
    # A subflow of the weekly run: its parent task belongs to the weekly flow run.
    assert score_run.parent_task_run_id is not None
    with get_client(sync_client=True) as client:
        parent = client.read_task_run(score_run.parent_task_run_id)
    assert parent.flow_run_id == weekly_run.id


def test_build_features_flow_reuses_the_cache_on_a_rerun(demo_home, tmp_path):
    from pipelines.flows import build_features_flow

    _, summary = demo_home
    week = (datetime.fromisoformat(summary["as_of"]) - timedelta(days=7)).isoformat()
    source = summary["source"]
    first = build_features_flow(source=source, as_of=week, out=str(tmp_path / "a.parquet"))
    second = build_features_flow(source=source, as_of=week, out=str(tmp_path / "b.parquet"))
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert first["cache_key"] == second["cache_key"]
    assert first["rows"] == second["rows"] > 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    )


def test_a_user_error_fails_the_flow_without_retries(tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from pipelines.flows import build_features_flow

    state = build_features_flow(
        source=str(tmp_path / "missing"), as_of="2026-01-05", return_state=True
    )
    assert state.is_failed()
    with pytest.raises(NotaloneError, match="source folder not found"):
        state.result()
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    assert [t.run_count for t in task_runs] == [1]  # failed once, not retried


def test_cli_user_error_inside_a_flow_is_one_line_without_traceback(tmp_path, capfd):
    from typer.testing import CliRunner

    from pipelines.cli import app

    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["train", "--source", str(empty)])
    captured = capfd.readouterr()
    assert result.exit_code == 2, result.output
    assert "missing" in result.output or "not found" in result.output
    assert "Traceback" not in result.output + captured.err + captured.out
