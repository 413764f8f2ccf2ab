"""The workspace: where MLflow, Prefect and the outputs live, and the environment they need.

`NOTALONE_HOME` (default `./.notalone`) holds everything a run writes. Nothing happens at import:
call `Workspace.resolve()` and then `workspace.activate()` at the start of a command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "NOTALONE_HOME"
DEFAULT_HOME = ".notalone"


@dataclass(frozen=True)
class Workspace:
    root: Path
    # The workspace database; None: NOTALONE_DB_URL, else workspace.db in root. A simulation
    # (`notalone simulate-term`) names its own so its arms never mix with the school's.
    db_url: str | None = None

    @classmethod
    def resolve(cls, home: str | Path | None = None) -> Workspace:
        raw = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(Path(raw).expanduser().resolve())

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def secret_file(self) -> Path:
        return self.root / "secret.key"

    @property
    def tracking_uri(self) -> str:
        # An explicit MLFLOW_TRACKING_URI (an existing MLflow server) wins over the workspace file.
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_db}"

    def environment(self) -> dict[str, str]:
        """Environment variables MLflow and Prefect need to stay inside this workspace."""
        env = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
        }
        return env

    def activate(self) -> Workspace:
        """Create the workspace folders and export its environment (keeps user-set values)."""
        for folder in (
            self.root,
            self.prefect_home,
            self.outputs,
            self.cache,
            self.tmp,
            self.locks,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        for key, value in self.environment().items():
            os.environ.setdefault(key, value)
        return self
