"""The same week, run as plain steps and as Prefect flows, gives the same outputs: byte-identical
curator CSVs, an equal ranking.parquet, the same training metrics. (Both paths run one step
sequence per stage with a different runner; this is the check that they stay one.)"""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def test_training_by_the_flow_and_by_plain_steps_gives_the_same_metrics(demo_workspace, tmp_path):
    from tests.steps import train_source

    _, config, summary = demo_workspace
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(tmp_path / "plain"))
        plain = train_source(summary["source"], config)
    flow = summary["train"]
    assert plain["metrics"] == flow["metrics"]
    assert plain["split"] == flow["split"] and plain["best_iteration"] == flow["best_iteration"]


def test_scoring_by_the_flow_and_by_plain_steps_gives_identical_outputs(
    trained_workspace, tmp_path
):
    source, as_of = trained_workspace
    day = as_of.date().isoformat()
    outputs = {}
    for name, extra in (("plain", []), ("flow", ["--prefect"])):
        out = tmp_path / name / day
        args = ["score", "--source", str(source), "--as-of", day, "--out", str(out), *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs[name] = out
    plain_files = sorted((outputs["plain"] / "curators").glob("*.csv"))
    flow_files = sorted((outputs["flow"] / "curators").glob("*.csv"))
    assert [p.name for p in plain_files] == [p.name for p in flow_files] and plain_files
    for a, b in zip(plain_files, flow_files, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    pd.testing.assert_frame_equal(
        pd.read_parquet(outputs["plain"] / "ranking.parquet"),
        pd.read_parquet(outputs["flow"] / "ranking.parquet"),
    )
