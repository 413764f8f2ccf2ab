"""OULAD mapping on tiny hand-made OULAD-like files (same format: quoted fields, CRLF, gzip)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
import yaml

from configs.schema import DEFAULT_CONFIG, Config, OuladConfig
from features.contract import EVENT_TYPES
from features.oulad import (
    PRE_COURSE_ATTR,
    OuladError,
    assign_curators,
    day_to_timestamp,
    oulad_to_contract,
    presentation_start,
    read_oulad,
)
from features.sources import read_source_info
from pipelines.commands.ingest import run_ingest_oulad

UTC = "UTC"

TINY = {
    "courses.csv": [
        ("code_module", "code_presentation", "module_presentation_length"),
        ("AAA", "2013J", 268),
        ("AAA", "2014B", 240),
        ("BBB", "2013J", 268),
    ],
    "assessments.csv": [
        ("code_module", "code_presentation", "id_assessment", "assessment_type", "date", "weight"),
        ("AAA", "2013J", 1, "TMA", 19, 10),
        ("AAA", "2013J", 2, "Exam", "", 100),
        ("AAA", "2014B", 3, "TMA", 20, 50),
        ("BBB", "2013J", 4, "CMA", 30, 0),
    ],
    "vle.csv": [
        ("id_site", "code_module", "code_presentation", "activity_type", "week_from", "week_to"),
        (10, "AAA", "2013J", "homepage", "", ""),
        (11, "AAA", "2013J", "quiz", "", ""),
        (12, "AAA", "2013J", "forumng", "", ""),
        (13, "AAA", "2013J", "oucontent", "", ""),
        (20, "BBB", "2013J", "homepage", "", ""),
    ],
    "studentInfo.csv": [
        (
            "code_module",
            "code_presentation",
            "id_student",
            "gender",
            "region",
            "highest_education",
            "imd_band",
            "age_band",
            "num_of_prev_attempts",
            "studied_credits",
            "disability",
            "final_result",
        ),
        (
            "AAA",
            "2013J",
            1,
            "M",
            "Scotland",
            "HE Qualification",
            "90-100%",
            "55<=",
            0,
            60,
            "N",
            "Pass",
        ),
        ("AAA", "2013J", 2, "F", "Wales", "A Level", "10-20", "0-35", 1, 120, "Y", "Withdrawn"),
        ("AAA", "2013J", 3, "F", "Wales", "A Level", "", "35-55", 0, 60, "N", "Distinction"),
        ("AAA", "2014B", 4, "M", "Ireland", "A Level", "20-30%", "0-35", 0, 30, "N", "Fail"),
        ("BBB", "2013J", 5, "M", "Ireland", "A Level", "20-30%", "0-35", 0, 30, "N", "Withdrawn"),
    ],
    "studentRegistration.csv": [
        (
            "code_module",
            "code_presentation",
            "id_student",
            "date_registration",
            "date_unregistration",
        ),
        ("AAA", "2013J", 1, -10, ""),
        ("AAA", "2013J", 2, "", -5),
        ("AAA", "2013J", 3, "", ""),
        ("AAA", "2014B", 4, -3, 50),
        ("BBB", "2013J", 5, 0, 40),
    ],
    "studentAssessment.csv.gz": [
        ("id_assessment", "id_student", "date_submitted", "is_banked", "score"),
        (1, 1, 18, 0, 78),
        (2, 1, 268, 0, ""),
        (1, 4, 18, 0, 50),  # student 4 is not registered on AAA 2013J: dropped
        (3, 4, -1, 1, 90),  # banked
        (4, 5, 29, 0, 100),
    ],
    "studentVle_partial_first6rows.csv.gz": [
        ("code_module", "code_presentation", "id_student", "id_site", "date", "sum_click"),
        ("AAA", "2013J", 1, 13, -2, 4),
        ("AAA", "2013J", 1, 10, 0, 3),
        ("AAA", "2013J", 1, 11, 1, 2),
        ("AAA", "2013J", 1, 12, 2, 7),
        ("AAA", "2013J", 1, 12, 2, 5),  # same student, site and day: merged with the row above
        ("BBB", "2013J", 5, 20, 3, 1),
    ],
    "derived/vle_pre_course_features.csv": [
        (
            "code_module",
            "code_presentation",
            "id_student",
            "pre_course_clicks",
            "pre_course_interaction_rows",
        ),
        ("AAA", "2013J", 1, 4, 1),
    ],
}


def write_tiny_oulad(folder: Path, skip: tuple[str, ...] = ()) -> Path:
    """Write the tiny OULAD in the official format (every field quoted, CRLF; some gzip)."""
    for name, rows in TINY.items():
        if name in skip:
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(rows[1:], columns=rows[0])
        frame.to_csv(path, index=False, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    return folder


def yaml_oulad_section() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))["oulad"]


@pytest.fixture
def config() -> OuladConfig:
    """The `oulad:` section of default.yaml (read alone: other sections are not under test)."""
    return OuladConfig.model_validate(yaml_oulad_section())


@pytest.fixture
def tiny(tmp_path, config):
    return oulad_to_contract(read_oulad(write_tiny_oulad(tmp_path / "oulad"), config), config)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("2013B", "2013-02-01"),
        ("2014B", "2014-02-01"),
        ("2013J", "2013-10-01"),
        ("2014J", "2014-10-01"),
    ],
)
def test_presentation_start_b_february_j_october(code, expected, config):
    assert presentation_start(code, config) == ts(expected)


@pytest.mark.parametrize("code", ["2013X", "13J", "J2013", ""])
def test_presentation_start_rejects_unknown_codes(code, config):
    with pytest.raises(OuladError, match="presentation code"):
        presentation_start(code, config)


@pytest.mark.parametrize("day", [-30, -1, 0, 1, 132, 268])
def test_day_lies_strictly_between_its_midnight_and_the_next(day, config):
    start = pd.Series([ts("2013-10-01")])
    got = day_to_timestamp(start, pd.Series([day]), config).iloc[0]
    midnight = ts("2013-10-01") + pd.Timedelta(days=day)
    assert midnight < got < midnight + pd.Timedelta(days=1)
    assert got == midnight + pd.Timedelta(hours=config.event_hour_utc)


def test_missing_day_stays_null(config):
    start = pd.Series([ts("2013-10-01")] * 2)
    got = day_to_timestamp(start, pd.Series([5, None], dtype="Int64"), config)
    assert got.isna().tolist() == [False, True]
    assert str(got.dtype) == "datetime64[us, UTC]"


def test_courses_ids_dates_and_titles(tiny):
    courses = tiny.courses.set_index("course_id")
    assert list(courses.index) == ["AAA-2013J", "AAA-2014B", "BBB-2013J"]
    assert courses.loc["AAA-2013J", "start_at"] == ts("2013-10-01")
    assert courses.loc["AAA-2013J", "end_at"] == ts("2013-10-01") + pd.Timedelta(days=268)
    assert courses.loc["AAA-2014B", "start_at"] == ts("2014-02-01")
    assert courses.loc["AAA-2014B", "end_at"] == ts("2014-02-01") + pd.Timedelta(days=240)
    assert courses.loc["BBB-2013J", "title"] == "BBB 2013J"


@pytest.mark.parametrize(
    ("n", "expected_sizes"),
    [(1, [1]), (100, [100]), (101, [51, 50]), (250, [84, 83, 83]), (1000, [100] * 10)],
)
def test_curator_groups_near_equal(n, expected_sizes):
    ids = pd.Series(range(n)) * 7 + 3
    groups = assign_curators(pd.Series(["AAA-2013J"] * n), ids, group_size=100)
    sizes = groups.value_counts().sort_index()
    assert sorted(sizes.tolist(), reverse=True) == expected_sizes
    assert sizes.index[0] == "AAA-2013J-c01"


def test_curator_groups_are_deterministic_and_follow_student_id():
    n = 330
    ids = pd.Series(range(1000, 1000 + n))
    courses = pd.Series(["A-2013J"] * n)
    groups = assign_curators(courses, ids, group_size=100)
    shuffled = ids.sample(frac=1, random_state=3)
    again = assign_curators(courses.loc[shuffled.index], shuffled, group_size=100)
    assert (again.reindex(groups.index) == groups).all()
    # sorted by id: the lowest ids share the first group, the highest the last
    assert groups.iloc[0] == "A-2013J-c01" and groups.iloc[-1] == "A-2013J-c04"
    assert groups.is_monotonic_increasing


def test_curator_groups_are_per_course():
    groups = assign_curators(pd.Series(["A-1", "B-1", "A-1"]), pd.Series([5, 5, 9]), 100)
    assert groups.tolist() == ["A-1-c01", "B-1-c01", "A-1-c01"]


def test_final_result_never_enters_the_contract(tiny):
    leaked = {"Pass", "Withdrawn", "Distinction", "Fail"}
    for name, frame in tiny.tables().items():
        assert not any("final_result" in c for c in frame.columns), name
        for column in frame.columns:
            if frame[column].dtype == "str":
                assert not leaked & set(frame[column].dropna()), (name, column)


def test_enrollments_attributes_and_dates(tiny, config):
    e = tiny.enrollments.set_index(["student_id", "course_id"])
    assert len(e) == 5
    expected_attrs = {
        "attr_gender",
        "attr_region",
        "attr_highest_education",
        "attr_imd_band",
        "attr_age_band",
        "attr_num_of_prev_attempts",
        "attr_studied_credits",
        "attr_disability",
        PRE_COURSE_ATTR,
    }
    assert {c for c in e.columns if c.startswith("attr_")} == expected_attrs
    noon = pd.Timedelta(hours=config.event_hour_utc)
    start = ts("2013-10-01")
    assert e.loc[("1", "AAA-2013J"), "enrolled_at"] == start - pd.Timedelta(days=10) + noon
    assert pd.isna(e.loc[("1", "AAA-2013J"), "unenrolled_at"])
    # no registration date: the unregistration day when it is before day 0 ...
    assert e.loc[("2", "AAA-2013J"), "enrolled_at"] == start - pd.Timedelta(days=5) + noon
    assert e.loc[("2", "AAA-2013J"), "unenrolled_at"] == start - pd.Timedelta(days=5) + noon
    # ... otherwise day 0
    assert e.loc[("3", "AAA-2013J"), "enrolled_at"] == start + noon
    assert (
        e.loc[("4", "AAA-2014B"), "unenrolled_at"]
        == ts("2014-02-01") + pd.Timedelta(days=50) + noon
    )
    assert e.loc[("2", "AAA-2013J"), "attr_imd_band"] == "10-20"
    assert pd.isna(e.loc[("3", "AAA-2013J"), "attr_imd_band"])
    assert e.loc[("2", "AAA-2013J"), "attr_studied_credits"] == 120
    assert e["mentor_id"].isna().all()
    assert (e["curator_id"] == e.index.get_level_values("course_id") + "-c01").all()
    # pre-course clicks: joined where listed, 0 where the file has no row
    assert e.loc[("1", "AAA-2013J"), PRE_COURSE_ATTR] == 4
    assert e.loc[("3", "AAA-2013J"), PRE_COURSE_ATTR] == 0


def test_contract_types(tiny):
    for name, frame in tiny.tables().items():
        for column in frame.columns:
            if column.endswith("_id"):
                assert frame[column].dtype == "str", (name, column)
            if column.endswith("_at") or column == "ts":
                assert str(frame[column].dtype) == "datetime64[us, UTC]", (name, column)


def test_assignments_undated_exam_due_on_last_day(tiny, config):
    a = tiny.assignments.set_index("assignment_id")
    noon = pd.Timedelta(hours=config.event_hour_utc)
    assert a.loc["1", "due_at"] == ts("2013-10-01") + pd.Timedelta(days=19) + noon
    assert a.loc["2", "due_at"] == ts("2013-10-01") + pd.Timedelta(days=268) + noon
    assert a.loc["2", "weight"] == 100.0
    assert tiny.notes["assessments without a date (due on the last day, day = length)"] == 1


def test_submissions_scores_banked_and_unregistered(tiny):
    sub = tiny.events[tiny.events["event_type"] == "assignment_submit"]
    assert len(sub) == 4  # 5 rows, one of a student not registered in that presentation
    assert tiny.dropped["submissions of a student not registered in that presentation"] == 1
    by_key = sub.set_index(["student_id", "item_id"])
    assert by_key.loc[("1", "1"), "value"] == 78.0
    assert pd.isna(by_key.loc[("1", "2"), "value"])  # no score stays null
    assert by_key.loc[("4", "3"), "ts"] == ts("2014-02-01") - pd.Timedelta(hours=12)


def test_banked_results_can_be_dropped(tmp_path, config):
    no_banked = config.model_copy(update={"keep_banked": False})
    contract = oulad_to_contract(read_oulad(write_tiny_oulad(tmp_path), no_banked), no_banked)
    assert (contract.events["item_id"] != "3").all()
    assert contract.dropped["banked results (oulad.keep_banked = false)"] == 1


def test_clicks_mapped_through_activity_map(tiny):
    clicks = tiny.events[tiny.events["event_type"] != "assignment_submit"]
    got = clicks.set_index("item_id")[["event_type", "value"]]
    assert got.loc["10"].tolist() == ["login", 3.0]
    assert got.loc["13"].tolist() == ["lesson_view", 4.0]
    assert got.loc["12"].tolist() == ["activity", 12.0]  # 7 + 5 clicks of the same site-day
    assert got.loc["11", "event_type"] == "quiz_attempt"
    assert pd.isna(got.loc["11", "value"])  # a click count is not a score
    assert set(clicks["event_type"]) <= set(EVENT_TYPES)


def test_same_day_clicks_merge_is_configurable(tmp_path, config, tiny):
    key = "click rows merged into one event per student, site and day (clicks summed)"
    assert tiny.notes[key] == 1
    per_row = config.model_copy(update={"merge_same_day_clicks": False})
    contract = oulad_to_contract(read_oulad(write_tiny_oulad(tmp_path), per_row), per_row)
    site = contract.events[contract.events["item_id"] == "12"]
    assert sorted(site["value"]) == [5.0, 7.0]
    assert key not in contract.notes


def test_partial_presentation_clicks_dropped(tiny):
    assert (
        tiny.events.query("event_type != 'assignment_submit'")["course_id"] == "AAA-2013J"
    ).all()
    assert tiny.click_courses == ("AAA-2013J",)
    key = "clicks of partial presentation BBB-2013J (oulad.partial_click_presentations)"
    assert tiny.dropped[key] == 1
    # its submissions stay
    assert ((tiny.events["course_id"] == "BBB-2013J") & (tiny.events["item_id"] == "4")).sum() == 1


def test_partial_list_is_configurable(tmp_path, config):
    keep_all = config.model_copy(update={"partial_click_presentations": ()})
    contract = oulad_to_contract(read_oulad(write_tiny_oulad(tmp_path), keep_all), keep_all)
    assert contract.click_courses == ("AAA-2013J", "BBB-2013J")
    assert not any("clicks" in reason for reason in contract.dropped)


def test_every_event_belongs_to_an_enrollment(tiny):
    keys = set(zip(tiny.enrollments["student_id"], tiny.enrollments["course_id"], strict=True))
    assert set(zip(tiny.events["student_id"], tiny.events["course_id"], strict=True)) <= keys


def test_unmapped_activity_type_is_named(tmp_path, config):
    partial_map = {k: v for k, v in config.activity_map.items() if k != "forumng"}
    cfg = config.model_copy(update={"activity_map": partial_map})
    with pytest.raises(OuladError, match="forumng"):
        oulad_to_contract(read_oulad(write_tiny_oulad(tmp_path), cfg), cfg)


def test_activity_map_to_unknown_event_type_is_rejected(tmp_path, config):
    cfg = config.model_copy(update={"activity_map": {**config.activity_map, "quiz": "exam"}})
    with pytest.raises(OuladError, match="quiz -> exam"):
        oulad_to_contract(read_oulad(write_tiny_oulad(tmp_path), cfg), cfg)


@pytest.mark.parametrize(
    ("skip", "named"),
    [
        ("studentInfo.csv", "studentInfo"),
        ("courses.csv", "courses"),
        ("studentAssessment.csv.gz", "studentAssessment"),
        ("studentVle_partial_first6rows.csv.gz", "studentVle"),
    ],
)
def test_missing_file_is_named(tmp_path, config, skip, named):
    with pytest.raises(OuladError, match=f"missing: {named}"):
        read_oulad(write_tiny_oulad(tmp_path, skip=(skip,)), config)


def test_missing_folder(tmp_path, config):
    with pytest.raises(OuladError, match="folder not found"):
        read_oulad(tmp_path / "nowhere", config)


def test_missing_column_is_named(tmp_path, config):
    folder = write_tiny_oulad(tmp_path)
    reg = pd.read_csv(folder / "studentRegistration.csv").drop(columns="date_unregistration")
    reg.to_csv(folder / "studentRegistration.csv", index=False)
    with pytest.raises(OuladError, match="date_unregistration"):
        read_oulad(folder, config)


def test_pre_course_file_is_optional(tmp_path, config):
    folder = write_tiny_oulad(tmp_path, skip=("derived/vle_pre_course_features.csv",))
    contract = oulad_to_contract(read_oulad(folder, config), config)
    assert PRE_COURSE_ATTR not in contract.enrollments.columns
    assert len(contract.enrollments) == 5


def test_run_ingest_writes_the_four_tables(tmp_path, capsys, config):
    out = tmp_path / "source"
    run_ingest_oulad(write_tiny_oulad(tmp_path / "oulad"), out, Config(oulad=config))
    assert sorted(p.name for p in out.iterdir()) == [
        "assignments.parquet",
        "courses.parquet",
        "enrollments.parquet",
        "events.parquet",
        "source.yaml",
    ]
    assert len(pd.read_parquet(out / "events.parquet")) == 4 + 4
    # The export time: the midnight after the latest course end or observed row.
    exported = read_source_info(out).exported_at
    events = pd.read_parquet(out / "events.parquet")
    courses = pd.read_parquet(out / "courses.parquet")
    latest = max(events["ts"].max(), courses["end_at"].max())
    assert latest < exported <= latest.floor("D") + pd.Timedelta(days=1)
    assert exported.hour == 0 and exported.minute == 0
    printed = capsys.readouterr().out
    assert "enrollments:" in printed and "withdrawal rate:" in printed and "BBB-2013J" in printed


def test_run_ingest_leaves_nothing_on_error(tmp_path, config):
    out = tmp_path / "source"
    folder = write_tiny_oulad(tmp_path / "oulad", skip=("vle.csv",))
    with pytest.raises(OuladError, match="vle"):
        run_ingest_oulad(folder, out, Config(oulad=config))
    assert not out.exists()


def test_yaml_and_model_defaults_agree():
    """Every OULAD default equals the YAML, except the mapping, which lives in YAML only."""
    section = yaml_oulad_section()
    from_yaml = OuladConfig.model_validate(section).model_dump(exclude={"activity_map"})
    assert from_yaml == OuladConfig().model_dump(exclude={"activity_map"})
    assert set(section) == set(OuladConfig.model_fields)
    assert OuladConfig().activity_map == {}
    assert section["activity_map"] and set(section["activity_map"].values()) <= set(EVENT_TYPES)
