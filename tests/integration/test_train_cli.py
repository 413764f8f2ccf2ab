"""`notalone train / compare / promote` end to end on a small synthetic school.

Two trainings share one workspace: the first becomes champion, the second (a deliberately weak
config) stays challenger. A migrated MLflow database is made once and copied in (a fresh one
spends seconds on migrations).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from configs import load_config
from pipelines.cli import app

STUDENTS = 1500
FAST = {
    "model": {
        "num_threads": 1,
        "num_boost_round": 200,
        "early_stopping_rounds": 20,
        "calibration_folds": 3,
    },
    "evaluation": {"shap_sample_rows": 300, "min_segment_size": 20},
}
WORSE = {**FAST, "model": {**FAST["model"], "num_boost_round": 1, "params": {"num_leaves": 2}}}


def _env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.setenv("PREFECT_HOME", str(home / "prefect"))
    monkeypatch.setenv("NOTALONE_SECRET", "test-secret")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="module")
def school(tmp_path_factory) -> Path:
    from features.synthetic import write_school

    folder = tmp_path_factory.mktemp("school")
    write_school(folder, STUDENTS, 0, load_config().generator)
    return folder


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, school, mlflow_template):
    """Two trainings in one workspace: a normal config, then a much worse one."""
    home = tmp_path_factory.mktemp("train_home")
    shutil.copy(mlflow_template, home / "mlflow.db")
    configs = {}
    for name, overrides in (("fast", FAST), ("worse", WORSE)):
        path = home.parent / f"{home.name}-{name}.yaml"
        path.write_text(yaml.safe_dump(overrides))
        configs[name] = path
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, home)
        base = ["train", "--source", str(school), "--json", "--no-prefect", "--config"]
        first = json.loads(_invoke([*base, str(configs["fast"])]).stdout)
        second = json.loads(_invoke([*base, str(configs["worse"])]).stdout)
    return {"home": home, "first": first, "second": second}


def test_train_prints_run_version_alias_and_metrics(trained):
    first = trained["first"]
    assert len(first["run_id"]) == 32
    assert first["version"] == "1"
    assert first["aliases"] == ["challenger", "champion"]
    assert first["promotion"]["reason"] == "no champion yet"
    for scorer in ("model", "rule", "logistic"):
        metrics = first["metrics"][scorer]
        for key in ("roc_auc", "pr_auc", "brier", "log_loss", "precision_top10", "lift_top10"):
            assert key in metrics
        assert metrics["rows"] == first["split"]["test"]["rows"]
    assert first["metrics"]["model"]["roc_auc"] > 0.6


def test_worse_config_does_not_take_champion(trained, monkeypatch):
    from mlflow import MlflowClient

    first, second = trained["first"], trained["second"]
    assert second["version"] == "2"
    assert second["aliases"] == ["challenger"]
    assert second["promoted"] is False
    assert second["promotion"]["champion_version"] == "1"
    assert second["promotion"]["challenger"] < second["promotion"]["champion"]
    # The champion was refit on every labelled row, test rows included: it is compared by its own
    # held-out value on this same test window (recorded to 6 decimals at its registration).
    champion_value = second["promotion"]["champion"]
    assert champion_value == pytest.approx(first["metrics"]["model"]["pr_auc"], abs=1e-6)
    _env(monkeypatch, trained["home"])
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("notalone-dropout", "champion").version) == "1"
    tags = client.get_model_version("notalone-dropout", "2").tags
    assert tags["promotion_decision"] == "kept_champion"
    run = client.get_run(second["run_id"])
    assert run.data.metrics["champion_pr_auc_same_test"] == pytest.approx(
        second["promotion"]["champion"]
    )


def test_run_logs_config_fingerprint_plots_and_no_raw_ids(trained, school, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    _env(monkeypatch, trained["home"])
    run_id = trained["first"]["run_id"]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["model.seed"] == "42"
    assert run.data.tags["test_window"]
    for key in ("model_pr_auc", "rule_pr_auc", "logistic_pr_auc", "model_precision_capacity"):
        assert key in run.data.metrics
    listed = {a.path for a in client.list_artifacts(run_id, "plots")}
    for plot in ("roc", "pr", "calibration", "lift", "feature_importance", "shap_summary"):
        assert f"plots/{plot}.png" in listed
    local = Path(download_artifacts(run_id=run_id, artifact_path="", dst_path=None))
    fingerprint = json.loads((local / "data" / "fingerprint.json").read_text())
    assert fingerprint["rows"] > 0 and fingerprint["files"]
    assert all(len(f["sha256"]) == 64 for f in fingerprint["files"])
    assert yaml.safe_load((local / "config" / "config.yaml").read_text())["split"]["method"]

    enrollments = pd.read_parquet(school / "enrollments.parquet")
    raw_ids = set(enrollments["student_id"].astype(str))
    contrib = pd.read_parquet(local / "explanations" / "contributions_sample.parquet")
    assert not set(contrib["student"]) & raw_ids
    assert not [c for c in contrib.columns if c.startswith("attr_")]
    segments = pd.read_csv(local / "evaluation" / "segments.csv")
    attr_values = set()
    for col in (c for c in enrollments.columns if c.startswith("attr_")):
        attr_values |= set(enrollments[col].dropna().astype(str))
    attr_rows = segments[segments["segment"].str.startswith("attr_")]
    assert len(attr_rows) and not set(attr_rows["value"].astype(str)) & attr_values

    model_dir = Path(download_artifacts(trained["first"]["model_uri"]))
    example = (model_dir / "input_example.json").read_text()
    assert not any(student in example for student in list(raw_ids)[:200])
    example_frame = pd.read_json(io.StringIO(example), orient="split")
    for col in (c for c in example_frame.columns if c.startswith("attr_")):
        assert not set(example_frame[col].dropna().astype(str)) & attr_values


def test_load_model_returns_the_champion(trained, school, monkeypatch):
    from pipelines.mlflow_store import load_model

    _env(monkeypatch, trained["home"])
    model = load_model()
    assert model.metadata["run_id"] == trained["first"]["run_id"]
    assert model.feature_names and model.reference["features"]
    challenger = load_model("models:/notalone-dropout@challenger")
    assert challenger.metadata["run_id"] == trained["second"]["run_id"]


def test_compare_writes_csv_and_markdown(trained, tmp_path, monkeypatch):
    _env(monkeypatch, trained["home"])
    out = tmp_path / "cmp"
    result = _invoke(["compare", "--out", str(out)])
    assert "recent training runs" in result.stdout
    table = pd.read_csv(out / "compare.csv", dtype={"version": str})
    assert table["version"].tolist() == ["2", "1"]  # newest first
    assert table.loc[table["version"] == "1", "champion"].tolist() == ["*"]
    assert {"model_pr_auc", "rule_pr_auc", "logistic_pr_auc", "test_window"} <= set(table.columns)
    markdown = (out / "compare.md").read_text()
    assert markdown.count("\n| ") >= 3 and "model_pr_auc" in markdown


def test_promote_moves_champion_and_records_who_and_why(trained, monkeypatch, tmp_path):
    from mlflow import MlflowClient

    home = tmp_path / "promote_home"
    shutil.copytree(trained["home"], home)
    _env(monkeypatch, home)
    _invoke(["promote", "2", "--reason", "spot check", "--by", "alice"])
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("notalone-dropout", "champion").version) == "2"
    tags = client.get_model_version("notalone-dropout", "2").tags
    assert tags["promoted_by"] == "alice" and tags["promoted_reason"] == "spot check"
    assert tags["promoted_from_version"] == "1"
    assert client.get_model_version("notalone-dropout", "1").tags["demoted_by"] == "alice"
    bad = CliRunner().invoke(app, ["promote", "99"])
    assert bad.exit_code == 2 and "no version '99'" in bad.stderr


def test_no_champion_is_a_clear_error(mlflow_template, isolated_workspace, monkeypatch):
    from features.errors import NotaloneError
    from pipelines.mlflow_store import load_model

    shutil.copy(mlflow_template, isolated_workspace / "mlflow.db")
    _env(monkeypatch, isolated_workspace)
    with pytest.raises(NotaloneError, match="no champion: run `notalone train"):
        load_model()


def test_source_variant_keeps_only_what_the_experiment_asks(school, tmp_path):
    from features.sources import read_table, write_source_variant

    courses = read_table(school, "courses")
    first = str(courses["course_id"].iloc[0])
    out = write_source_variant(
        school, tmp_path / "variant", [first], ["assignment_submit"], ["attr_region"]
    )
    assert read_table(out, "courses")["course_id"].tolist() == [first]
    events = read_table(out, "events")
    assert set(events["event_type"]) == {"assignment_submit"}
    assert set(events["course_id"]) == {first}
    enrollments = read_table(out, "enrollments")
    assert "attr_region" not in enrollments.columns and "attr_age_band" in enrollments.columns
    from features.errors import NotaloneError

    with pytest.raises(NotaloneError, match="no course run"):
        write_source_variant(school, tmp_path / "none", ["ZZZ"])


def test_a_source_that_fails_validation_is_not_trained_on(
    school, mlflow_template, tmp_path, monkeypatch
):
    source = tmp_path / "broken"
    shutil.copytree(school, source)
    enrollments = pd.read_parquet(source / "enrollments.parquet")
    enrollments.loc[enrollments.index[:3], "student_id"] = None  # null keys break the contract
    enrollments.to_parquet(source / "enrollments.parquet", index=False)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    _env(monkeypatch, home)

    result = CliRunner().invoke(app, ["train", "--source", str(source), "--no-prefect"])
    assert result.exit_code == 2, result.output
    assert "fails the contract check" in result.stderr
    assert "enrollments.student_id" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    assert client.search_registered_models() == []  # nothing was trained or registered
