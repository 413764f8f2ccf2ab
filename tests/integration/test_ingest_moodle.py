"""`notalone ingest moodle` on a real PostgreSQL server holding a Moodle-schema database built from
a synthetic school: the round trip, the incremental second run, atomicity and bad input."""

from __future__ import annotations

import json

import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from configs import load_config
from features.synthetic import write_school
from pipelines.cli import app
from pipelines.moodle_steps import SUBMISSIONS_PART, ingest_moodle, load_moodle_config
from pipelines.moodle_store import STATE_FILE, MoodleStoreError
from tests.moodle_db import PASSWORD_ROLE_SQL, build_school_db, write_more_log

STUDENTS = 300
SEED = 5
HELD_BACK_DAYS = 14  # the incremental test writes the last two weeks of log rows later
PASSWORD = "s3cret-Pa55"


def _floor_s(ts: pd.Series) -> pd.Series:
    return ts.dt.floor("s")


@pytest.fixture(scope="module")
def school(tmp_path_factory):
    folder = tmp_path_factory.mktemp("school")
    write_school(folder, STUDENTS, SEED, load_config().generator)
    return folder


@pytest.fixture(scope="module")
def template(postgres_server, school):
    """A Moodle database of the whole school, used as a template for the bad-input cases."""
    dsn = postgres_server.create_database("moodle_template")
    db = build_school_db(dsn, school)
    return dsn, db


def clone(server, name: str) -> str:
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        con.execute(f'CREATE DATABASE "{name}" TEMPLATE moodle_template')
    return server.dsn(name)


def run_cli(*args: str):
    return CliRunner().invoke(app, ["ingest", "moodle", *args])


def read_events(out) -> pd.DataFrame:
    return pd.read_parquet(out / "events")


def type_counts(events: pd.DataFrame) -> dict[str, int]:
    counts = events["event_type"].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def expected_event_counts(school) -> dict[str, int]:
    """The school's event counts under the documented map: support tickets have no Moodle
    event, so the helpdesk plugin's event name counts as activity."""
    events = pd.read_parquet(school / "events")
    return type_counts(
        events.assign(
            event_type=events["event_type"].astype(str).replace({"support_ticket": "activity"})
        )
    )


@pytest.fixture(scope="module")
def round_trip(postgres_server, template, tmp_path_factory):
    dsn, db = template
    dsn = clone(postgres_server, "moodle_round_trip")
    out = tmp_path_factory.mktemp("moodle") / "source"
    result = run_cli("--dsn", dsn, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, db, result.output


def test_round_trip_courses_enrolments_and_deadlines(round_trip, school):
    out, db, _ = round_trip
    back = {v: k for k, v in db.course_ids.items()}
    users = {v: k for k, v in db.user_ids.items()}
    courses = pd.read_parquet(out / "courses.parquet")
    want = pd.read_parquet(school / "courses.parquet")
    got = courses.assign(course_id=courses["course_id"].astype(int).map(back))
    got = got.set_index("course_id").sort_index()
    want = want.set_index("course_id").sort_index()
    assert list(got.index) == list(want.index)
    assert (got["start_at"] == _floor_s(want["start_at"])).all()
    assert (got["end_at"] == _floor_s(want["end_at"])).all()
    assert (got["title"] == want["title"]).all()

    enr = pd.read_parquet(out / "enrollments.parquet")
    want = pd.read_parquet(school / "enrollments.parquet")
    enr = enr.assign(
        student_id=enr["student_id"].astype(int).map(users),
        course_id=enr["course_id"].astype(int).map(back),
        curator_id=enr["curator_id"].astype(int).map(users),
        mentor_id=enr["mentor_id"].map(lambda v: users[int(v)] if isinstance(v, str) else None),
    )
    key = ["student_id", "course_id"]
    merged = want.merge(enr, on=key, how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged["_merge"] == "both").all(), "the same enrolments, no more, no fewer"
    assert (merged["enrolled_at_got"] == _floor_s(merged["enrolled_at_want"])).all()
    unenrolled_want = _floor_s(merged["unenrolled_at_want"])
    same = (merged["unenrolled_at_got"] == unenrolled_want) | (
        merged["unenrolled_at_got"].isna() & unenrolled_want.isna()
    )
    assert same.all()
    assert merged["unenrolled_at_want"].notna().sum() > 0  # suspensions and end dates both seen
    assert (merged["curator_id_got"] == merged["curator_id_want"]).all()
    mentors_same = (merged["mentor_id_got"] == merged["mentor_id_want"]) | (
        merged["mentor_id_got"].isna() & merged["mentor_id_want"].isna()
    )
    assert mentors_same.all()

    assignments = pd.read_parquet(out / "assignments.parquet")
    want = pd.read_parquet(school / "assignments.parquet")
    want = want.assign(assignment_id=want["assignment_id"].map(db.cm_ids).astype(str))
    got = assignments.set_index("assignment_id").sort_index()
    want = want.set_index("assignment_id").sort_index()
    assert list(got.index) == list(want.index)
    assert (got["due_at"] == _floor_s(want["due_at"])).all()


def test_round_trip_submissions_scores_and_event_counts(round_trip, school):
    out, db, output = round_trip
    events = read_events(out)
    got_counts = type_counts(events)
    assert got_counts == expected_event_counts(school)

    users = {v: k for k, v in db.user_ids.items()}
    subs = events[events["event_type"] == "assignment_submit"]
    got = pd.DataFrame(
        {
            "student_id": subs["student_id"].astype(int).map(users).to_numpy(),
            "item_id": subs["item_id"].astype(str).to_numpy(),
            "ts": subs["ts"].to_numpy(),
            "value": subs["value"].round(6).to_numpy(),
        }
    )
    school_events = pd.read_parquet(school / "events")
    want = school_events[school_events["event_type"] == "assignment_submit"]
    want = pd.DataFrame(
        {
            "student_id": want["student_id"].to_numpy(),
            "item_id": want["item_id"].map(db.cm_ids).astype(str).to_numpy(),
            "ts": _floor_s(want["ts"]).to_numpy(),
            "value": want["value"].round(6).to_numpy(),
        }
    )
    order = ["student_id", "item_id"]
    got = got.sort_values(order).reset_index(drop=True)
    want = want.sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)

    # lesson views keep their lesson: item_id is the page's course-module id
    views = events[events["event_type"] == "lesson_view"]
    want_views = school_events[school_events["event_type"] == "lesson_view"]
    got_views = views["item_id"].astype(str).value_counts().to_dict()
    want_views = want_views["item_id"].map(db.cm_ids).astype(str).value_counts().to_dict()
    assert got_views == want_views
    assert (out / "events" / SUBMISSIONS_PART).is_file()
    assert "log rows without a student enrolment" in output  # site logins and staff, dropped
    validate = CliRunner().invoke(app, ["validate", "--source", str(out)])
    assert validate.exit_code == 0, validate.output


def test_incremental_second_run_reads_only_new_rows(postgres_server, school, tmp_path):
    dsn = postgres_server.create_database("moodle_incremental")
    info = json.loads((school / "school.json").read_text())
    cutoff = pd.Timestamp(info["data_end"]) - pd.Timedelta(days=HELD_BACK_DAYS)
    db = build_school_db(dsn, school, log_until=cutoff)
    out = tmp_path / "source"
    config = load_moodle_config()
    first = ingest_moodle(dsn=dsn, prefix="mdl_", out=out, config=config)
    assert first["log_id_range"] == [1, db.log_written_upto]
    assert first["log_rows_read"] == db.log_written_upto
    state = json.loads((out / STATE_FILE).read_text())
    assert state["last_log_id"] == db.log_written_upto

    # A student leaves the way Moodle usually unenrols: the user_enrolments row is deleted.
    enr = pd.read_parquet(out / "enrollments.parquet")
    leaver = enr[enr["unenrolled_at"].isna()].iloc[0]
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(
            "DELETE FROM mdl_user_enrolments WHERE userid = %s AND enrolid IN "
            "(SELECT id FROM mdl_enrol WHERE courseid = %s)",
            (int(leaver["student_id"]), int(leaver["course_id"])),
        )
    new_first, new_last = write_more_log(dsn, db)
    assert new_first == first["log_id_range"][1] + 1
    second = ingest_moodle(dsn=dsn, prefix="mdl_", out=out, config=config)
    assert second["log_id_range"] == [new_first, new_last]
    assert second["log_rows_read"] == new_last - new_first + 1
    assert second["first_log_id_seen"] == new_first
    assert len(second["log_parts"]) == 2
    events = read_events(out)
    counts = type_counts(events)
    assert counts == expected_event_counts(school)  # nothing read twice, nothing missed

    enr = pd.read_parquet(out / "enrollments.parquet")
    kept = enr[
        (enr["student_id"] == leaver["student_id"]) & (enr["course_id"] == leaver["course_id"])
    ]
    assert len(kept) == 1
    assert kept["unenrolled_at"].iloc[0] == pd.Timestamp(second["exported_at"])

    third = ingest_moodle(dsn=dsn, prefix="mdl_", out=out, config=config)
    assert third["log_rows_read"] == 0 and third["log_id_range"] is None
    assert third["new_part"] is None and len(third["log_parts"]) == 2
    assert len(read_events(out)) == len(events)


def test_interrupted_run_leaves_the_earlier_source_whole(
    postgres_server, template, tmp_path, monkeypatch
):
    dsn = clone(postgres_server, "moodle_interrupted")
    out = tmp_path / "source"
    config = load_moodle_config()
    ingest_moodle(dsn=dsn, prefix="mdl_", out=out, config=config)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(
            "INSERT INTO mdl_logstore_standard_log (eventname, component, action, target, crud, "
            "edulevel, contextid, contextlevel, contextinstanceid, userid, courseid, timecreated) "
            "SELECT eventname, component, action, target, crud, edulevel, contextid, "
            "contextlevel, contextinstanceid, userid, courseid, timecreated + 60 "
            "FROM mdl_logstore_standard_log ORDER BY id DESC LIMIT 100"
        )

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipelines.moodle_steps.map_log_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest_moodle(dsn=dsn, prefix="mdl_", out=out, config=config)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left


BAD_SCHEMAS = [
    pytest.param(
        "ALTER TABLE mdl_assign DROP COLUMN duedate",
        ["mdl_assign", "duedate"],
        id="missing-column",
    ),
    pytest.param(
        "DROP TABLE mdl_grade_grades", ["mdl_grade_grades", "not found"], id="missing-table"
    ),
    pytest.param(
        "ALTER TABLE mdl_course DROP COLUMN enddate",
        ["mdl_course", "enddate", "Moodle 3.2", "4.1.9"],
        id="older-moodle-course",
    ),
    pytest.param(
        "ALTER TABLE mdl_logstore_standard_log RENAME TO mdl_log",
        ["mdl_logstore_standard_log", "legacy mdl_log", "2.7"],
        id="older-moodle-log",
    ),
    pytest.param(
        "ALTER TABLE mdl_logstore_standard_log ALTER COLUMN timecreated TYPE timestamptz "
        "USING to_timestamp(timecreated)",
        ["mdl_logstore_standard_log.timecreated", "timestamp with time zone", "bigint"],
        id="other-column-type",
    ),
    pytest.param(
        "TRUNCATE mdl_logstore_standard_log",
        ["mdl_logstore_standard_log", "empty"],
        id="empty-log-store",
    ),
]


@pytest.mark.parametrize(("sql", "words"), BAD_SCHEMAS)
def test_bad_database_exits_2_naming_table_and_column(
    postgres_server, template, tmp_path, sql, words
):
    dsn = clone(postgres_server, "moodle_bad")
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql)
    out = tmp_path / "source"
    result = run_cli("--dsn", dsn, "--out", str(out))
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_wrong_password_exits_2_without_echoing_it(postgres_server, template, tmp_path):
    with psycopg.connect(postgres_server.dsn("postgres"), autocommit=True) as con:
        con.execute(PASSWORD_ROLE_SQL.format(user="moodleuser", password=PASSWORD))
    dsn = (
        f"postgresql://moodleuser:wrong-{PASSWORD}@{postgres_server.host}:"
        f"{postgres_server.port}/moodle_template"
    )
    result = run_cli("--dsn", dsn, "--out", str(tmp_path / "source"))
    assert result.exit_code == 2
    assert "password authentication failed" in result.output
    assert "moodleuser" in result.output
    assert PASSWORD not in result.output
    # the right password works for the same role
    good = dsn.replace(f"wrong-{PASSWORD}", PASSWORD)
    result = run_cli("--dsn", good, "--out", str(tmp_path / "source"))
    assert result.exit_code == 0, result.output
    assert PASSWORD not in json.loads((tmp_path / "source" / STATE_FILE).read_text())["dsn"]


def test_wrong_prefix_and_foreign_out_folder_exit_2(postgres_server, template, tmp_path):
    dsn, _ = template
    result = run_cli("--dsn", dsn, "--prefix", "moodle_", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "no Moodle tables with prefix 'moodle_'" in result.output
    foreign = tmp_path / "b"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = run_cli("--dsn", dsn, "--out", str(foreign))
    assert result.exit_code == 2 and "refusing to replace it" in result.output
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(MoodleStoreError, match="--prefix"):
        ingest_moodle(dsn=dsn, prefix="x; drop", out=tmp_path / "c", config=load_moodle_config())
