"""Pseudonymous ids and masked attributes in everything headed for MLflow."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from configs import load_config
from models.frames import synthetic_feature_frame
from models.privacy import pseudonymise
from models.split import split_by_time
from models.train import fit_models
from pipelines.mlflow_store import MASKED, masked_input_example, workspace_secret
from pipelines.settings import Workspace


def test_pseudonyms_are_stable_keyed_and_not_the_ids():
    ids = pd.Series(["s1", "s2", "s1", None], index=[10, 11, 12, 13])
    first = pseudonymise(ids, "secret-a")
    assert first.index.tolist() == [10, 11, 12, 13]
    assert first[10] == first[12] != first[11]
    assert pd.isna(first[13])
    assert not set(first.dropna()) & {"s1", "s2"}
    assert all("s1" not in token for token in first.dropna())
    other = pseudonymise(ids, b"secret-b")
    assert other[10] != first[10]


def test_pseudonymise_needs_a_secret():
    with pytest.raises(ValueError, match="secret"):
        pseudonymise(["s1"], "")


def test_workspace_secret_is_created_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTALONE_SECRET", raising=False)
    ws = Workspace.resolve(tmp_path / "home")
    key = workspace_secret(ws)
    assert len(key) >= 32
    assert stat.S_IMODE(os.stat(ws.secret_file).st_mode) == 0o600
    assert workspace_secret(ws) == key
    monkeypatch.setenv("NOTALONE_SECRET", "from-env")
    assert workspace_secret(ws) == b"from-env"


def test_input_example_masks_attributes_and_holds_no_ids():
    config = load_config(
        overrides={"model": {"num_threads": 1, "num_boost_round": 20, "early_stopping_rounds": 5}}
    )
    frame = synthetic_feature_frame(500, config, seed=5)
    split = split_by_time(frame, config.split, config.snapshots.horizon_days)
    train, validation, test = split.frames(frame)
    model = fit_models(train, validation, config).model
    example = masked_input_example(test, model, rows=5)
    assert list(example.columns) == model.feature_names
    assert "student_id" not in example.columns and len(example) == 5
    assert (example["attr_age_band"] == MASKED).all()
    assert example["attr_prior_courses"].isna().all()
    assert np.isfinite(model.predict_proba(example)).all()
