"""Prefect-specific IO: a local Prefect server process and the artifacts the flows publish.

Import this module only after `Workspace.activate()` so that Prefect reads the workspace's
PREFECT_HOME; importing it starts nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.errors import NotaloneError
from pipelines.settings import Workspace

API_URL_ENV = "PREFECT_API_URL"
LOOPBACK = "127.0.0.1"
ARTIFACT_KEY_RE = re.compile(r"^[a-z0-9-]+$")


class PrefectServerError(NotaloneError):
    """A Prefect server could not be started or reached."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at `url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until_healthy(
    url: str, timeout: float, poll: float, process: subprocess.Popen | None = None
) -> None:
    """Poll the health check until it answers; fail early when the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(url):
            return
        if process is not None and process.poll() is not None:
            raise PrefectServerError(
                f"the Prefect server exited with code {process.returncode} before answering"
            )
        time.sleep(poll)
    raise PrefectServerError(f"the Prefect server at {url} did not answer within {timeout:.0f} s")


def server_command(host: str, port: int | None, ui: bool = True) -> list[str]:
    """`prefect server start` with this interpreter, so the same installation serves.

    `port=None` keeps Prefect's own default port.
    """
    command = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        host,
        "--analytics-off",
    ]
    if port:
        command += ["--port", str(port)]
    if not ui:
        command.append("--no-ui")
    return command


@dataclass
class PrefectServer:
    """A `prefect server start` child process bound to one host and port."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def wait(self, timeout: float, poll: float = 0.5) -> None:
        """Block until the server answers its health check; stop it and fail if it does not."""
        try:
            wait_until_healthy(self.url, timeout, poll, self.process)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, PrefectServerError):
                raise PrefectServerError(f"{exc}; its log: {self.log_path}") from None
            raise

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch_server(
    workspace: Workspace, host: str = LOOPBACK, port: int | None = None, ui: bool = True
) -> PrefectServer:
    """Start `prefect server start` with its database in the workspace; do not wait for it."""
    port = port or free_port(host)
    env = {**os.environ, **workspace.environment(), "PREFECT_HOME": str(workspace.prefect_home)}
    env.pop(API_URL_ENV, None)  # the server itself must not try to reach another server
    workspace.prefect_home.mkdir(parents=True, exist_ok=True)
    log_path = workspace.prefect_home / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(host, port, ui=ui),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return PrefectServer(process, api_url(host, port), log_path)


def start_server(
    workspace: Workspace,
    host: str = LOOPBACK,
    port: int | None = None,
    timeout: float = 120.0,
    poll: float = 0.5,
    ui: bool = True,
) -> PrefectServer:
    """Start a Prefect server in the workspace and wait until it is healthy."""
    server = launch_server(workspace, host=host, port=port, ui=ui)
    server.wait(timeout, poll)
    return server


@contextmanager
def running_server(
    workspace: Workspace,
    host: str = LOOPBACK,
    port: int | None = None,
    timeout: float = 120.0,
    poll: float = 0.5,
    ui: bool = True,
) -> Iterator[PrefectServer]:
    """A Prefect server for the duration of the block, with PREFECT_API_URL pointing at it."""
    server = start_server(workspace, host=host, port=port, timeout=timeout, poll=poll, ui=ui)
    previous = os.environ.get(API_URL_ENV)
    os.environ[API_URL_ENV] = server.url
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop(API_URL_ENV, None)
        else:
            os.environ[API_URL_ENV] = previous
        server.stop()


# --- artifacts -----------------------------------------------------------------------------------


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) naming `parts`.

    When slugging loses information (case, punctuation) a short hash of the original is appended
    so that two different ids ("C_1", "c-1") never share a key.
    """
    raw = "-".join(parts)
    slug = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-") or "x"
    if slug != raw:
        slug = f"{slug}-{hashlib.sha256(raw.encode()).hexdigest()[:6]}"
    return slug


def json_safe_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with NaN/NaT as None and numpy/pandas scalars as plain Python (JSON-ready)."""
    clean: list[dict[str, Any]] = []
    for row in rows:
        out: dict[str, Any] = {}
        for key, value in row.items():
            if hasattr(value, "item") and not isinstance(value, str | bytes):
                try:
                    value = value.item()
                except (ValueError, AttributeError):
                    value = str(value)
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif value is not None and not isinstance(value, str | int | float | bool):
                value = None if str(value) in {"NaT", "nan", "<NA>"} else str(value)
            out[str(key)] = value
        clean.append(out)
    return clean


def publish_table(rows: Sequence[Mapping[str, Any]], key: str, description: str) -> str:
    """A table artifact on the current flow run; returns its key."""
    from prefect.artifacts import create_table_artifact

    _check_key(key)
    create_table_artifact(table=json_safe_rows(rows), key=key, description=description)
    return key


def publish_markdown(markdown: str, key: str, description: str) -> str:
    """A markdown artifact on the current flow run; returns its key."""
    from prefect.artifacts import create_markdown_artifact

    _check_key(key)
    create_markdown_artifact(markdown=markdown, key=key, description=description)
    return key


def _check_key(key: str) -> None:
    if not ARTIFACT_KEY_RE.match(key):
        raise ValueError(f"artifact key {key!r} must hold only lowercase letters, digits, dashes")


def flow_run_artifacts(flow_run_id: str) -> list[Any]:
    """The artifacts a flow run published (for tests and summaries)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def current_flow_run_id() -> str | None:
    """The id of the flow run this code runs in, or None outside a flow."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return str(context.flow_run.id)


# --- the API of this process -------------------------------------------------------------------


def ensure_api() -> str:
    """Reach the Prefect API this process will use and return its URL.

    With PREFECT_API_URL unset, this starts Prefect's temporary local server (database in the
    workspace's PREFECT_HOME) now rather than inside the first flow, so it can be reported.
    """
    from prefect import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
        url = str(client.api_url)
    if problem is not None:
        raise PrefectServerError(f"the Prefect API at {url} is not healthy: {problem}")
    return url


def quiet_console_logs(level: int = logging.CRITICAL) -> Callable[[], None]:
    """Keep Prefect's run logs off this terminal (they still go to the API and the UI).

    For commands that show their own progress: a failed task would otherwise print its
    traceback before the command prints the short error message. Returns a function that puts
    the previous levels back.
    """
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # Prefect configures logging lazily; quiet the handlers it makes
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
    ]
    previous: dict[logging.Handler, int] = {}  # one handler may serve several loggers
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and handler not in previous:
                previous[handler] = handler.level
                handler.setLevel(level)

    def restore() -> None:
        for handler, old_level in previous.items():
            handler.setLevel(old_level)

    return restore
