"""`notalone serve` (the weekly flow on its cron schedule) and `notalone ui` (MLflow/Prefect UIs).

Both bind to 127.0.0.1 unless told otherwise: the UIs show student-level lists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

from configs.schema import Config
from features.errors import NotaloneError
from pipelines.commands.common import activate
from pipelines.settings import Workspace

UI_CHOICES = ("mlflow", "prefect")


def demo_source(workspace: Workspace, config: Config) -> Path:
    """Where `notalone demo` generates its synthetic school."""
    return workspace.data / config.demo.folder


def _port_is_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the server will: a port a stopped server left in TIME_WAIT is free to use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def run_serve(source: Path | None, start_server: bool, config: Config) -> None:
    """Serve the weekly flow on `config.schedule.cron` until interrupted (Ctrl-C).

    The Prefect server is PREFECT_API_URL when set; otherwise, with `start_server`, a
    `prefect server start` on 127.0.0.1 in the workspace, stopped again on exit.
    """
    # The runner's terminal and the Prefect UI show each step of each run.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    workspace = activate()
    console = Console(stderr=True)
    source = Path(source) if source is not None else demo_source(workspace, config)
    if not source.is_dir():
        raise NotaloneError(
            f"source folder not found: {source}. Pass --source DIR, or run `notalone demo` "
            "first to create the demo school."
        )
    from pipelines import prefect_store

    with ExitStack() as stack:
        url = os.environ.get(prefect_store.API_URL_ENV)
        if url:
            if not prefect_store.is_healthy(url):
                raise NotaloneError(
                    f"the Prefect server at PREFECT_API_URL={url} does not answer its health "
                    "check; start it or unset PREFECT_API_URL and use --start-server"
                )
            console.print(f"using the Prefect server at {url}")
        elif start_server:
            schedule = config.schedule
            host = prefect_store.LOOPBACK
            port = schedule.server_port
            if not port or not _port_is_free(host, port):
                port = prefect_store.free_port(host)
            console.print(f"starting a Prefect server on {host}:{port} (first start: ~30 s)")
            server = stack.enter_context(
                prefect_store.running_server(
                    workspace, host=host, port=port, timeout=schedule.server_startup_timeout_seconds
                )
            )
            url = server.url
            console.print(f"Prefect UI: {url.removesuffix('/api')}  (log: {server.log_path})")
        else:
            raise NotaloneError(
                "no Prefect server configured: set PREFECT_API_URL to an existing server, "
                "or pass --start-server (`make serve` does) to start one in the workspace"
            )
        from pipelines.flows import serve_weekly

        serve_weekly(source, config, url)


def ui_command(which: str, workspace: Workspace, host: str, port: int | None) -> list[str]:
    """The command line that starts the MLflow or Prefect UI on this workspace."""
    if which == "mlflow":
        command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri"]
        command += [workspace.tracking_uri, "--host", host]
        command += ["--default-artifact-root", workspace.mlflow_artifacts.as_uri()]
    elif which == "prefect":
        from pipelines.prefect_store import server_command

        return server_command(host, port)
    else:
        raise NotaloneError(f"unknown UI {which!r}: choose one of {', '.join(UI_CHOICES)}")
    if port:
        command += ["--port", str(port)]
    return command


def run_ui(which: str, host: str, port: int | None) -> int:
    """Start the MLflow or Prefect UI in the foreground until Ctrl-C; returns its exit code."""
    workspace = activate()
    console = Console(stderr=True)
    which = which.lower()
    if which not in UI_CHOICES:
        raise NotaloneError(f"unknown UI {which!r}: choose one of {', '.join(UI_CHOICES)}")
    if which == "mlflow" and workspace.tracking_uri.startswith(("http://", "https://")):
        console.print(f"MLflow runs on the server {workspace.tracking_uri}: open it there.")
        return 0
    if which == "prefect" and os.environ.get("PREFECT_API_URL"):
        url = os.environ["PREFECT_API_URL"].removesuffix("/").removesuffix("/api")
        console.print(f"Prefect runs on the server {url} (PREFECT_API_URL): open it there.")
        return 0
    command = ui_command(which, workspace, host, port)
    env = {**os.environ, **workspace.environment()}
    console.print(f"starting the {which} UI on {host} (Ctrl-C stops it): {' '.join(command)}")
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
