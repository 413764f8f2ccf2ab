"""A Moodle-schema PostgreSQL database built from a synthetic school, for the Moodle ingest tests.

`create_schema` makes Moodle's tables with their real column names and types, as Moodle's XMLDB
installer creates them on PostgreSQL from `db/install.xml` (`lib/db/install.xml`,
`mod/assign/db/install.xml`, `admin/tool/log/store/standard/db/install.xml`; Moodle 4.x): int(10)
-> bigint, int(<=4) -> smallint, int(5..9) -> integer, char(n) -> varchar(n), number(10,5) ->
numeric(10,5), `id` bigserial. Columns Moodle has and the ingest ignores are kept, so that the
ingest is shown to select what it needs rather than relying on a tidy table.

`build_school_db` writes a school (from `notalone generate`) into it the way Moodle would record
it; `MoodleSchool` keeps the id maps a test needs to compare the ingest's output with the school.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

# (table, columns) with PostgreSQL types as Moodle's installer creates them.
SCHEMA: dict[str, str] = {
    "config": """
        id bigserial primary key, name varchar(255) not null default '', value text not null""",
    "course": """
        id bigserial primary key, category bigint not null default 0,
        sortorder bigint not null default 0, fullname varchar(1333) not null default '',
        shortname varchar(255) not null default '', idnumber varchar(100) not null default '',
        summary text, summaryformat smallint not null default 0,
        format varchar(21) not null default 'topics', showgrades smallint not null default 1,
        newsitems integer not null default 1, startdate bigint not null default 0,
        enddate bigint not null default 0, relativedatesmode smallint not null default 0,
        marker bigint not null default 0, maxbytes bigint not null default 0,
        legacyfiles smallint not null default 0, showreports smallint not null default 0,
        visible smallint not null default 1, visibleold smallint not null default 1,
        downloadcontent smallint, groupmode smallint not null default 0,
        groupmodeforce smallint not null default 0, defaultgroupingid bigint not null default 0,
        lang varchar(30) not null default '', calendartype varchar(30) not null default '',
        theme varchar(50) not null default '', timecreated bigint not null default 0,
        timemodified bigint not null default 0, requested smallint not null default 0,
        enablecompletion smallint not null default 0, completionnotify smallint not null default 0,
        cacherev bigint not null default 0, originalcourseid bigint,
        showactivitydates smallint not null default 0, showcompletionconditions smallint,
        pdfexportfont varchar(50)""",
    "user": """
        id bigserial primary key, auth varchar(20) not null default 'manual',
        confirmed smallint not null default 0, policyagreed smallint not null default 0,
        deleted smallint not null default 0, suspended smallint not null default 0,
        mnethostid bigint not null default 0, username varchar(100) not null default '',
        password varchar(255) not null default '', idnumber varchar(255) not null default '',
        firstname varchar(100) not null default '', lastname varchar(100) not null default '',
        email varchar(100) not null default '', emailstop smallint not null default 0,
        phone1 varchar(20) not null default '', phone2 varchar(20) not null default '',
        institution varchar(255) not null default '', department varchar(255) not null default '',
        address varchar(255) not null default '', city varchar(120) not null default '',
        country varchar(2) not null default '', lang varchar(30) not null default 'en',
        calendartype varchar(30) not null default 'gregorian',
        theme varchar(50) not null default '', timezone varchar(100) not null default '99',
        firstaccess bigint not null default 0, lastaccess bigint not null default 0,
        lastlogin bigint not null default 0, currentlogin bigint not null default 0,
        lastip varchar(45) not null default '', secret varchar(15) not null default '',
        picture bigint not null default 0, description text,
        descriptionformat smallint not null default 1, mailformat smallint not null default 1,
        maildigest smallint not null default 0, maildisplay smallint not null default 2,
        autosubscribe smallint not null default 1, trackforums smallint not null default 0,
        timecreated bigint not null default 0, timemodified bigint not null default 0,
        trustbitmask bigint not null default 0, imagealt varchar(255),
        lastnamephonetic varchar(255), firstnamephonetic varchar(255),
        middlename varchar(255), alternatename varchar(255), moodlenetprofile varchar(255)""",
    "enrol": """
        id bigserial primary key, enrol varchar(20) not null default '',
        status bigint not null default 0, courseid bigint not null,
        sortorder bigint not null default 0, name varchar(255), enrolperiod bigint default 0,
        enrolstartdate bigint default 0, enrolenddate bigint default 0,
        expirynotify smallint default 0, expirythreshold bigint default 0,
        notifyall smallint default 0, password varchar(50), cost varchar(20),
        currency varchar(3), roleid bigint default 0, customint1 bigint, customint2 bigint,
        customint3 bigint, customint4 bigint, customint5 bigint, customint6 bigint,
        customint7 bigint, customint8 bigint, customchar1 varchar(255), customchar2 varchar(255),
        customchar3 varchar(1333), customdec1 numeric(12,7), customdec2 numeric(12,7),
        customtext1 text, customtext2 text, customtext3 text, customtext4 text,
        timecreated bigint not null default 0, timemodified bigint not null default 0""",
    "user_enrolments": """
        id bigserial primary key, status bigint not null default 0, enrolid bigint not null,
        userid bigint not null, timestart bigint not null default 0,
        timeend bigint not null default 2147483647, modifierid bigint not null default 0,
        timecreated bigint not null default 0, timemodified bigint not null default 0""",
    "role": """
        id bigserial primary key, name varchar(255) not null default '',
        shortname varchar(100) not null default '', description text not null default '',
        sortorder bigint not null default 0, archetype varchar(30) not null default ''""",
    "context": """
        id bigserial primary key, contextlevel bigint not null default 0,
        instanceid bigint not null default 0, path varchar(255), depth smallint not null default 0,
        locked smallint not null default 0""",
    "role_assignments": """
        id bigserial primary key, roleid bigint not null default 0,
        contextid bigint not null default 0, userid bigint not null default 0,
        timemodified bigint not null default 0, modifierid bigint not null default 0,
        component varchar(100) not null default '', itemid bigint not null default 0,
        sortorder bigint not null default 0""",
    "groups": """
        id bigserial primary key, courseid bigint not null,
        idnumber varchar(100) not null default '',
        name varchar(254) not null default '', description text,
        descriptionformat smallint not null default 0, enrolmentkey varchar(50),
        picture bigint not null default 0, visibility smallint not null default 0,
        participation smallint not null default 1, timecreated bigint not null default 0,
        timemodified bigint not null default 0""",
    "groups_members": """
        id bigserial primary key, groupid bigint not null default 0,
        userid bigint not null default 0, timeadded bigint not null default 0,
        component varchar(100) not null default '', itemid bigint not null default 0""",
    "modules": """
        id bigserial primary key, name varchar(20) not null default '',
        cron bigint not null default 0, lastcron bigint not null default 0,
        search varchar(255) not null default '', visible smallint not null default 1""",
    "course_modules": """
        id bigserial primary key, course bigint not null default 0,
        module bigint not null default 0, instance bigint not null default 0,
        section bigint not null default 0, idnumber varchar(100), added bigint not null default 0,
        score smallint not null default 0, indent integer not null default 0,
        visible smallint not null default 1, visibleoncoursepage smallint not null default 1,
        visibleold smallint not null default 1, groupmode smallint not null default 0,
        groupingid bigint not null default 0, completion smallint not null default 0,
        completiongradeitemnumber bigint, completionview smallint not null default 0,
        completionexpected bigint not null default 0,
        completionpassgrade smallint not null default 0,
        showdescription smallint not null default 0, availability text,
        deletioninprogress smallint not null default 0, downloadcontent smallint default 1,
        lang varchar(30)""",
    "assign": """
        id bigserial primary key, course bigint not null default 0,
        name varchar(255) not null default '', intro text not null default '',
        introformat smallint not null default 0, alwaysshowdescription smallint not null default 0,
        nosubmissions smallint not null default 0, submissiondrafts smallint not null default 0,
        sendnotifications smallint not null default 0,
        sendlatenotifications smallint not null default 0, duedate bigint not null default 0,
        allowsubmissionsfromdate bigint not null default 0, grade bigint not null default 0,
        timemodified bigint not null default 0,
        requiresubmissionstatement smallint not null default 0,
        completionsubmit smallint not null default 0, cutoffdate bigint not null default 0,
        gradingduedate bigint not null default 0, teamsubmission smallint not null default 0,
        requireallteammemberssubmit smallint not null default 0,
        teamsubmissiongroupingid bigint not null default 0,
        blindmarking smallint not null default 0, hidegrader smallint not null default 0,
        revealidentities smallint not null default 0,
        attemptreopenmethod varchar(10) not null default 'none',
        maxattempts integer not null default -1, markingworkflow smallint not null default 0,
        markingallocation smallint not null default 0,
        sendstudentnotifications smallint not null default 1,
        preventsubmissionnotingroup smallint not null default 0, activity text,
        activityformat smallint not null default 0, timelimit bigint not null default 0,
        submissionattachments smallint not null default 0""",
    "assign_submission": """
        id bigserial primary key, assignment bigint not null default 0,
        userid bigint not null default 0, timecreated bigint not null default 0,
        timemodified bigint not null default 0, timestarted bigint, status varchar(10),
        groupid bigint not null default 0, attemptnumber bigint not null default 0,
        latest smallint not null default 0""",
    "assign_grades": """
        id bigserial primary key, assignment bigint not null default 0,
        userid bigint not null default 0, timecreated bigint not null default 0,
        timemodified bigint not null default 0, grader bigint not null default 0,
        grade numeric(10,5) default 0, attemptnumber bigint not null default 0""",
    "grade_items": """
        id bigserial primary key, courseid bigint, categoryid bigint, itemname varchar(255),
        itemtype varchar(30) not null default '', itemmodule varchar(30), iteminstance bigint,
        itemnumber bigint, iteminfo text, idnumber varchar(255), calculation text,
        gradetype smallint not null default 1, grademax numeric(10,5) not null default 100,
        grademin numeric(10,5) not null default 0, scaleid bigint, outcomeid bigint,
        gradepass numeric(10,5) not null default 0, multfactor numeric(10,5) not null default 1,
        plusfactor numeric(10,5) not null default 0,
        aggregationcoef numeric(10,5) not null default 0,
        aggregationcoef2 numeric(10,5) not null default 0, sortorder bigint not null default 0,
        display bigint not null default 0, decimals smallint, hidden bigint not null default 0,
        locked bigint not null default 0, locktime bigint not null default 0,
        needsupdate bigint not null default 0, weightoverride smallint not null default 0,
        timecreated bigint, timemodified bigint""",
    "grade_grades": """
        id bigserial primary key, itemid bigint not null, userid bigint not null,
        rawgrade numeric(10,5), rawgrademax numeric(10,5) not null default 100,
        rawgrademin numeric(10,5) not null default 0, rawscaleid bigint, usermodified bigint,
        finalgrade numeric(10,5), hidden bigint not null default 0,
        locked bigint not null default 0, locktime bigint not null default 0,
        exported bigint not null default 0, overridden bigint not null default 0,
        excluded bigint not null default 0, feedback text, feedbackformat bigint default 0,
        information text, informationformat bigint default 0, timecreated bigint,
        timemodified bigint, aggregationstatus varchar(10) not null default 'unknown',
        aggregationweight numeric(10,5), deductedmark numeric(10,5) not null default 0""",
    "logstore_standard_log": """
        id bigserial primary key, eventname varchar(255) not null default '',
        component varchar(100) not null default '', action varchar(100) not null default '',
        target varchar(100) not null default '', objecttable varchar(50), objectid bigint,
        crud varchar(1) not null default '', edulevel smallint not null, contextid bigint not null,
        contextlevel bigint not null, contextinstanceid bigint not null, userid bigint not null,
        courseid bigint, relateduserid bigint, anonymous smallint not null default 0, other text,
        timecreated bigint not null, origin varchar(10), ip varchar(45), realuserid bigint""",
}
LOG_INDEXES = ("timecreated", "eventname", "userid, contextlevel")

MOODLE_RELEASE = "4.1.9 (Build: 20240212)"
ROLES = {1: "manager", 3: "editingteacher", 4: "teacher", 5: "student", 9: "mentor"}
MODULES = {1: "assign", 2: "page", 3: "quiz", 4: "forum", 5: "feedback"}
CONTEXT_SYSTEM, CONTEXT_COURSE, CONTEXT_MODULE = 10, 50, 70
SITE_COURSE = 1

# Synthetic event type -> (Moodle eventname, component, where: "course" / "item" / "forum" /
# "feedback"); the ingest's default map must take each back (support tickets: to activity).
EVENT_NAMES = {
    "login": (r"\core\event\course_viewed", "core", "course"),
    "lesson_view": (r"\mod_page\event\course_module_viewed", "mod_page", "item"),
    "lesson_complete": (r"\core\event\course_module_completion_updated", "core", "item"),
    "quiz_attempt": (r"\mod_quiz\event\attempt_submitted", "mod_quiz", "item"),
    "question": (r"\mod_forum\event\post_created", "mod_forum", "forum"),
    "feedback": (r"\mod_feedback\event\response_submitted", "mod_feedback", "feedback"),
    "support_ticket": (r"\local_helpdesk\event\ticket_created", "local_helpdesk", "course"),
    "activity": (r"\mod_forum\event\course_module_viewed", "mod_forum", "forum"),
    "assignment_submit": (r"\mod_assign\event\assessable_submitted", "mod_assign", "item"),
}
SITE_LOGIN = r"\core\event\user_loggedin"
SITE_LOGIN_EVERY = 5  # one site login row per this many course logins (dropped: no course)
STAFF_VIEWS_PER_COURSE = 20  # course_viewed rows of each curator per course (dropped: staff)
SCALE_10_EVERY = 2  # every second assignment is graded out of 10 instead of 100
GRADEBOOK_SHARE_MOD = 3  # submissions whose index % 3 == 0 have no gradebook row (fallback)
REOPENED_EVERY = 7  # every 7th submission also has an earlier reopened attempt


def _seconds(ts: pd.Series) -> np.ndarray:
    """UTC timestamps -> Unix seconds (Moodle keeps whole seconds)."""
    return (ts.astype("datetime64[us, UTC]").astype("int64") // 1_000_000).to_numpy()


@dataclass
class MoodleSchool:
    """What was written, keyed the way the test compares: school ids -> Moodle ids."""

    prefix: str
    course_ids: dict[str, int]
    user_ids: dict[str, int]
    cm_ids: dict[str, int]  # synthetic item / assignment id -> course-module id
    log: pd.DataFrame  # every log row of the school (written or still to write), in id order
    log_written_upto: int = 0  # highest log id already in the database
    extra: dict = field(default_factory=dict)


def create_schema(con: psycopg.Connection, prefix: str = "mdl_") -> None:
    for table, columns in SCHEMA.items():
        con.execute(f'CREATE TABLE "{prefix}{table}" ({columns})')
    for i, cols in enumerate(LOG_INDEXES):
        con.execute(
            f'CREATE INDEX "{prefix}logsstanlog_ix{i}" ON "{prefix}logstore_standard_log" ({cols})'
        )


def copy_frame(con: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    """Bulk-load a frame with COPY (CSV; empty cells are NULL)."""
    if frame.empty:
        return
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    data = frame.to_csv(index=False, header=False, na_rep="")
    with con.cursor().copy(f'COPY "{table}" ({cols}) FROM STDIN (FORMAT csv)') as copy:
        copy.write(data)


def _fix_sequences(con: psycopg.Connection, prefix: str) -> None:
    for table in SCHEMA:
        con.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{prefix}{table}\"', 'id'), "
            f'coalesce((SELECT max(id) FROM "{prefix}{table}"), 0) + 1, false)'
        )


def build_school_db(
    dsn: str, school: Path, prefix: str = "mdl_", log_until: pd.Timestamp | None = None
) -> MoodleSchool:
    """Write the school at `school` into a Moodle-schema database at `dsn`; log rows at or after
    `log_until` are kept back for `write_more_log` (an incremental run)."""
    courses = pd.read_parquet(school / "courses.parquet")
    enrol = pd.read_parquet(school / "enrollments.parquet")
    assignments = pd.read_parquet(school / "assignments.parquet")
    events = pd.read_parquet(school / "events")
    p = prefix
    out: dict[str, pd.DataFrame] = {}

    out["config"] = pd.DataFrame(
        {"id": [1, 2], "name": ["release", "version"], "value": [MOODLE_RELEASE, "2022112809"]}
    )
    course_ids = {c: SITE_COURSE + 1 + i for i, c in enumerate(courses["course_id"])}
    out["course"] = pd.DataFrame(
        {
            "id": [SITE_COURSE, *course_ids.values()],
            "category": [0] + [1] * len(courses),
            "fullname": ["Front page", *courses["title"]],
            "shortname": ["site", *courses["course_id"]],
            "format": ["site"] + ["topics"] * len(courses),
            "startdate": [0, *_seconds(courses["start_at"])],
            "enddate": [0, *_seconds(courses["end_at"])],
        }
    )
    people = (
        ["guest", "admin"]
        + sorted(enrol["student_id"].unique())
        + sorted(enrol["curator_id"].unique())
        + sorted(enrol["mentor_id"].dropna().unique())
        + [f"editor-{c}" for c in courses["course_id"]]
    )
    user_ids = {u: i + 1 for i, u in enumerate(people)}
    out["user"] = pd.DataFrame(
        {
            "id": list(user_ids.values()),
            "username": list(user_ids),
            "firstname": ["Person"] * len(people),
            "lastname": list(user_ids),
            "email": [f"{u}@school.example" for u in people],
            "confirmed": 1,
            "mnethostid": 1,
        }
    )
    out["role"] = pd.DataFrame(
        {
            "id": list(ROLES),
            "shortname": list(ROLES.values()),
            "name": list(ROLES.values()),
            "archetype": list(ROLES.values()),
            "sortorder": list(range(1, len(ROLES) + 1)),
        }
    )
    out["modules"] = pd.DataFrame({"id": list(MODULES), "name": list(MODULES.values())})

    # contexts: system, one per course, one per course module
    items = (
        events[["course_id", "item_id", "event_type"]]
        .dropna(subset=["item_id"])
        .query("event_type != 'assignment_submit'")
        .drop_duplicates("item_id")
    )
    cm_rows = []
    cm_ids: dict[str, int] = {}
    assign_rows = []
    for i, a in enumerate(assignments.itertuples(index=False), start=1):
        cm = len(cm_rows) + 1
        cm_ids[a.assignment_id] = cm
        cm_rows.append((cm, course_ids[a.course_id], 1, i))
        assign_rows.append(
            (
                i,
                course_ids[a.course_id],
                a.assignment_id,
                int(_seconds(pd.Series([a.due_at]))[0]),
                10 if i % SCALE_10_EVERY == 0 else 100,
            )
        )
    for it in items.itertuples(index=False):
        cm = len(cm_rows) + 1
        cm_ids[it.item_id] = cm
        module = 3 if it.event_type == "quiz_attempt" else 2
        cm_rows.append((cm, course_ids[it.course_id], module, cm))
    forum_cm, feedback_cm = {}, {}
    for c, cid in course_ids.items():
        for module, table in ((4, forum_cm), (5, feedback_cm)):
            cm = len(cm_rows) + 1
            table[c] = cm
            cm_rows.append((cm, cid, module, cid))
    out["course_modules"] = pd.DataFrame(cm_rows, columns=["id", "course", "module", "instance"])
    out["assign"] = pd.DataFrame(assign_rows, columns=["id", "course", "name", "duedate", "grade"])
    ctx = [(1, CONTEXT_SYSTEM, 0)]
    course_ctx = {}
    for cid in course_ids.values():
        course_ctx[cid] = len(ctx) + 1
        ctx.append((len(ctx) + 1, CONTEXT_COURSE, cid))
    module_ctx = {}
    for cm, *_ in cm_rows:
        module_ctx[cm] = len(ctx) + 1
        ctx.append((len(ctx) + 1, CONTEXT_MODULE, cm))
    out["context"] = pd.DataFrame(ctx, columns=["id", "contextlevel", "instanceid"])

    # enrolment methods, enrolments, roles, groups
    enrol_ids = {cid: i + 1 for i, cid in enumerate(course_ids.values())}
    out["enrol"] = pd.DataFrame(
        {
            "id": list(enrol_ids.values()),
            "enrol": "manual",
            "status": 0,
            "courseid": list(enrol_ids),
            "roleid": 5,
        }
    )
    ue, ra, members, groups = [], [], [], []
    start = _seconds(enrol["enrolled_at"])
    unenrolled = enrol["unenrolled_at"]
    end = np.where(unenrolled.notna(), _seconds(unenrolled.fillna(pd.Timestamp(0, tz="UTC"))), 0)
    for i, row in enumerate(enrol.itertuples(index=False)):
        cid = course_ids[row.course_id]
        uid = user_ids[row.student_id]
        if end[i]:
            # Half the unenrolments are suspensions (status 1 at timemodified), half end dates.
            if i % 2:
                ue.append((uid, enrol_ids[cid], 1, start[i], 0, start[i], end[i]))
            else:
                ue.append((uid, enrol_ids[cid], 0, start[i], end[i], start[i], start[i]))
        else:
            ue.append((uid, enrol_ids[cid], 0, start[i], 0, start[i], start[i]))
        ra.append((5, course_ctx[cid], uid))
    staff = set()
    for kind, col, role in (("curator", "curator_id", 4), ("mentor", "mentor_id", 9)):
        for (course, person), grp in enrol.dropna(subset=[col]).groupby(["course_id", col]):
            cid = course_ids[course]
            gid = len(groups) + 1
            groups.append((gid, cid, f"{kind} {person}"))
            members.append((gid, user_ids[person]))
            members.extend((gid, user_ids[s]) for s in grp["student_id"])
            if (cid, person) not in staff:
                staff.add((cid, person))
                first = int(_seconds(courses.loc[courses.course_id == course, "start_at"])[0])
                ue.append((user_ids[person], enrol_ids[cid], 0, first, 0, first, first))
                ra.append((role, course_ctx[cid], user_ids[person]))
    for c, cid in course_ids.items():  # an editing teacher per course, in no group
        editor = user_ids[f"editor-{c}"]
        ue.append((editor, enrol_ids[cid], 0, 0, 0, 0, 0))
        ra.append((3, course_ctx[cid], editor))
    out["user_enrolments"] = pd.DataFrame(
        ue,
        columns=[
            "userid",
            "enrolid",
            "status",
            "timestart",
            "timeend",
            "timecreated",
            "timemodified",
        ],
    )
    out["user_enrolments"].insert(0, "id", range(1, len(ue) + 1))
    out["role_assignments"] = pd.DataFrame(ra, columns=["roleid", "contextid", "userid"])
    out["role_assignments"].insert(0, "id", range(1, len(ra) + 1))
    out["groups"] = pd.DataFrame(groups, columns=["id", "courseid", "name"])
    out["groups_members"] = pd.DataFrame(members, columns=["groupid", "userid"])
    out["groups_members"].insert(0, "id", range(1, len(members) + 1))

    # submissions and grades
    subs = events[events["event_type"] == "assignment_submit"].reset_index(drop=True)
    assign_id = {a: i for i, a in enumerate(assignments["assignment_id"], start=1)}
    max_grade = out["assign"].set_index("id")["grade"]
    sub_rows, grade_rows, book_rows = [], [], []
    ts = _seconds(subs["ts"])
    item_ids = {a: n for n, a in enumerate(assign_id.values(), start=1)}  # grade item per assign
    for i, s in enumerate(subs.itertuples(index=False)):
        a = assign_id[s.item_id]
        uid = user_ids[s.student_id]
        attempt = 0
        if i % REOPENED_EVERY == 0:
            sub_rows.append((a, uid, ts[i] - 86_400, "reopened", 0, 0))
            attempt = 1
        sub_rows.append((a, uid, ts[i], "submitted", attempt, 1))
        grade = s.value * max_grade[a] / 100.0
        grade_rows.append((a, uid, grade, attempt))
        if i % GRADEBOOK_SHARE_MOD:
            book_rows.append((item_ids[a], uid, grade))
    out["assign_submission"] = pd.DataFrame(
        sub_rows,
        columns=["assignment", "userid", "timemodified", "status", "attemptnumber", "latest"],
    )
    out["assign_submission"].insert(0, "id", range(1, len(sub_rows) + 1))
    # A student who opened an assignment and never handed it in: status "new", not a submission.
    first_student = user_ids[enrol["student_id"].iloc[0]]
    out["assign_submission"].loc[len(sub_rows)] = [
        len(sub_rows) + 1,
        1,
        first_student,
        0,
        "new",
        0,
        1,
    ]
    out["assign_grades"] = pd.DataFrame(
        grade_rows, columns=["assignment", "userid", "grade", "attemptnumber"]
    )
    out["assign_grades"].insert(0, "id", range(1, len(grade_rows) + 1))
    out["grade_items"] = pd.DataFrame(
        {
            "id": list(item_ids.values()),
            "courseid": [int(out["assign"].set_index("id").loc[a, "course"]) for a in item_ids],
            "itemtype": "mod",
            "itemmodule": "assign",
            "iteminstance": list(item_ids),
            "itemnumber": 0,
            "grademax": [float(max_grade[a]) for a in item_ids],
            "grademin": 0.0,
        }
    )
    out["grade_grades"] = pd.DataFrame(book_rows, columns=["itemid", "userid", "finalgrade"])
    out["grade_grades"].insert(0, "id", range(1, len(book_rows) + 1))

    log = school_log(
        events, course_ids, user_ids, cm_ids, forum_cm, feedback_cm, course_ctx, module_ctx, enrol
    )
    school_db = MoodleSchool(prefix, course_ids, user_ids, cm_ids, log)
    with psycopg.connect(dsn, autocommit=True) as con:
        create_schema(con, prefix)
        for table, frame in out.items():
            copy_frame(con, f"{p}{table}", frame)
        cutoff = (
            len(log)
            if log_until is None
            else int((log["timecreated"] < _seconds(pd.Series([log_until]))[0]).sum())
        )
        copy_frame(con, f"{p}logstore_standard_log", log.iloc[:cutoff])
        _fix_sequences(con, prefix)
    school_db.log_written_upto = int(log["id"].iloc[cutoff - 1]) if cutoff else 0
    return school_db


def write_more_log(dsn: str, school_db: MoodleSchool) -> tuple[int, int]:
    """Insert the log rows held back by `log_until`; returns their (first id, last id)."""
    rest = school_db.log[school_db.log["id"] > school_db.log_written_upto]
    with psycopg.connect(dsn, autocommit=True) as con:
        copy_frame(con, f"{school_db.prefix}logstore_standard_log", rest)
    first, last = int(rest["id"].iloc[0]), int(rest["id"].iloc[-1])
    school_db.log_written_upto = last
    return first, last


def school_log(
    events, course_ids, user_ids, cm_ids, forum_cm, feedback_cm, course_ctx, module_ctx, enrol
) -> pd.DataFrame:
    """One log row per school event (in time order, ids ascending), plus rows the ingest must
    drop: site logins (no course) and curators viewing their courses (staff)."""
    ev = events.sort_values("ts", kind="stable").reset_index(drop=True)
    name = ev["event_type"].map({k: v[0] for k, v in EVENT_NAMES.items()})
    component = ev["event_type"].map({k: v[1] for k, v in EVENT_NAMES.items()})
    where = ev["event_type"].map({k: v[2] for k, v in EVENT_NAMES.items()})
    cid = ev["course_id"].map(course_ids).astype("int64")
    cm = np.select(
        [where == "item", where == "forum", where == "feedback"],
        [
            ev["item_id"].map(cm_ids).fillna(0),
            ev["course_id"].map(forum_cm),
            ev["course_id"].map(feedback_cm),
        ],
        default=0,
    ).astype("int64")
    level = np.where(where == "course", CONTEXT_COURSE, CONTEXT_MODULE)
    ctxid = np.where(
        level == CONTEXT_COURSE,
        cid.map(course_ctx).to_numpy(),
        pd.Series(cm).map(module_ctx).fillna(0).to_numpy(),
    ).astype("int64")
    log = pd.DataFrame(
        {
            "eventname": name,
            "component": component,
            "action": "viewed",
            "target": "course",
            "crud": "r",
            "edulevel": 2,
            "contextid": ctxid,
            "contextlevel": level,
            "contextinstanceid": np.where(level == CONTEXT_COURSE, cid, cm),
            "userid": ev["student_id"].map(user_ids),
            "courseid": cid,
            "timecreated": _seconds(ev["ts"]),
            "origin": "web",
            "ip": "10.0.0.1",
        }
    )
    logins = log[ev["event_type"] == "login"].iloc[::SITE_LOGIN_EVERY].copy()
    logins = logins.assign(
        eventname=SITE_LOGIN,
        component="core",
        action="loggedin",
        target="user",
        contextid=1,
        contextlevel=CONTEXT_SYSTEM,
        contextinstanceid=0,
        courseid=0,
        edulevel=0,
    )
    staff_rows = []
    for (course, curator), _grp in enrol.groupby(["course_id", "curator_id"]):
        in_course = log[log["courseid"] == course_ids[course]]
        sample = in_course.iloc[:: max(1, len(in_course) // STAFF_VIEWS_PER_COURSE)].head(
            STAFF_VIEWS_PER_COURSE
        )
        staff_rows.append(
            sample.assign(
                eventname=EVENT_NAMES["login"][0],
                userid=user_ids[curator],
                edulevel=1,
                contextlevel=CONTEXT_COURSE,
                contextinstanceid=course_ids[course],
                contextid=course_ctx[course_ids[course]],
            )
        )
    full = pd.concat([log, logins, *staff_rows]).sort_values("timecreated", kind="stable")
    full.insert(0, "id", np.arange(1, len(full) + 1))
    return full.reset_index(drop=True)


# A login role that must give its password (tests/postgres_server.py: PASSWORD_GROUP members),
# with read access to the Moodle tables: the ingest needs nothing more.
PASSWORD_ROLE_SQL = (
    "CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE password_login; "
    "GRANT pg_read_all_data TO {user}"
)
