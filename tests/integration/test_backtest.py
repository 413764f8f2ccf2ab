"""`notalone backtest` replays the weekly lists with the weekly job's own rules: for any week its
list and risks are those `notalone score` gives at that as-of time (scored week after week into
one outputs root, so both see the same previous week); and it measures them against what
happened, writes its table and page, and records a backtest run in MLflow."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from configs import load_config
from features.sources import write_source_variant
from pipelines.cli import app

runner = CliRunner()


def invoke(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def assert_agrees_with_score(source: Path, weeks: list, root: Path, extra: list[str]):
    """Backtest the weeks; score each into one outputs root; the same lists and risks."""
    backtest = invoke(
        [
            "backtest",
            "--source",
            str(source),
            "--from",
            weeks[0].date().isoformat(),
            "--to",
            weeks[-1].date().isoformat(),
            "--every",
            str((weeks[1] - weeks[0]).days) if len(weeks) > 1 else "7",
            "--out",
            str(root / "backtest"),
            "--json",
            *extra,
        ]
    )
    result = json.loads(backtest.stdout[backtest.stdout.index("{") :])
    replay = pd.read_parquet(Path(result["out"]) / "replay.parquet")
    assert len(result["weekly"]) == len(weeks)
    for week in weeks:
        day = week.date().isoformat()
        invoke(["score", "--source", str(source), "--as-of", day, "--out", str(root / day), *extra])
        scored = pd.read_parquet(root / day / "ranking.parquet")
        replayed = replay[replay["as_of"] == pd.Timestamp(week)]
        key = ["student_id", "course_id"]
        scored = scored.sort_values(key).reset_index(drop=True)
        replayed = replayed.sort_values(key).reset_index(drop=True)
        assert scored[key].equals(replayed[key]), day
        np.testing.assert_allclose(scored["risk"], replayed["risk"], rtol=0, atol=1e-12)
        assert scored["listed"].astype(bool).tolist() == replayed["listed"].tolist(), day
        listed = scored["listed"].astype(bool)
        assert scored.loc[listed, "rank"].tolist() == replayed.loc[listed, "rank"].tolist(), day
        assert listed.any()
    return result


def test_backtest_agrees_with_score_week_by_week(trained_workspace, tmp_path):
    source, as_of = trained_workspace
    # Weeks whose horizon lies inside the data: their outcomes are known.
    weeks = [as_of - timedelta(days=d) for d in (49, 42, 35)]
    config = _synthetic(tmp_path)
    result = assert_agrees_with_score(source, weeks, tmp_path, ["--config", str(config)])
    overall = result["overall"]
    assert overall["weeks"] == 3 and overall["list_slots"] > 0
    assert 0.5 < overall["roc_auc"] <= 1
    assert 0 <= overall["already_gone_share_of_slots"] <= 1
    # The champion learned from these weeks of these runs: the pooled figures are in sample, and
    # no row is left that it never saw (the warning says how many rows it learned from).
    assert overall["unseen_rows"] == 0
    assert any("rows are of course runs the model learned from" in w for w in result["warnings"])
    page = Path(result["report"]).read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "How the weekly lists would have done" in page
    from pipelines import mlflow_store

    run = mlflow_store.connect().get_run(result["mlflow_run_id"])
    assert run.data.tags[mlflow_store.KIND_TAG] == mlflow_store.BACKTEST_KIND
    assert run.data.params["every_days"] == "7"
    assert run.data.metrics["list_slots"] == overall["list_slots"]


def _no_holdout(tmp_path: Path, base: Path | None = None) -> Path:
    """A config without the hold-out (the backtest replays the lists themselves; the
    randomised control arm is an experiment on top of them), over `base` when given."""
    import yaml

    data = yaml.safe_load(base.read_text(encoding="utf-8")) if base else {}
    data["experiment"] = {**(data.get("experiment") or {}), "control_share": 0}
    path = tmp_path / "no-holdout.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _synthetic(tmp_path: Path) -> Path:
    from configs.schema import CONFIG_DIR

    return _no_holdout(tmp_path, CONFIG_DIR / "synthetic.yaml")


def test_assumed_contacts_hold_earlier_listed_students_back(trained_workspace, tmp_path):
    source, as_of = trained_workspace
    args = ["backtest", "--source", str(source), "--from"]
    args += [(as_of - timedelta(days=7)).date().isoformat(), "--to", as_of.date().isoformat()]
    plain = invoke([*args, "--out", str(tmp_path / "a"), "--json"])
    assumed = invoke([*args, "--out", str(tmp_path / "b"), "--json", "--assume-contacted"])
    a = pd.read_parquet(tmp_path / "a" / "replay.parquet")
    b = pd.read_parquet(tmp_path / "b" / "replay.parquet")
    first, second = sorted(a["as_of"].unique())
    listed_first = set(
        map(tuple, b[(b["as_of"] == first) & b["listed"]][["student_id", "course_id"]].to_numpy())
    )
    held = b[(b["as_of"] == second) & (b["hold_back"] == "cooldown")]
    held_keys = set(map(tuple, held[["student_id", "course_id"]].to_numpy()))
    assert listed_first & held_keys  # listed last week -> contacted -> cooling down now
    assert (b["hold_back"] == "cooldown").sum() > (a["hold_back"] == "cooldown").sum()
    assert json.loads(plain.stdout[plain.stdout.index("{") :])["assume_contacted"] is False
    assert json.loads(assumed.stdout[assumed.stdout.index("{") :])["assume_contacted"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "10"], "multiple of snapshots.step_days"),
        (["--from", "2030-01-05", "--to", "2030-02-05"], "nothing to replay"),
    ],
)
def test_backtest_refuses_bad_ranges(trained_workspace, args, message):
    source, as_of = trained_workspace
    base = {
        "--from": (as_of - timedelta(days=7)).date().isoformat(),
        "--to": as_of.date().isoformat(),
    }
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    cli = ["backtest", "--source", str(source)] + [x for kv in base.items() for x in kv]
    result = runner.invoke(app, cli)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.fixture(scope="module")
def oulad_aaa(oulad_dir, tmp_path_factory):
    """OULAD module AAA only (two presentations), with a quick champion trained on 2013J."""
    from tests.steps import train_source

    work = tmp_path_factory.mktemp("oulad_aaa")
    full = work / "oulad"
    with pytest.MonkeyPatch.context() as patch:
        home = work / "home"
        patch.setenv("NOTALONE_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        invoke(["ingest", "oulad", "--path", str(oulad_dir), "--out", str(full)])
        aaa = write_source_variant(full, work / "aaa", ["AAA"])
        config = load_config(
            overrides={
                "split": {"method": "course_start", "test_from": "2014-01-01"},
                "model": {"num_boost_round": 60, "early_stopping_rounds": 10},
                "evaluation": {"shap_sample_rows": 200},
            }
        )
        train_source(aaa, config)
    return home, aaa


def test_backtest_agrees_with_score_on_oulad_aaa(oulad_aaa, monkeypatch, tmp_path):
    home, aaa = oulad_aaa
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    start = pd.Timestamp("2014-11-03", tz="UTC")  # Mondays inside AAA 2014J
    weeks = [start, start + timedelta(days=14)]
    config = _no_holdout(tmp_path)
    result = assert_agrees_with_score(aaa, weeks, tmp_path, ["--config", str(config)])
    assert result["overall"]["rows"] > 0
