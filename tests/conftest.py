"""Shared fixtures: every test runs in its own workspace, nothing touches ./.notalone."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OULAD_DIR = REPO.parent / "shared" / "data" / "oulad"


@pytest.fixture(autouse=True)
def isolated_workspace(tmp_path_factory, monkeypatch):
    """Point NOTALONE_HOME (and so MLflow and Prefect) at a fresh folder for each test."""
    home = tmp_path_factory.mktemp("notalone_home")
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture(scope="session")
def oulad_dir() -> Path:
    if not (OULAD_DIR / "studentInfo.csv").is_file():
        pytest.skip(f"OULAD data not found at {OULAD_DIR} (shared/data is absent on this machine)")
    return OULAD_DIR
