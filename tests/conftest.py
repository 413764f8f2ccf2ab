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


# --- Prefect and a trained school: flow, demo and schedule tests (issue 6) ---------------------

FLOW_TEST_STUDENTS = 400
FLOW_TEST_SEED = 11


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server and database for every flow test of the session."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect_home")))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory, prefect_harness):
    """`notalone demo` run once on a small school in a fresh workspace: generated, trained by
    the train flow, scored by the score flow. Returns (home, config, summary of the run).

    Tests point NOTALONE_HOME at `home` to use its school (summary["source"]) and champion.
    """
    from configs import load_config
    from pipelines.commands.demo import run_demo

    home = tmp_path_factory.mktemp("demo_home")
    config = load_config(
        overrides={"demo": {"students": FLOW_TEST_STUDENTS, "seed": FLOW_TEST_SEED}}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        summary = run_demo(students=None, config=config)
    return home, config, summary


@pytest.fixture(scope="session")
def trained_school(demo_workspace):
    """(home, source, train result) of the demo workspace: a school and a champion trained on it."""
    home, _, summary = demo_workspace
    return home, Path(summary["source"]), summary["train"]


@pytest.fixture(scope="session")
def trained_week(trained_school):
    """(home, source, as_of) of the trained school: the week at the end of its data."""
    import pandas as pd

    from features.synthetic import read_school_info

    home, source, _ = trained_school
    as_of = pd.Timestamp(read_school_info(source)["data_end"]).to_pydatetime()
    return home, source, as_of


@pytest.fixture()
def trained_workspace(trained_week, monkeypatch):
    """(source, as_of) with NOTALONE_HOME on the trained school's workspace (its champion)."""
    home, source, as_of = trained_week
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return source, as_of


# --- Subprocesses: crash, idempotence and privacy tests (issue 7) --------------------------------


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory) -> dict[str, str]:
    """Environment for `python` subprocesses of the tests: the test's own, with bytecode cached
    in one temporary folder for the session (imports of MLflow/LightGBM take seconds without it;
    nothing is written into the tree) and without MLflow telemetry."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "1"
    return env


pytest_plugins = ["tests.postgres_server"]  # the `postgres_server` fixture (a real PostgreSQL)
