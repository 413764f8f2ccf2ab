"""The drift guard end to end on the trained synthetic school: a source whose events were thinned
(a broken activity feed) is scored with a visible warning in the report, the summary, the
terminal and an MLflow scoring run; a week like the training data shows the drift table and no
warning; the score flow records its week too and keeps every step a visible Prefect task."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from configs import load_config
from pipelines.cli import app

runner = CliRunner()
KEEP_ONE_EVENT_IN = 8  # the thinned source keeps one event in eight


@pytest.fixture()
def workspace(trained_workspace):
    """(source, as_of as an ISO date) on the trained school's workspace."""
    source, as_of = trained_workspace
    return source, as_of.date().isoformat()


@pytest.fixture(scope="module")
def thinned(trained_week, tmp_path_factory) -> Path:
    """The school with seven events in eight dropped (deterministically), everything else kept."""
    _, source, _ = trained_week
    target = tmp_path_factory.mktemp("thinned") / "school"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("events"))
    con = duckdb.connect()
    try:
        con.execute(
            f"""
            COPY (SELECT * FROM read_parquet('{source / "events"}/*.parquet')
                  WHERE hash(student_id, ts, event_type) % {KEEP_ONE_EVENT_IN} = 0)
            TO '{target / "events.parquet"}' (FORMAT parquet)
            """
        )
    finally:
        con.close()
    return target


def scoring_runs(as_of: str, source: Path) -> list:
    from pipelines import mlflow_store

    client = mlflow_store.connect()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=(
            f"tags.`{mlflow_store.KIND_TAG}` = '{mlflow_store.SCORING_KIND}' "
            f"and tags.`{mlflow_store.AS_OF_TAG}` = '{as_of}'"
        ),
    )
    return [r for r in runs if r.data.tags.get("source") == str(source)]


def assert_private(run, ranking: pd.DataFrame) -> None:
    """Nothing about a student in the run: no artifacts, no id in any tag or metric."""
    from pipelines import mlflow_store

    client = mlflow_store.connect()
    assert client.list_artifacts(run.info.run_id) == []
    logged = json.dumps(run.data.to_dictionary())
    assert not any(sid in logged for sid in ranking["student_id"].astype(str).unique())


def test_a_thinned_source_is_scored_with_a_visible_drift_warning(workspace, thinned, tmp_path):
    _, as_of = workspace
    out = tmp_path / "outputs" / as_of
    result = runner.invoke(
        app,
        ["score", "--source", str(thinned), "--as-of", as_of, "--out", str(out), "--no-prefect"],
    )
    assert result.exit_code == 0, result.output
    assert "warning: drift:" in " ".join(result.output.split())

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    drift = summary["drift"]
    drifted = {d["name"]: d["psi"] for d in drift["drifted_inputs"]}
    assert drift["has_reference"] and summary["drifted_inputs"] == drift["drifted"] == len(drifted)
    assert drifted and all(psi > drift["threshold"] for psi in drifted.values())
    assert any(w.startswith("drift:") for w in summary["warnings"])

    html = (out / "report.html").read_text(encoding="utf-8")
    box = html.split('id="drift-warning">', 1)[1].split("</div>", 1)[0]
    assert html.index('id="drift-warning"') < html.index("<h2>")  # on top, before the summary
    assert f"PSI above {drift['threshold']:g}" in box
    for name in drifted:
        assert f"<b>{'risk score' if name == 'score' else name}</b>" in box
    assert '<h2 id="drift">' in html

    (run,) = scoring_runs(as_of, thinned)
    assert run.info.run_name == f"score-{as_of}"
    assert run.data.tags["drift_warning"] == "true"
    assert set(run.data.tags["drifted_features"].split(",")) == set(drifted)
    assert run.data.metrics["drift_count"] == len(drifted)
    for name, psi in drifted.items():
        assert run.data.metrics[f"psi_{name}"] == pytest.approx(psi, abs=1e-4)
    assert run.data.metrics["students"] == summary["students"]
    assert run.data.tags["model_version"] and run.data.tags["model_run_id"]
    assert_private(run, pd.read_parquet(out / "ranking.parquet"))


def test_a_week_like_the_training_data_shows_the_check_and_no_warning(workspace, thinned, tmp_path):
    """The champion, given a reference summarised from this very week (so the week is exactly
    like "training"): no warning anywhere. The same model on the thinned week does warn."""
    from models.drift import build_drift_reference
    from pipelines.mlflow_store import load_model
    from pipelines.schedule import parse_as_of
    from pipelines.score_steps import features_step
    from pipelines.settings import Workspace
    from tests.steps import score_week

    source, as_of = workspace
    config = load_config()
    champion = load_model(None)
    workspace = Workspace.resolve().activate()
    frame = features_step(source, config, parse_as_of(as_of), None, workspace, print).frame
    model = copy.copy(champion)
    model.reference = build_drift_reference(
        champion, frame, frame, champion.predict_proba(frame), config
    )

    calm = score_week(
        source, as_of, out=tmp_path / "calm" / as_of, config=config, model=model, record=True
    )
    assert calm["drifted_inputs"] == 0 and calm["warnings"] == []
    assert calm["drift"]["stage_matched"] and calm["drift"]["checked"] >= 2
    html = Path(calm["report"]).read_text(encoding="utf-8")
    assert 'id="drift-warning"' not in html
    assert '<h2 id="drift">' in html and "No drift" in html
    from pipelines import mlflow_store

    run = mlflow_store.connect().get_run(calm["mlflow_run_id"])
    assert run.data.tags[mlflow_store.AS_OF_TAG] == as_of
    assert run.data.tags["drift_warning"] == "false" and run.data.metrics["drift_count"] == 0
    assert "drifted_features" not in run.data.tags
    assert calm["timings"]["drift"] < 1.0 and calm["timings"]["record"] < 1.0

    stormy = score_week(
        thinned, as_of, out=tmp_path / "stormy" / as_of, config=config, model=model, record=False
    )
    assert stormy["drifted_inputs"] > 0 and stormy["mlflow_run_id"] is None
    assert 'id="drift-warning"' in Path(stormy["report"]).read_text(encoding="utf-8")


def test_the_score_flow_records_its_week_and_shows_each_step_as_a_task(demo_workspace):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from pipelines import mlflow_store
    from pipelines.prefect_store import flow_run_artifacts

    home, config, summary = demo_workspace
    scored = summary["score"]
    assert scored["drift"]["has_reference"] and "drifted_inputs" in scored
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        client = mlflow_store.connect()
        run = client.get_run(scored["mlflow_run_id"])
        trained = client.get_run(summary["train"]["run_id"])
    assert run.data.tags[mlflow_store.KIND_TAG] == mlflow_store.SCORING_KIND
    assert run.data.tags[mlflow_store.AS_OF_TAG] == summary["as_of"][:10]
    assert run.info.experiment_id == trained.info.experiment_id  # next to its training run
    assert run.data.tags["drift_warning"] == str(bool(scored["drifted_inputs"])).lower()

    markdown = {a.key: a for a in flow_run_artifacts(scored["flow_run_id"])}["weekly-summary"]
    assert "- drift: " in markdown.data
    with get_client(sync_client=True) as prefect:
        tasks = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[scored["flow_run_id"]]))
        )
    names = {t.name.rsplit("-", 1)[0] for t in tasks}
    assert {"predict", "drift", "rank", "explain", "words", "report", "write", "record"} <= names
    assert all(t.state.is_completed() for t in tasks)
