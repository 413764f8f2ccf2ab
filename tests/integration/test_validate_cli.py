"""`notalone validate`: exit codes, problems named by table and column, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.unit.test_validate import clean_frames, write_source

runner = CliRunner()


def validate(source) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", "--source", str(source)])
    output = result.output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    return result.exit_code, output


def test_clean_source_exits_zero(tmp_path):
    code, output = validate(write_source(tmp_path / "src", clean_frames()))
    assert code == 0, output
    assert "OK" in output and "events 6" in output


def test_warnings_only_exit_zero_and_are_listed(tmp_path):
    frames = clean_frames()
    frames["courses"]["teacher"] = ["Ann", "Bo"]
    code, output = validate(write_source(tmp_path / "src", frames))
    assert code == 0, output
    assert "unknown_column" in output and "teacher" in output
    assert "1 warning" in output


def test_corrupted_event_column_exits_two_naming_table_and_column(tmp_path):
    frames = clean_frames()
    frames["events"]["value"] = frames["events"]["value"].astype(object)
    frames["events"].loc[1, "value"] = "eighty"
    frames["events"]["value"] = frames["events"]["value"].astype(str)
    code, output = validate(write_source(tmp_path / "src", frames))
    assert code == 2, output
    assert "events" in output and "value" in output and "wrong_type" in output
    assert "eighty" in output  # the example row
    assert "FAILED" in output


def test_renamed_column_exits_two(tmp_path):
    frames = clean_frames()
    frames["enrollments"] = frames["enrollments"].rename(columns={"curator_id": "tutor"})
    code, output = validate(write_source(tmp_path / "src", frames))
    assert code == 2
    assert "enrollments" in output and "curator_id" in output and "missing_column" in output
    assert "tutor" in output


def test_truncated_parquet_exits_two(tmp_path):
    root = write_source(tmp_path / "src", clean_frames())
    data = (root / "events.parquet").read_bytes()
    (root / "events.parquet").write_bytes(data[:100])
    code, output = validate(root)
    assert code == 2
    assert "events" in output and "unreadable" in output


@pytest.mark.parametrize("damage", ["encoding", "delimiter"])
def test_broken_csv_exits_two(tmp_path, damage):
    root = write_source(tmp_path / "src", clean_frames(), "csv")
    path = root / "enrollments.csv"
    if damage == "encoding":
        with open(path, "ab") as fh:
            fh.write("s\xf6,c1,2025-01-06,,k1,,30\n".encode("latin-1"))
    else:
        with open(path, "a") as fh:
            fh.write("s4,c1,2025-01-06,,k1,,30,extra\n")
    code, output = validate(root)
    assert code == 2, output
    assert "enrollments" in output and "unreadable" in output


def test_missing_source_folder_exits_two(tmp_path):
    code, output = validate(tmp_path / "nowhere")
    assert code == 2
    assert "not found" in output
