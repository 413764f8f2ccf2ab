"""The one contract check: a passing source is remembered by its files' fingerprint, a changed
or failing source is checked again, and errors always refuse the source."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from configs import load_config
from features.validate import ValidationFailed
from pipelines import checks
from pipelines.settings import Workspace
from tests.sources import random_school, write_source


@pytest.fixture()
def workspace(tmp_path):
    return Workspace.resolve(tmp_path / "home").activate()


def counting(monkeypatch):
    calls = []
    real = checks.require_valid

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(checks, "require_valid", spy)
    return calls


def test_a_passing_source_is_validated_once_until_a_file_changes(tmp_path, workspace, monkeypatch):
    source = write_source(tmp_path / "school", random_school(3))
    config = load_config()
    calls = counting(monkeypatch)
    first = checks.check_source(source, config, workspace)
    second = checks.check_source(source, config, workspace)
    assert first == second and len(calls) == 1
    events = source / "events.parquet"
    stat = events.stat()
    os.utime(events, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a rewritten file
    checks.check_source(source, config, workspace)
    assert len(calls) == 2
    other = load_config(overrides={"validation": {"max_days_outside_course": 399}})
    checks.check_source(source, other, workspace)  # another validation config: checked again
    assert len(calls) == 3


def test_a_failing_source_is_refused_every_time(tmp_path, workspace, monkeypatch):
    tables = random_school(4)
    tables["enrollments"].loc[0, "student_id"] = None
    source = write_source(tmp_path / "bad", tables)
    calls = counting(monkeypatch)
    for _ in range(2):
        with pytest.raises(ValidationFailed, match="enrollments"):
            checks.check_source(source, load_config(), workspace)
    assert len(calls) == 2


def test_warnings_are_reported_from_memory_too(tmp_path, workspace):
    tables = random_school(5)
    tables["events"] = pd.concat([tables["events"], tables["events"].iloc[:3]])  # duplicates
    source = write_source(tmp_path / "dupes", tables)
    messages: list[str] = []
    for _ in range(2):
        assert checks.check_source(source, load_config(), workspace, messages.append) is True
    warned = [m for m in messages if m.startswith("warning: ")]
    assert len(warned) == 2 and "validation warning" in warned[0]


def test_a_missing_folder_is_a_clear_error(tmp_path, workspace):
    with pytest.raises(Exception, match="source folder not found"):
        checks.check_source(tmp_path / "nowhere", load_config(), workspace)
