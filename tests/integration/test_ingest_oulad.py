"""`notalone ingest oulad` end to end: the real OULAD (skips when absent) and a missing folder."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

# Counts of the shared OULAD files (../shared/data/oulad/SOURCE.md) and of this mapping
# (docs/oulad.md): no submission is dropped; BBB-2013J clicks are dropped whole; the other clicks
# become one event per student, site and day (191,702 rows of repeated site-days are merged).
ENROLLMENTS = 32_593
COURSES = 22
ASSIGNMENTS = 206
SUBMISSIONS = 173_912
CLICKS_KEPT = 1_048_575 - 295_011 - 191_702
CLICK_COURSES = {"AAA-2013J", "AAA-2014J", "BBB-2013B"}


@pytest.fixture(scope="module")
def ingested(oulad_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("oulad") / "source"
    result = CliRunner().invoke(
        app, ["ingest", "oulad", "--path", str(oulad_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    tables = {
        name: pd.read_parquet(out / f"{name}.parquet")
        for name in ("courses", "enrollments", "assignments", "events")
    }
    return tables, result.output


def test_counts(ingested):
    tables, output = ingested
    assert len(tables["courses"]) == COURSES
    assert len(tables["enrollments"]) == ENROLLMENTS
    assert len(tables["assignments"]) == ASSIGNMENTS
    events = tables["events"]
    submits = events["event_type"] == "assignment_submit"
    assert submits.sum() == SUBMISSIONS
    assert (~submits).sum() == CLICKS_KEPT
    assert set(events.loc[~submits, "course_id"]) == CLICK_COURSES
    assert "295,011  clicks of partial presentation BBB-2013J" in output
    clicks = events.loc[~submits]
    assert not clicks.duplicated(["student_id", "course_id", "item_id", "ts"]).any()


def test_final_result_absent(ingested):
    tables, _ = ingested
    for name, frame in tables.items():
        assert not any("final_result" in c for c in frame.columns), name
    attrs = [c for c in tables["enrollments"].columns if c.startswith("attr_")]
    assert len(attrs) == 9  # eight studentInfo columns + pre-course clicks


def test_every_event_belongs_to_an_enrollment(ingested):
    tables, _ = ingested
    keys = tables["enrollments"][["student_id", "course_id"]]
    assert not keys.duplicated().any()
    pairs = tables["events"][["student_id", "course_id"]].drop_duplicates()
    joined = pairs.merge(keys, how="left", indicator=True)
    assert (joined["_merge"] == "both").all()


def test_timestamps_follow_the_noon_rule(ingested):
    tables, _ = ingested
    for name, column in [
        ("events", "ts"),
        ("enrollments", "enrolled_at"),
        ("assignments", "due_at"),
    ]:
        values = tables[name][column].dropna()
        assert str(values.dtype).endswith(", UTC]")
        assert (values.dt.hour == 12).all() and (values.dt.minute == 0).all(), name
    assert (tables["enrollments"]["unenrolled_at"].notna()).sum() == 10_072


def test_missing_folder_exits_2_naming_it(tmp_path):
    missing = tmp_path / "no_oulad_here"
    result = CliRunner().invoke(
        app, ["ingest", "oulad", "--path", str(missing), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "no_oulad_here" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
