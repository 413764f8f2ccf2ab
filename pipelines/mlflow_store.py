"""The MLflow store: every read and write of runs, artifacts, models and registry aliases.

The tracking and registry URI come from the workspace (`sqlite:///$NOTALONE_HOME/mlflow.db`, or
MLFLOW_TRACKING_URI), artifacts live under `$NOTALONE_HOME/mlartifacts`. The model is logged as
one pyfunc (a thin wrapper around the pickled `DropoutModel`) that returns calibrated
probabilities; `load_model` hands back the `DropoutModel` itself.

Privacy: student ids are pseudonymised before anything is logged, and attr_* values never reach
an artifact (the input example masks them; segment tables pool small groups).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import pickle
import re
import secrets
import socket
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from features.errors import NotaloneError
from models.linear import LinearDropoutModel
from models.model import ATTR_PREFIX, DropoutModel
from pipelines.settings import Workspace

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_MODEL_NAME = "notalone-dropout"
DEFAULT_MODEL_URI = f"models:/{DEFAULT_MODEL_NAME}@{CHAMPION}"  # = champion_uri(name)
MODEL_ARTIFACT = "model"
KIND_TAG = "notalone.kind"
HOST_TAG = "notalone.host"  # machine and process of a training run: a run left RUNNING by
PID_TAG = "notalone.pid"  # a process that is gone was killed (see close_abandoned_runs)
TRAIN_KIND = "train"
SCORING_KIND = "scoring"
BACKTEST_KIND = "backtest"
AS_OF_TAG = "notalone.as_of"
DRIFT_WARNING_TAG = "drift_warning"
PSI_PREFIX = "psi_"
SECRET_ENV = "NOTALONE_SECRET"
MASKED = "<masked>"
SOURCE_FINGERPRINT_TAG = "notalone.source_fingerprint"  # lets `demo` skip data the champion saw
NO_CHAMPION_MESSAGE = "no champion: run `notalone train --source DIR` first"
# Packages the pickled model needs at load time; pinned to the versions it was trained with.
MODEL_PACKAGES = ("lightgbm", "pandas", "numpy", "scikit-learn", "cloudpickle", "mlflow")


class MlflowStoreError(NotaloneError):
    """A registry or tracking operation the user asked for cannot be done."""


def connect(workspace: Workspace | None = None) -> MlflowClient:
    """Point MLflow at the workspace's tracking/registry URI and return a client."""
    ws = workspace or Workspace.resolve()
    uri = ws.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def workspace_secret(workspace: Workspace) -> bytes:
    """The pseudonymisation key: NOTALONE_SECRET, else a random key kept in the workspace."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env.encode()
    path = workspace.secret_file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key.encode()
        raise MlflowStoreError(
            f"the secret file {path} is empty; delete it to make a new one"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_text(encoding="ascii").strip().encode()


def ensure_experiment(client: MlflowClient, name: str, workspace: Workspace) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    workspace.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    try:
        return client.create_experiment(name, artifact_location=workspace.mlflow_artifacts.as_uri())
    except MlflowException:
        # Created concurrently by another run: use that one.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class DropoutPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc face of a `DropoutModel`: predict returns calibrated P(dropout)."""

    def __init__(self, model: DropoutModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.model.predict_proba(pd.DataFrame(model_input))


def pip_requirements() -> list[str]:
    reqs = []
    for package in MODEL_PACKAGES:
        try:
            reqs.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(package)
    return reqs


def masked_input_example(frame: pd.DataFrame, model: DropoutModel, rows: int) -> pd.DataFrame:
    """A few rows of model inputs, with every attr_* value masked (no ids: inputs only)."""
    example = frame[model.feature_names].head(rows).copy()
    for col in model.feature_names:
        if col.startswith(ATTR_PREFIX):
            if model.feature_types[col] == "category":
                example[col] = pd.Series([MASKED] * len(example), index=example.index, dtype=object)
            else:
                example[col] = np.nan
        elif isinstance(example[col].dtype, pd.CategoricalDtype):
            example[col] = example[col].astype(object)
    return example.reset_index(drop=True)


@dataclass
class RunRecord:
    """Everything one training run logs, prepared by the pipeline."""

    run_name: str
    params: dict[str, Any]
    tags: dict[str, str]
    metrics: dict[str, float]
    step_metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    dicts: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    parquet: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def close_abandoned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark as KILLED the training runs of this machine still RUNNING although their process is
    gone (killed mid-run); otherwise they stay "running" in MLflow forever. Returns their ids."""
    from pipelines.locks import pid_alive

    host = socket.gethostname()
    stale = client.search_runs(
        [experiment_id],
        filter_string=(
            f"attributes.status = 'RUNNING' AND tags.`{KIND_TAG}` = '{TRAIN_KIND}' "
            f"AND tags.`{HOST_TAG}` = '{host}'"
        ),
    )
    closed = []
    for run in stale:
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and not pid_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


def log_training_run(
    client: MlflowClient,
    experiment_id: str,
    record: RunRecord,
    model: DropoutModel,
    input_example: pd.DataFrame,
) -> tuple[str, str]:
    """Log one training run and its model; returns (run_id, model_uri)."""
    close_abandoned_runs(client, experiment_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name=record.run_name) as run:
        run_id = run.info.run_id
        owner = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        mlflow.set_tags({KIND_TAG: TRAIN_KIND, **owner, **record.tags})
        mlflow.log_params({k: _param_value(v) for k, v in record.params.items()})
        mlflow.log_metrics(_finite(record.metrics))
        # One batch for every step of every series (one call per point: ~1 s per run).
        now = int(time.time() * 1000)
        series = [
            Metric(name, float(value), now, int(step))
            for name, points in record.step_metrics.items()
            for step, value in points
            if value is not None and math.isfinite(value)
        ]
        if series:
            client.log_batch(run_id, metrics=series)
        for path, text in record.texts.items():
            mlflow.log_text(text, path)
        for path, obj in record.dicts.items():
            mlflow.log_dict(obj, path)
        for path, table in record.tables.items():
            mlflow.log_text(table.to_csv(index=False), path)
        if record.parquet:
            with tempfile.TemporaryDirectory() as tmp:
                for path, table in record.parquet.items():
                    local = Path(tmp) / Path(path).name
                    table.to_parquet(local, index=False)
                    mlflow.log_artifact(str(local), str(Path(path).parent))
        for path, figure in record.figures.items():
            mlflow.log_figure(figure, path)
        model.metadata["run_id"] = run_id
        output = model.predict_proba(input_example)
        signature = infer_signature(input_example, output)
        with quiet_mlflow():
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=DropoutPyfunc(model),
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements(),
            )
    return run_id, info.model_uri


@contextlib.contextmanager
def quiet_mlflow():
    """Silence MLflow's INFO chatter and its generic pickling/type-hint warnings for a block."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]  # MLflow's limit on a parameter value


def register_version(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: Mapping[str, str]
) -> str:
    """Register `model_uri` as a new version of `name`; returns the version number."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # created concurrently
            client.create_registered_model(name)
    version = client.create_model_version(
        name, source=model_uri, run_id=run_id, tags={k: str(v) for k, v in tags.items()}
    )
    return str(version.version)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_aliases(client: MlflowClient, name: str, version: str) -> list[str]:
    try:
        return sorted(client.get_model_version(name, version).aliases)
    except MlflowException:
        return []


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)


def tag_version(client: MlflowClient, name: str, version: str, tags: Mapping[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def tag_and_log_run(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], tags: Mapping[str, Any]
) -> None:
    for key, value in _finite(metrics).items():
        client.log_metric(run_id, key, value)
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def record_scoring_run(
    run_name: str,
    metrics: Mapping[str, float],
    tags: Mapping[str, Any],
    model_run_id: str | None,
    model_name: str,
    experiment: str,
) -> str:
    """One small run per scored week (tag `notalone.kind=scoring`): metrics and tags only, no
    artifacts. It goes to the experiment of the model's training run, so a product lead sees the
    weeks a model scored next to the run that trained it (`compare` lists training runs only);
    without a known training run, to `experiment`. Returns the run id."""
    workspace = Workspace.resolve()
    client = connect(workspace)
    experiment_id = None
    version = None
    if model_run_id:
        try:
            experiment_id = client.get_run(model_run_id).info.experiment_id
            found = client.search_model_versions(f"run_id = '{model_run_id}'")
            versions = [v.version for v in found if v.name == model_name]
            version = str(versions[0]) if versions else None
        except MlflowException:
            experiment_id = None  # the training run is gone (another store): use the default
    if experiment_id is None:
        experiment_id = ensure_experiment(client, experiment, workspace)
    all_tags = {
        KIND_TAG: SCORING_KIND,
        "model_run_id": model_run_id,
        "model_version": version,
        **tags,
    }
    # MLflow's limit on a tag value is 5000 characters; empty values are left out.
    all_tags = {k: str(v)[:5000] for k, v in all_tags.items() if v not in (None, "")}
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    now = int(run.info.start_time)
    client.log_batch(
        run_id,
        metrics=[Metric(metric_name(k), v, now, 0) for k, v in _finite(metrics).items()],
        tags=[],
    )
    client.set_terminated(run_id)
    return run_id


def metric_name(name: str) -> str:
    """`name` with the characters MLflow refuses in a metric name replaced by "_" (a source's
    own attr_* column names may hold any)."""
    return re.sub(r"[^\w\-. :/]", "_", name)


def check_version(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise MlflowStoreError(
            f"model {name!r} has no version {version!r}; see `notalone compare`"
        ) from None


def _registered_version(client: MlflowClient, uri: str):
    """The registry version behind `models:/NAME@ALIAS` or `models:/NAME/VERSION`, or None."""
    match = re.fullmatch(r"models:/([^@/]+)(?:@([^/]+)|/(\d+))", uri)
    if match is None:
        return None
    name, alias, number = match.groups()
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, number)
    except MlflowException:
        return None


def load_model(model_uri: str | None = None) -> DropoutModel:
    """Load a logged model as a `DropoutModel` (default: the champion of notalone-dropout).

    A registered version is kept unpickled in the workspace (`cache/models/`), keyed by the
    registry, the version and its run: MLflow's own loading costs seconds on every command, and
    a version's files never change (moving an alias changes the version, so the key).
    """
    uri = model_uri or DEFAULT_MODEL_URI
    workspace = Workspace.resolve()
    client = connect(workspace)
    version = _registered_version(client, uri)
    cached = None
    if version is not None:
        key = hashlib.sha256(
            f"{workspace.tracking_uri}|{version.name}|{version.version}|{version.run_id}|"
            f"{version.creation_timestamp}".encode()
        ).hexdigest()[:32]
        cached = workspace.cache / "models" / f"{key}.pkl"
        if cached.is_file():
            with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError):
                model = pickle.loads(cached.read_bytes())
                if isinstance(model, DropoutModel | LinearDropoutModel):
                    return model
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        if uri.endswith(f"@{CHAMPION}"):
            raise MlflowStoreError(NO_CHAMPION_MESSAGE) from None
        raise MlflowStoreError(f"cannot load model {uri}: {exc.message}") from None
    model = loaded.unwrap_python_model().model
    if not isinstance(model, DropoutModel | LinearDropoutModel):
        raise MlflowStoreError(f"{uri} is not a notalone dropout model")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(pickle.dumps(model))
            tmp.replace(cached)
        finally:
            tmp.unlink(missing_ok=True)
    return model


def model_version_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def recent_training_runs(client: MlflowClient, experiment: str, last: int) -> list:
    """The `last` most recent training runs of an experiment, newest first."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise MlflowStoreError(
            f"no experiment {experiment!r} yet: run `notalone train --source DIR` first"
        )
    return list(
        client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{KIND_TAG}` = '{TRAIN_KIND}'",
            order_by=["attributes.start_time DESC"],
            max_results=last,
        )
    )


def champion_uri(model_name: str) -> str:
    """The registry URI of the champion of `model_name` (what scoring uses by default)."""
    return f"models:/{model_name}@{CHAMPION}"


@dataclass(frozen=True)
class ChampionInfo:
    """The registered champion: version, registration time, run and the source it learnt from."""

    version: str
    registered_at: datetime
    run_id: str | None
    source: str | None
    source_fingerprint: str | None


def champion_info(client: MlflowClient, model_name: str) -> ChampionInfo | None:
    """The champion of `model_name`, or None when there is none yet."""
    version = alias_version(client, model_name, CHAMPION)
    if version is None:
        return None
    model_version = client.get_model_version(model_name, version)
    tags = client.get_run(model_version.run_id).data.tags if model_version.run_id else {}
    return ChampionInfo(
        version=version,
        registered_at=datetime.fromtimestamp(model_version.creation_timestamp / 1000, UTC),
        run_id=model_version.run_id,
        source=tags.get("source"),
        source_fingerprint=tags.get(SOURCE_FINGERPRINT_TAG),
    )


def record_backtest_run(
    *,
    run_name: str,
    experiment: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    weekly: Mapping[str, list[tuple[int, float]]],
    texts: Mapping[str, str],
) -> str:
    """One run per backtest (tag `notalone.kind=backtest`): its settings as params, the overall
    metrics, each weekly metric as a series over the weeks, and the tables and page as artifacts,
    so product leads compare backtests in MLflow as they compare training runs."""
    workspace = Workspace.resolve()
    client = connect(workspace)
    experiment_id = ensure_experiment(client, experiment, workspace)
    with quiet_mlflow():
        run = client.create_run(experiment_id, run_name=run_name, tags={KIND_TAG: BACKTEST_KIND})
    run_id = run.info.run_id
    now = int(run.info.start_time)
    series = [
        Metric(metric_name(f"weekly_{name}"), value, now, step)
        for name, points in weekly.items()
        for step, value in points
        if value is not None and math.isfinite(value)
    ]
    client.log_batch(
        run_id,
        metrics=[Metric(metric_name(k), v, now, 0) for k, v in _finite(metrics).items()] + series,
        params=[mlflow.entities.Param(k, _param_value(v)) for k, v in params.items()],
    )
    for path, text in texts.items():
        client.log_text(run_id, text, path)
    client.set_terminated(run_id)
    return run_id
