"""Smoke test: the OULAD walkthrough notebook runs top to bottom on a slice of OULAD."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "oulad_walkthrough.ipynb"
TIMEOUT_SECONDS = 600


def test_oulad_walkthrough_executes(oulad_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from mlflow import MlflowClient

    home = tmp_path / "home"
    home.mkdir()
    # A migrated MLflow database saves the kernel a few seconds of schema migrations.
    template = tmp_path / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
    shutil.copy(template, home / "mlflow.db")
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.setenv("NOTALONE_OULAD_DIR", str(oulad_dir))
    monkeypatch.setenv("NOTALONE_NB_MODULES", "AAA")
    monkeypatch.setenv("NOTALONE_NB_FAST", "1")
    monkeypatch.setenv("NOTALONE_NB_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("NOTALONE_SECRET", "notebook-test")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO)}},
    )
    client.execute()

    outputs = [
        out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    ]
    text = "\n".join(outputs)
    assert "PR-AUC model / rule" in text
    assert (tmp_path / "work" / "compare" / "compare.csv").is_file()
    assert "AAA without clicks" in text
