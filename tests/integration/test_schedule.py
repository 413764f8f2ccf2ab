"""The schedule path: `notalone serve` against a real Prefect server, and the `ui`/`serve` guards.

The end-to-end test starts `prefect server start` on a free loopback port (database in tmp),
serves the weekly flow with `notalone serve` in a subprocess, triggers the deployment with
`run_deployment` and checks that the run completed and wrote the curator lists and the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from configs import load_config
from pipelines.cli import app
from pipelines.commands.serve import ui_command
from pipelines.settings import Workspace

runner = CliRunner()
SCHEDULE_STUDENTS = 400
SERVER_TIMEOUT_S = 120
RUN_TIMEOUT_S = 150


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_serve_without_a_server_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    source = tmp_path / "school"
    source.mkdir()
    code, output = invoke("serve", "--source", str(source))
    assert code == 2
    assert "PREFECT_API_URL" in output and "--start-server" in output


def test_serve_without_a_source_points_at_the_demo(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    code, output = invoke("serve")
    assert code == 2
    assert "notalone demo" in output


def test_serve_with_an_unreachable_server_fails_clearly(tmp_path, monkeypatch):
    from pipelines.prefect_store import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    source = tmp_path / "school"
    source.mkdir()
    code, output = invoke("serve", "--source", str(source))
    assert code == 2
    assert "does not answer" in output


@pytest.mark.parametrize("which", ["mlflow", "prefect"])
def test_ui_binds_to_loopback_in_the_workspace(which):
    workspace = Workspace.resolve()
    command = ui_command(which, workspace, "127.0.0.1", None)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    if which == "mlflow":
        assert command[command.index("--backend-store-uri") + 1] == workspace.tracking_uri
        assert str(workspace.root) in workspace.tracking_uri
    else:
        assert command[1:5] == ["-m", "prefect", "server", "start"]
        assert "--port" not in command


def test_ui_port_is_passed_through():
    command = ui_command("mlflow", Workspace.resolve(), "127.0.0.1", 5055)
    assert command[command.index("--port") + 1] == "5055"


def test_ui_rejects_an_unknown_name():
    code, output = invoke("ui", "tensorboard")
    assert code == 2
    assert "mlflow" in output and "prefect" in output


def test_ui_prefect_with_a_configured_server_points_there(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://10.0.0.5:4200/api")
    code, output = invoke("ui", "prefect")
    assert code == 0
    assert "http://10.0.0.5:4200" in output


def test_schedule_config_rejects_an_unknown_time_zone():
    from configs.schema import ConfigError

    with pytest.raises(ConfigError, match="Mars/Olympus"):
        load_config(overrides={"schedule": {"timezone": "Mars/Olympus"}})


def _wait_for_deployment(name: str, timeout: float, serve: subprocess.Popen, log: Path):
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert serve.poll() is None, f"notalone serve exited:\n{log.read_text()[-3000:]}"
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(0.5)
    raise AssertionError(f"deployment {name} did not appear:\n{log.read_text()[-3000:]}")


def test_weekly_deployment_runs_on_a_real_prefect_server(demo_workspace, tmp_path):
    """`notalone serve` registers the cron deployment; a triggered run completes and writes."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.prefect_store import launch_server, wait_until_healthy
    from pipelines.schedule import latest_week

    home, _, summary = demo_workspace
    source = Path(summary["source"])
    config = load_config()
    server_ws = Workspace(tmp_path / "server")
    server = launch_server(server_ws, ui=False)
    serve_log = tmp_path / "serve.log"
    serve = None
    try:
        wait_until_healthy(server.url, SERVER_TIMEOUT_S, 0.5, server.process)
        env = {
            **os.environ,
            "NOTALONE_HOME": str(home),
            "PREFECT_API_URL": server.url,
            "PREFECT_HOME": str(server_ws.prefect_home),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        notalone = str(Path(sys.executable).with_name("notalone"))
        with serve_log.open("wb") as log:
            serve = subprocess.Popen(
                [notalone, "serve", "--source", str(source)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        name = f"weekly/{config.schedule.deployment_name}"
        with temporary_settings({PREFECT_API_URL: server.url}):
            deployment = _wait_for_deployment(name, SERVER_TIMEOUT_S, serve, serve_log)
            week = latest_week(source, config)
            run = run_deployment(
                name, parameters={"as_of": week.date().isoformat()}, timeout=RUN_TIMEOUT_S
            )
        assert run.state is not None and run.state.is_completed(), (
            f"{run.state}\n{serve_log.read_text()[-4000:]}"
        )
        (schedule,) = deployment.schedules
        assert schedule.schedule.cron == config.schedule.cron
        assert schedule.schedule.timezone == config.schedule.timezone
        assert run.parameters["source"] == str(source.resolve())
        week_dir = home / "outputs" / week.date().isoformat()
        assert (week_dir / "report.html").stat().st_size > 0
        assert (week_dir / "ranking.parquet").is_file()
        assert list((week_dir / "curators").glob("*.csv"))
    finally:
        if serve is not None and serve.poll() is None:
            serve.terminate()
            try:
                serve.wait(timeout=20)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        server.stop()
