"""`notalone train` killed with SIGKILL at several points of a run leaves the earlier outputs and
the MLflow registry consistent: the champion alias still points to a complete version that loads
and scores, the next `notalone score` works with it (with the old champion: the very same lists),
and the next `notalone train` succeeds.

Each point gets its own workspace that already has a champion (a copy of the demo workspace's
registry) and an earlier week of outputs. A warm "zygote" process imports the heavy libraries
once and forks one `notalone train --no-prefect` per workspace; a child prints a marker when it
reaches a point of the training and waits there, and the test sends it SIGKILL. So each kill
lands at the same place every time, without sleeps, and no run pays the imports again. The kills
run at the same time, then every check and scoring, then every re-run at the same time.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from configs import load_config
from features.synthetic import read_school_info
from pipelines.cli import app

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.slow,
]

REPO = Path(__file__).resolve().parents[2]
MODEL = "notalone-dropout"
EXPERIMENT = "crash-test"  # its artifacts go to the copied workspace, not the shared demo one
WAIT_SECONDS = 240

# (point, where the child stops). Every point lies inside `notalone train --no-prefect`.
POINTS = {
    "features": "the feature frame's temporary file is written in the cache, not yet renamed",
    "fit": "the first LightGBM booster is trained, calibration not yet",
    "logging": "the MLflow run holds params, metrics, tables and plots; the logged model exists, "
    "its files are not uploaded yet",
    "registered": "the new version is registered, without tags of the decision and aliases",
    "challenger": "the new version is tagged and aliased challenger; the champion has not moved",
    "promoted": "the champion alias has moved to the new version",
}

# The warm process: imports once, then forks one child per job read from stdin (several may run
# at once). A child sends markers ("@@ <job> <point>") on the zygote's stdout and blocks at the
# point it was told to stop at; the zygote reports "started <job> <pid>" and "ended <job> <status>".
ZYGOTE = r"""
import json, os, selectors, sys, threading, time
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import lightgbm, mlflow, mlflow.pyfunc, pandas as pd
# The SQL stores are imported on the first connect (seconds): import them once, here.
from mlflow.store.tracking import sqlalchemy_store
from mlflow.store.model_registry import sqlalchemy_store as registry_store
from mlflow.tracking.client import MlflowClient
import features.build, models.train, pipelines.cli, pipelines.mlflow_store as store
import pipelines.train_steps


def say(text, fd=1):
    os.write(fd, (text + "\n").encode())


def install_hooks(job, stop_at, marker_fd):
    def reached(point):
        say(f"@@ {job} {point}", marker_fd)
        if point == stop_at:
            time.sleep(600)  # the test kills this process here

    real_to_parquet = pd.DataFrame.to_parquet
    def to_parquet(self, path, *args, **kwargs):
        result = real_to_parquet(self, path, *args, **kwargs)
        if str(path).endswith(".tmp") and "cache" in Path(str(path)).parts:
            reached("features")
        return result
    pd.DataFrame.to_parquet = to_parquet

    real_train = lightgbm.train
    def train(*args, **kwargs):
        booster = real_train(*args, **kwargs)
        reached("fit")
        return booster
    lightgbm.train = train

    real_upload = MlflowClient.log_model_artifacts
    def log_model_artifacts(self, *args, **kwargs):
        reached("logging")
        return real_upload(self, *args, **kwargs)
    MlflowClient.log_model_artifacts = log_model_artifacts

    real_register = store.register_version
    def register_version(*args, **kwargs):
        version = real_register(*args, **kwargs)
        reached("registered")
        return version
    store.register_version = register_version

    real_alias = store.set_alias
    def set_alias(client, name, alias, version):
        real_alias(client, name, alias, version)
        reached("challenger" if alias == store.CHALLENGER else "promoted")
    store.set_alias = set_alias


def run_job(job):
    marker_fd = os.dup(1)  # the zygote's stdout, before the child's goes to a file
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.update(job["env"])
    install_hooks(job["id"], job["stop_at"], marker_fd)
    code = 0
    try:
        pipelines.cli.app(job["args"], prog_name="notalone", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


os.set_blocking(0, False)
say(f"ready threads={threading.active_count()}")
selector = selectors.DefaultSelector()
selector.register(0, selectors.EVENT_READ)
running, pending, closed = {}, b"", False
while not closed or running:
    if not closed and selector.select(timeout=0.05):
        data = os.read(0, 65536)
        closed = not data
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            job = json.loads(line)
            pid = os.fork()
            if pid == 0:
                run_job(job)
            running[pid] = job["id"]
            say(f"started {job['id']} {pid}")
    elif closed:
        time.sleep(0.05)
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        say(f"ended {running.pop(pid)} {status}")
"""


class Zygote:
    """The warm process and the protocol to run trainings in forks of it."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.pending = b""  # bytes read but not yet split into lines

    def line(self, deadline: float) -> str:
        while b"\n" not in self.pending:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise AssertionError("timed out waiting for the training processes")
            if select.select([self.fd], [], [], timeout)[0]:
                data = os.read(self.fd, 65536)
                if not data:
                    raise AssertionError(f"zygote ended: {self.proc.stderr.read()}")
                self.pending += data
        text, self.pending = self.pending.split(b"\n", 1)
        return text.decode()

    def run(self, jobs: dict[str, dict]) -> dict[str, dict]:
        """Run every job (`notalone <args>` in a fork, at the same time); SIGKILL each one when it
        reaches its `stop_at`. Returns per job: wait status, stdout, stderr."""
        for name, job in jobs.items():
            job = {**job, "id": name}
            self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + WAIT_SECONDS
        pids: dict[str, int] = {}
        stop_now: set[str] = set()  # reached its point (the marker may come before "started")
        results: dict[str, dict] = {}
        try:
            while len(results) < len(jobs):
                kind, name, *rest = self.line(deadline).split()
                if kind == "started":
                    pids[name] = int(rest[0])
                elif kind == "@@" and rest[0] == jobs[name]["stop_at"]:
                    stop_now.add(name)
                elif kind == "ended":
                    results[name] = {
                        "status": int(rest[0]),
                        "stdout": Path(jobs[name]["stdout"]).read_text(errors="replace"),
                        "stderr": Path(jobs[name]["stderr"]).read_text(errors="replace"),
                    }
                for ready in stop_now & pids.keys():
                    os.kill(pids[ready], signal.SIGKILL)
                    stop_now.discard(ready)
        finally:
            for name, pid in pids.items():  # a failed test leaves no training behind
                if name not in results:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        return results


@pytest.fixture(scope="module")
def zygote(subprocess_env):
    proc = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE],
        cwd=REPO,
        env=subprocess_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    warm = Zygote(proc)
    try:
        ready = warm.line(time.monotonic() + WAIT_SECONDS)
        # Forking is only safe from a single-threaded process.
        assert ready == "ready threads=1", ready
        yield warm
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture(scope="module")
def base(trained_school, tmp_path_factory):
    """The demo workspace's registry (a champion), a week scored with it, a training config."""
    demo_home, source, _ = trained_school
    root = tmp_path_factory.mktemp("crash_base")
    home = root / "home"
    home.mkdir()
    for name in ("mlflow.db", "secret.key"):
        if (demo_home / name).is_file():
            shutil.copy2(demo_home / name, home / name)
    config = root / "train.yaml"
    # The new version always beats the champion, so a run does reach the alias move; a smaller
    # model and SHAP sample keep each run short.
    overrides = {
        "evaluation": {"min_improvement": -1.0, "shap_sample_rows": 100},
        "model": {"num_boost_round": 100, "calibration_folds": 2},
    }
    config.write_text(yaml.safe_dump(overrides))
    as_of = pd.Timestamp(read_school_info(source)["data_end"]).date().isoformat()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTALONE_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(app, score_args(source, as_of))
        assert result.exit_code == 0, result.output
        champion = registry(home)["champion"]
    frame = features_at(source, as_of)
    return {
        "home": home,
        "source": source,
        "as_of": as_of,
        "config": config,
        "champion": champion,
        "frame": frame,
    }


def score_args(source: Path, as_of: str) -> list[str]:
    return ["score", "--source", str(source), "--as-of", as_of, "--no-prefect"]


def features_at(source: Path, as_of: str) -> pd.DataFrame:
    from features.build import build_feature_frame

    return build_feature_frame(
        source, load_config(), as_of=pd.Timestamp(as_of, tz="UTC").to_pydatetime()
    ).head(50)


def registry(home: Path) -> dict:
    """Versions (with aliases and tags) and the champion (version, run id) of the workspace."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = {
        str(v.version): client.get_model_version(MODEL, v.version)
        for v in client.search_model_versions(f"name = '{MODEL}'")
    }
    champion = client.get_model_version_by_alias(MODEL, "champion")
    return {
        "client": client,
        "versions": versions,
        "champion": {"version": str(champion.version), "run_id": champion.run_id},
    }


def week_files(home: Path) -> dict[str, bytes]:
    outputs = home / "outputs"
    return {str(p.relative_to(outputs)): p.read_bytes() for p in outputs.rglob("*") if p.is_file()}


def assert_aliases_complete(home: Path, frame: pd.DataFrame) -> dict:
    """Every alias points to a READY version whose promotion is recorded and whose model loads
    and scores; returns the registry."""
    from pipelines.mlflow_store import load_model

    state = registry(home)
    client = state["client"]
    for alias in ("champion", "challenger"):
        version = client.get_model_version_by_alias(MODEL, alias)
        assert version.status == "READY", (alias, version)
        model = load_model(f"models:/{MODEL}@{alias}")
        assert model.metadata["run_id"] == version.run_id
        risk = model.predict_proba(frame)
        assert len(risk) == len(frame) and np.all((risk >= 0) & (risk <= 1))
        run = client.get_run(version.run_id)
        assert run.info.status == "FINISHED", (alias, run.info.status)
        assert run.data.tags.get("registered_version") == str(version.version), alias
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.tags.get("promotion_decision") == "promoted", champion.tags
    return state


def train_args(base: dict) -> list[str]:
    args = ["train", "--source", str(base["source"]), "--no-prefect", "--json"]
    return [*args, "--experiment", EXPERIMENT, "--config", str(base["config"])]


def jobs(base: dict, folder: Path, homes: dict[str, Path], stop: bool) -> dict[str, dict]:
    return {
        point: {
            "args": train_args(base),
            "env": {"NOTALONE_HOME": str(home)},
            "stdout": str(folder / f"{point}.out"),
            "stderr": str(folder / f"{point}.err"),
            "stop_at": point if stop else None,
        }
        for point, home in homes.items()
    }


@pytest.fixture(scope="module")
def killed(base, zygote, tmp_path_factory) -> dict[str, dict]:
    """One workspace per point (a copy of the base), each with a training killed at its point;
    the trainings run at the same time."""
    root = tmp_path_factory.mktemp("killed")
    homes = {point: root / point for point in POINTS}
    for home in homes.values():
        shutil.copytree(base["home"], home)
    before = {point: registry(home) for point, home in homes.items()}
    outputs = {point: week_files(home) for point, home in homes.items()}
    results = zygote.run(jobs(base, root, homes, stop=True))
    return {
        point: {"home": homes[point], "before": before[point], "outputs": outputs[point], **res}
        for point, res in results.items()
    }


@pytest.fixture(scope="module")
def rerun(killed, base, zygote, tmp_path_factory) -> dict[str, dict]:
    """The next `notalone train` in every killed workspace (after the scoring tests ran there),
    all at the same time."""
    root = tmp_path_factory.mktemp("rerun")
    homes = {point: k["home"] for point, k in killed.items()}
    return zygote.run(jobs(base, root, homes, stop=False))


@pytest.mark.parametrize("point", list(POINTS))
def test_killed_training_leaves_registry_and_outputs_consistent(point, killed, base, monkeypatch):
    run = killed[point]
    status = run["status"]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, run["stderr"]
    home = run["home"]
    monkeypatch.setenv("NOTALONE_HOME", str(home))

    state = assert_aliases_complete(home, base["frame"])
    new = sorted(set(state["versions"]) - set(run["before"]["versions"]), key=int)
    if point in ("features", "fit", "logging"):
        assert new == []  # nothing reached the registry
    else:
        assert len(new) == 1
        aliases = {"registered": [], "challenger": ["challenger"]}
        assert sorted(state["versions"][new[0]].aliases) == aliases.get(
            point, ["challenger", "champion"]
        )
    if point == "promoted":
        assert state["champion"]["version"] == new[0]
    else:
        assert state["champion"] == base["champion"]
    assert week_files(home) == run["outputs"]  # training never touches the outputs
    if point == "features":  # the kill leaves a half-written cache file (the next run removes it)
        assert list((home / "cache" / "features").glob(".*.tmp"))

    # The next scoring uses the champion; with the old one it gives the very same lists.
    scored = CliRunner().invoke(app, score_args(base["source"], base["as_of"]))
    assert scored.exit_code == 0, scored.output
    after = week_files(home)
    csvs = sorted(k for k in after if k.endswith(".csv"))
    assert csvs
    if point != "promoted":
        assert {k: after[k] for k in csvs} == {k: run["outputs"][k] for k in csvs}


@pytest.mark.parametrize("point", list(POINTS))
def test_next_training_after_a_kill_succeeds(point, killed, rerun, base, monkeypatch):
    run = rerun[point]
    assert run["status"] == 0, run["stderr"]
    home = killed[point]["home"]
    monkeypatch.setenv("NOTALONE_HOME", str(home))
    result = json.loads(run["stdout"])
    # By the config the new version beats the champion: registered, promoted, complete.
    assert result["promoted"] is True and result["aliases"] == ["challenger", "champion"]
    state = assert_aliases_complete(home, base["frame"])
    assert state["champion"]["version"] == result["version"]
    assert int(result["version"]) == max(int(v) for v in state["versions"])
    expected_new = 2 if point in ("registered", "challenger", "promoted") else 1
    assert len(state["versions"]) == len(killed[point]["before"]["versions"]) + expected_new
    # What the killed run left is cleaned up: its MLflow run no longer shows as running...
    client = state["client"]
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    if point == "logging":  # the run the kill interrupted
        assert any(r.info.status == "KILLED" for r in runs)
    # ...and its half-written feature cache file is gone.
    assert not list((home / "cache" / "features").glob(".*.tmp"))
