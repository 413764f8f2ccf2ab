"""The synthetic school: contract shape, determinism, calendar, groups, behaviour and its signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from configs import load_config
from configs.schema import GeneratorConfig
from features.contract import EVENT_TYPES, TABLES, EventType, Kind
from features.sources import read_source_info
from features.synthetic import (
    EVENTS_DIR,
    SCHOOL_FILE,
    TRUTH_FILE,
    WEEK_S,
    _group_sizes,
    _run_letters,
    build_calendar,
    plan_school,
    read_school_info,
    write_school,
)

CONFIG = GeneratorConfig()
SCHOOL_STUDENTS = 2500


def _write(folder: Path, students: int, seed: int = 0, **overrides) -> Path:
    folder.mkdir(parents=True)
    write_school(folder, students, seed, CONFIG.model_copy(update=overrides))
    return folder


def _events(folder: Path) -> pd.DataFrame:
    parts = sorted((folder / EVENTS_DIR).glob("*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.fixture(scope="module")
def school(tmp_path_factory) -> dict:
    """One school of a few thousand students, read back whole (about 1M events)."""
    folder = _write(tmp_path_factory.mktemp("school") / "s", SCHOOL_STUDENTS, seed=11)
    tables = {
        name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES if name != "events"
    }
    tables["events"] = _events(folder)
    tables["truth"] = pd.read_parquet(folder / TRUTH_FILE)
    tables["info"] = read_school_info(folder)
    tables["data_end"] = pd.Timestamp(tables["info"]["data_end"])
    tables["exported_at"] = read_source_info(folder).exported_at
    return tables


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = _write(tmp_path / "a", 300, seed=5)
    b = _write(tmp_path / "b", 300, seed=5)
    c = _write(tmp_path / "c", 300, seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert not _events(a).equals(_events(c))


def test_chunking_and_threads_do_not_change_the_data(tmp_path):
    one = _write(tmp_path / "one", 700, block_enrollments=100, chunk_enrollments=10_000, threads=1)
    many = _write(tmp_path / "many", 700, block_enrollments=100, chunk_enrollments=200, threads=2)
    assert len(list((one / EVENTS_DIR).glob("*.parquet"))) == 1
    assert len(list((many / EVENTS_DIR).glob("*.parquet"))) == 4
    pd.testing.assert_frame_equal(_events(one), _events(many))
    for name in ("enrollments", "interventions"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(one / f"{name}.parquet"), pd.read_parquet(many / f"{name}.parquet")
        )


def test_each_block_is_one_row_group(tmp_path):
    overrides = {"block_enrollments": 100, "chunk_enrollments": 300}
    folder = _write(tmp_path / "s", 500, **overrides)
    blocks = plan_school(500, 0, CONFIG.model_copy(update=overrides)).n_blocks
    groups = [pq.ParquetFile(p).num_row_groups for p in sorted((folder / EVENTS_DIR).iterdir())]
    assert groups == [3] * (blocks // 3) + ([blocks % 3] if blocks % 3 else [])


# --------------------------------------------------------------------------------- contract


def test_tables_have_the_contract_columns_and_types(school):
    for name, spec in TABLES.items():
        frame = school[name]
        assert set(spec.required_columns) <= set(frame.columns), name
        for col in spec.columns:
            if col.name not in frame.columns:
                continue
            dtype = frame[col.name].dtype
            if col.kind is Kind.TIMESTAMP:
                assert str(dtype) in ("datetime64[us, UTC]", "datetime64[ns, UTC]"), (name, col)
            elif col.kind is Kind.STRING:
                assert pd.api.types.is_string_dtype(dtype), (name, col.name, dtype)
            else:
                assert pd.api.types.is_float_dtype(dtype), (name, col.name, dtype)
            if not col.nullable:
                assert frame[col.name].notna().all(), (name, col.name)
    attrs = [c for c in school["enrollments"].columns if c.startswith("attr_")]
    assert attrs == ["attr_age_band", "attr_region", "attr_prior_courses"]


def test_keys_are_unique_and_references_resolve(school):
    enr, ev = school["enrollments"], school["events"]
    assert not enr.duplicated(["student_id", "course_id"]).any()
    assert not school["assignments"].assignment_id.duplicated().any()
    assert set(enr.course_id) <= set(school["courses"].course_id)
    pairs = ev[["student_id", "course_id"]].drop_duplicates()
    known = pairs.merge(enr, on=["student_id", "course_id"], how="left", indicator=True)
    assert (known._merge == "both").all()
    assert not ev.duplicated().any()
    assert enr.student_id.str.fullmatch(r"s\d{7}").all()
    assert enr.curator_id.str.fullmatch(r"cur-\d{3}").all()


def test_event_types_items_and_values_follow_the_vocabulary(school):
    ev = school["events"]
    assert set(ev.event_type) == set(EVENT_TYPES)
    submit = ev[ev.event_type == EventType.ASSIGNMENT_SUBMIT]
    assert set(submit.item_id) <= set(school["assignments"].assignment_id)
    assert submit.value.between(0, 100).all()
    assert not submit.duplicated(["student_id", "item_id"]).any()
    assert ev[ev.event_type == EventType.QUIZ_ATTEMPT].value.between(0, 100).all()
    ratings = ev[ev.event_type == EventType.FEEDBACK].value
    assert ratings.between(1, 5).all() and (ratings == ratings.round()).all()
    assert (ev[ev.event_type == EventType.ACTIVITY].value >= 1).all()
    assert ev[ev.event_type == EventType.LOGIN].value.isna().all()
    assert ev[ev.event_type == EventType.LESSON_VIEW].item_id.notna().all()


def test_events_are_sorted_by_student_and_time_within_a_part(school):
    ev = school["events"]
    student, course = ev.student_id.to_numpy(), ev.course_id.to_numpy()
    same = (student[1:] == student[:-1]) & (course[1:] == course[:-1])
    ts = ev.ts.dt.tz_convert(None).to_numpy().astype("int64")
    assert (np.diff(ts)[same] >= 0).all()


# ---------------------------------------------------------------------------- calendar, time


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_calendar_staggers_runs_of_different_lengths_around_the_data_end(seed):
    cal = build_calendar(seed, CONFIG)
    assert cal.n_runs == CONFIG.n_course_runs
    assert (np.diff(cal.start_s) > 0).all()
    assert cal.weeks.min() == CONFIG.course_weeks_min
    assert cal.weeks.max() == CONFIG.course_weeks_max
    assert cal.start_s[0] == pd.Timestamp(CONFIG.first_start, tz="UTC").timestamp()
    last_start = cal.start_s.max()
    assert cal.data_end_s == last_start + CONFIG.data_end_weeks_after_last_start * WEEK_S
    finished = cal.end_s <= cal.data_end_s
    assert finished.any() and not finished.all()
    assert cal.end_s[np.argmax(cal.start_s)] > cal.data_end_s  # the latest run is running


def test_nothing_happens_at_or_after_the_data_end(school):
    end = school["data_end"]
    assert school["events"].ts.max() < end
    assert school["events"].ts.max() > end - pd.Timedelta(hours=1)  # observed right up to it
    enr = school["enrollments"]
    assert enr.enrolled_at.max() < end and enr.unenrolled_at.max() < end
    assert school["interventions"].ts.max() < end
    assert school["info"]["max_event_ts"] == school["events"].ts.max().floor("s").isoformat()
    # source.yaml says the school was exported at its data end
    assert school["exported_at"] == end.to_pydatetime()


def test_events_lie_within_enrolment_and_course(school):
    ev = school["events"].merge(school["enrollments"], on=["student_id", "course_id"])
    ev = ev.merge(school["courses"], on="course_id")
    assert (ev.ts >= ev.enrolled_at).all()
    assert (ev.ts >= ev.start_at).all()
    grace = pd.Timedelta(days=CONFIG.late_submission_grace_days)
    assert (ev.ts < ev.end_at + grace).all()
    late = ev.ts >= ev.end_at
    assert (ev.event_type[late] == EventType.ASSIGNMENT_SUBMIT).all()
    formal = ev.unenrolled_at.notna()
    assert (ev.ts[formal] <= ev.unenrolled_at[formal]).all()


def test_most_enrol_before_the_start_and_late_ones_within_two_weeks(school):
    enr = school["enrollments"].merge(school["courses"], on="course_id")
    after = enr.enrolled_at > enr.start_at
    assert 0.05 < after.mean() < 0.3
    assert (enr.enrolled_at - enr.start_at).max() <= pd.Timedelta(days=CONFIG.late_enrol_days_max)


# ---------------------------------------------------------------------------------- groups


@pytest.mark.parametrize("n", [60, 61, 119, 120, 121, 239, 240, 241, 500, 1000, 4321])
def test_group_count_keeps_sizes_in_range(n):
    """Groups are cut with np.array_split, so sizes are n // k or n // k + 1."""
    k = _group_sizes(n, 60, 120)
    assert n // k >= 60 and -(-n // k) <= 120


def test_curators_have_60_to_120_students_within_one_run(school):
    enr = school["enrollments"]
    sizes = enr.groupby("curator_id").student_id.nunique()
    assert sizes.between(CONFIG.students_per_curator_min, CONFIG.students_per_curator_max).all()
    assert (enr.groupby("curator_id").course_id.nunique() == 1).all()
    assert school["info"]["curator_group_min"] == sizes.min()


def test_only_long_runs_have_mentors(school):
    enr = school["enrollments"].merge(school["courses"], on="course_id")
    weeks = (enr.end_at - enr.start_at).dt.days // 7
    has_mentor = enr.mentor_id.notna()
    assert (has_mentor == (weeks >= CONFIG.mentor_min_weeks)).all()
    assert has_mentor.any() and not has_mentor.all()


@pytest.mark.parametrize("nth, letters", [(0, "A"), (1, "B"), (25, "Z"), (26, "AA"), (27, "AB")])
def test_run_letters_count_past_z(nth, letters):
    assert _run_letters(nth) == letters


def test_a_single_student_is_a_valid_school(tmp_path):
    folder = _write(tmp_path / "one", 1)
    enr = pd.read_parquet(folder / "enrollments.parquet")
    assert len(enr) == 1 and enr.curator_id.notna().all()
    assert json.loads((folder / SCHOOL_FILE).read_text())["students"] == 1


# ---------------------------------------------------------------------------------- behaviour


def test_dropout_share_is_20_to_40_percent_with_both_kinds(school):
    truth, enr, info = school["truth"], school["enrollments"], school["info"]
    dropped = truth.dropout_kind.notna()
    assert 0.20 <= dropped.mean() <= 0.40
    assert info["dropouts"] == dropped.sum()
    assert 0.4 < info["formal_dropouts"] / info["dropouts"] < 0.85  # both kinds, formal more
    merged = truth.merge(enr, on=["student_id", "course_id"])
    assert ((merged.dropout_kind == "formal") == merged.unenrolled_at.notna()).all()
    assert (merged.unenrolled_at.dropna() >= merged.quit_at[merged.unenrolled_at.notna()]).all()


def test_silent_quitters_go_quiet(school):
    ev = school["events"].merge(school["truth"], on=["student_id", "course_id"])
    after = ev[(ev.dropout_kind == "silent") & (ev.ts > ev.quit_at)]
    assert set(after.event_type) <= {EventType.LOGIN}  # only rare stray logins
    silent = (school["truth"].dropout_kind == "silent").sum()
    assert len(after) < silent


def test_dropouts_decline_and_ask_more_before_leaving(school):
    """The signal is there: before quitting, activity falls and questions per event rise."""
    ev = school["events"].merge(school["truth"], on=["student_id", "course_id"])
    ev = ev.merge(school["courses"][["course_id", "start_at"]], on="course_id")
    ev["week"] = (ev.ts - ev.start_at) // pd.Timedelta(weeks=1)
    quit_week = (ev.quit_at - ev.start_at) // pd.Timedelta(weeks=1)
    quitters = ev[quit_week >= 5]
    qw = (quitters.quit_at - quitters.start_at) // pd.Timedelta(weeks=1)
    early = quitters[quitters.week <= 1].groupby(["student_id", "course_id"]).size() / 2
    before = quitters[(quitters.week >= qw - 2) & (quitters.week < qw)]
    late = before.groupby(["student_id", "course_id"]).size().reindex(early.index, fill_value=0) / 2
    assert (late / early).median() < 0.8
    declined = (late < 0.6 * early).mean()
    assert 0.2 < declined < 0.9  # many decline first, but not all
    stayers = ev[ev.dropout_kind.isna()]
    share = lambda frame: (frame.event_type == EventType.QUESTION).mean()  # noqa: E731
    assert share(before) > 1.2 * share(stayers)


def test_attributes_have_mild_effects(school):
    enr = school["enrollments"].merge(school["truth"], on=["student_id", "course_id"])
    by_region = enr.groupby("attr_region").dropout_kind.apply(lambda s: s.notna().mean())
    assert by_region.max() - by_region.min() < 0.15
    assert set(enr.attr_age_band) == set(CONFIG.age_band_shares)


def test_past_contacts_are_small_and_point_at_known_students(school):
    iv, enr = school["interventions"], school["enrollments"]
    assert 0 < len(iv) < len(enr)
    merged = iv.merge(enr, on=["student_id", "course_id", "curator_id"], how="left", indicator=True)
    assert (merged._merge == "both").all()  # contacts come from the student's own curator
    assert set(iv.outcome) == {"replied", "no_reply"}


def test_school_json_counts_match_the_files(school):
    info = school["info"]
    assert info["events"] == len(school["events"])
    assert info["enrollments"] == len(school["enrollments"])
    assert info["interventions"] == len(school["interventions"])
    counts = school["events"].event_type.value_counts().reindex(list(EVENT_TYPES), fill_value=0)
    assert info["events_by_type"] == counts.to_dict()
    assert info["students"] == SCHOOL_STUDENTS
    assert info["seed"] == 11
    assert len(info["config_sha256"]) == 64


def test_events_per_student_are_a_few_hundred(school):
    per = school["events"].groupby(["student_id", "course_id"]).size()
    stayed = school["truth"].set_index(["student_id", "course_id"]).dropout_kind.isna()
    finished = school["truth"].merge(school["courses"], on="course_id").end_at < school["data_end"]
    done = stayed[stayed & finished.values].index
    assert 250 <= per.reindex(done).mean() <= 600


# --------------------------------------------------------------------------------------- config


def test_default_yaml_matches_the_schema_defaults():
    assert load_config().generator == GeneratorConfig()


@pytest.mark.parametrize(
    "overrides",
    [
        {"course_weeks_min": 6},  # would end before the data end: no run in progress
        {"course_weeks_min": 30},  # more than the max
        {"students_per_curator_min": 200},
        {"weekly_event_means": {"unknown_type": 1.0}},
        {"region_tech_factor": {"capital": 1.0}},
    ],
)
def test_inconsistent_generator_config_is_rejected(overrides):
    with pytest.raises(ValidationError):
        GeneratorConfig(**overrides)


def test_plan_enrolls_every_student_once_and_some_twice():
    plan = plan_school(2000, 0, CONFIG)
    counts = np.bincount(plan.student, minlength=2000)
    assert counts.min() == 1 and counts.max() == 2
    assert 0.03 < (counts == 2).mean() < 0.15
    assert (np.diff(plan.run) >= 0).all()  # block order: by course run
