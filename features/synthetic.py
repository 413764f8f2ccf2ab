"""The synthetic school: a simulated online school written as a source in the progress-log contract.

`write_school(folder, students, seed, config)` writes into `folder`:

- `courses.parquet`, `assignments.parquet`, `enrollments.parquet` (with `attr_age_band`,
  `attr_region`, `attr_prior_courses`), `interventions.parquet` (past curator contacts) and
  `events/part-NNNNN.parquet` (events in parts, one row group per block of enrolments);
- `school.json` (flat keys, see `SchoolSummary`): `seed`, `config_sha256` (of the generator
  config), `students`, `enrollments`, `course_runs`, `runs_finished` / `runs_in_progress` (at the
  data end), `first_start`, `data_end` (ISO, UTC: the moment the school is observed at, "now";
  nothing is written at or after it), `max_event_ts`, `events`, `events_by_type`,
  `interventions`, `curators`, `curator_group_min` / `_max`, `mentors`, `dropouts`,
  `formal_dropouts`, `silent_dropouts`, `dropout_share`, `format_version`;
- `truth.parquet`: per enrolment, whether, when and how the student quit (`quit_at`,
  `dropout_kind` = formal | silent | null). Not a contract table (sources ignore it): it is the
  simulation's ground truth, for checking labels, never a feature.

Calendar. `n_course_runs` runs start on Mondays spread over `start_spread_weeks` and last 8-26
weeks (spread evenly, shuffled). The data end is `data_end_weeks_after_last_start` weeks after the
latest start: the latest runs are still running (the weekly scorer has active students), earlier
ones have finished (training has labelled history). One assignment per course week, due Sunday
23:59:59 UTC; the last one weighs more. Curator groups are formed per course run (sizes within
[min, max] whenever the run has at least `min` students; smaller runs get one curator); runs of at
least `mentor_min_weeks` weeks (career tracks) have mentors, the others none.

Behaviour (per enrolment, week by week, vectorised over a block of enrolments): a latent engagement
z follows an AR(1) walk around the starting level with a student-specific drift (many students
decline slowly), rare sudden shocks (life events) and a penalty while a technical problem is open.
Event counts per week are Poisson in activity level x sigmoid(z); the activity level itself is not a
risk (quiet students are not dropouts). Each week's assignment is submitted with a probability
rising with z (and a personal habit: some students skip or submit late as a habit and still
finish); scores fall with z. Questions spike for struggling students (scores below the reference,
falling engagement) and fade once they give up. The weekly dropout hazard (logit) rises with
disengagement below a threshold, recently missed deadlines, an open technical problem (support
tickets), low recent scores and the first weeks, with mild effects of attr_* and the run's
difficulty. For most (`fade_share`) the decision to leave first shows as weeks of sharply falling
engagement; the others leave at once (shocks, problems). A dropout either unenrols formally
(`unenrolled_at`, right away or after a lag) or goes silent (activity stops, apart from rare stray
logins; no `unenrolled_at`). Curators contact students who missed a deadline, have an open problem
or went silent; a reply lifts engagement a little (`contact_engagement_boost`) and may call off a
decision to leave that is still fading (`contact_recovery_prob`, 0 by default).

Contacts from outside (`extra_contacts`: student_id, course_id, ts, e.g. simulated curators working
from our lists; `notalone simulate-term`) act exactly like the school's own: a reply with the same
probability, the same lift of engagement in that week, a row (action `list_contact`) in
interventions.parquet. With them the school is simulated causally: every random number of a
block is drawn up front or from a stream of its own week, so everything before a course week
depends only on contacts before it (the week-by-week weekly loop regenerates the school with the
contacts decided so far and sees the same past). Without them (`None`, `notalone generate`) the
output is what it always was.

Determinism: the output depends only on (students, seed, generator config); `chunk_enrollments`
and `threads` only decide how rows are split into files and how fast. Each block of
`block_enrollments` enrolments has its own random stream (numpy `SeedSequence(seed,
spawn_key=(stream, block))`), so blocks are independent and may be simulated in parallel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from configs.schema import GeneratorConfig
from features.contract import EVENT_TYPES, EVENTS_SCHEMA, EventType
from features.sources import SourceInfo, write_source_info, write_table

DAY_S = 86_400
WEEK_S = 7 * DAY_S
HOUR_S = 3_600
MINUTE_S = 60
US_PER_S = 1_000_000
SORT_KEY_BITS = 63  # bits of a non-negative int64 sort key
NO_TIME = np.iinfo(np.int64).max  # "never" for quit / unenrol times in seconds

SCHOOL_FILE = "school.json"
TRUTH_FILE = "truth.parquet"
EVENTS_DIR = "events"
FORMAT_VERSION = 1

# Random streams (SeedSequence spawn keys): one per purpose, blocks get (STREAM_BLOCK, block).
STREAM_CALENDAR = 0
STREAM_ENROLMENT = 1
STREAM_BLOCK = 2
# Only with extra contacts (the causal school): their replies, each week's events, unenrol logins.
STREAM_EXTRA_REPLY = 3
STREAM_WEEK_EVENTS = 4
STREAM_UNENROL_LOGIN = 5
STREAM_RECOVERY = 6  # only with generator.contact_recovery_prob > 0

TYPE_CODE: dict[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}
# Channels expanded from per-week Poisson counts over a student's active part of the week.
WEEKLY_CHANNELS: tuple[str, ...] = (
    EventType.LOGIN,
    EventType.LESSON_VIEW,
    EventType.LESSON_COMPLETE,
    EventType.QUIZ_ATTEMPT,
    EventType.ACTIVITY,
    EventType.QUESTION,
    EventType.SUPPORT_TICKET,
    EventType.FEEDBACK,
)
CHANNEL: dict[str, int] = {kind: i for i, kind in enumerate(WEEKLY_CHANNELS)}
CHANNEL_TYPE_CODES = np.array([TYPE_CODE[kind] for kind in WEEKLY_CHANNELS], dtype=np.int8)


# Curator contact actions and outcomes written to interventions.parquet.
ACTION_TECH = "tech_support_referral"
ACTION_DEADLINE = "deadline_reminder"
ACTION_CHECK_IN = "check_in_message"
ACTION_LISTED = "list_contact"  # a contact from outside (extra_contacts): from our lists
ACTIONS = (ACTION_TECH, ACTION_DEADLINE, ACTION_CHECK_IN, ACTION_LISTED)  # coded 0..3
OUTCOME_REPLIED = "replied"
OUTCOME_NO_REPLY = "no_reply"

ProgressCallback = Callable[[int, int, int], None]  # (blocks done, blocks total, events so far)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _utc(seconds: np.ndarray) -> pd.Series:
    """Epoch seconds (NO_TIME = null) as tz-aware UTC microsecond timestamps."""
    seconds = np.asarray(seconds, dtype=np.int64)
    us = np.where(seconds == NO_TIME, np.iinfo(np.int64).min, seconds * US_PER_S)
    return pd.Series(us.astype("datetime64[us]")).dt.tz_localize("UTC")


def _iso(seconds: int) -> str:
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat()


# --------------------------------------------------------------------------------------- calendar


@dataclass(frozen=True)
class Calendar:
    """Course runs in start order, and the data end ("now")."""

    course_ids: tuple[str, ...]
    titles: tuple[str, ...]
    start_s: np.ndarray  # epoch seconds
    weeks: np.ndarray
    run_hazard: np.ndarray  # hidden difficulty of each run (dropout logit)
    data_end_s: int
    final_weight: float  # weight of each run's last assignment (the others weigh 1)

    @property
    def end_s(self) -> np.ndarray:
        return self.start_s + self.weeks * WEEK_S

    @property
    def n_runs(self) -> int:
        return len(self.course_ids)

    def courses(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "course_id": pd.array(self.course_ids, dtype="str"),
                "start_at": _utc(self.start_s),
                "end_at": _utc(self.end_s),
                "title": pd.array(self.titles, dtype="str"),
            }
        )

    def assignments(self) -> pd.DataFrame:
        run = np.repeat(np.arange(self.n_runs), self.weeks)
        week = np.concatenate([np.arange(w) for w in self.weeks])
        last = week == self.weeks[run] - 1
        return pd.DataFrame(
            {
                "assignment_id": pd.array(
                    [_assignment_id(self.course_ids[r], k) for r, k in zip(run, week, strict=True)],
                    dtype="str",
                ),
                "course_id": pd.array([self.course_ids[r] for r in run], dtype="str"),
                "due_at": _utc(self.start_s[run] + (week + 1) * WEEK_S - 1),
                "weight": np.where(last, self.final_weight, 1.0),
            }
        )


def _assignment_id(course_id: str, week: int) -> str:
    return f"{course_id}-A{week + 1:02d}"


def _run_letters(nth: int) -> str:
    """A, B, ..., Z, AA, AB, ...: the n-th run of a course in a year (0-based)."""
    letters = ""
    nth += 1
    while nth:
        nth, rest = divmod(nth - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def build_calendar(seed: int, config: GeneratorConfig) -> Calendar:
    """Staggered course runs of different lengths; the data end follows the latest start."""
    rng = _rng(seed, STREAM_CALENDAR)
    n = config.n_course_runs
    offsets = np.round(np.linspace(0, config.start_spread_weeks, n)).astype(np.int64)
    jitter = rng.integers(-config.start_jitter_weeks, config.start_jitter_weeks + 1, n)
    jitter[[0, -1]] = 0  # the first run starts on first_start, the last one ends the spread
    offsets = np.sort(np.clip(offsets + jitter, 0, config.start_spread_weeks))
    lengths = np.round(np.linspace(config.course_weeks_min, config.course_weeks_max, n))
    lengths = rng.permutation(lengths.astype(np.int64))
    run_hazard = rng.normal(0.0, config.hazard_run_sd, n)

    first = pd.Timestamp(config.first_start).tz_localize("UTC")
    start_s = int(first.timestamp()) + offsets * WEEK_S
    codes = list(config.course_titles)
    runs_seen: dict[tuple[str, int], int] = {}
    course_ids, titles = [], []
    for i, s in enumerate(start_s):
        code = codes[i % len(codes)]
        year = pd.Timestamp(int(s), unit="s").year
        nth = runs_seen.get((code, year), 0)
        runs_seen[(code, year)] = nth + 1
        course_ids.append(f"{code}-{year}{_run_letters(nth)}")
        titles.append(config.course_titles[code])
    data_end_s = int(start_s.max()) + config.data_end_weeks_after_last_start * WEEK_S
    return Calendar(
        course_ids=tuple(course_ids),
        titles=tuple(titles),
        start_s=start_s,
        weeks=lengths,
        run_hazard=run_hazard,
        data_end_s=data_end_s,
        final_weight=config.final_assignment_weight,
    )


# ------------------------------------------------------------------------------------- enrolments


@dataclass(frozen=True)
class SchoolPlan:
    """Everything fixed before behaviour is simulated: calendar, enrolments, groups, item ids.

    Per-enrolment arrays are in block order (course run, then student).
    """

    seed: int
    config: GeneratorConfig
    calendar: Calendar
    student_ids: np.ndarray  # str, per student index
    student: np.ndarray  # student index per enrolment
    run: np.ndarray  # course run index per enrolment
    enrolled_s: np.ndarray
    age_band: np.ndarray  # index into config.age_band_shares
    region: np.ndarray  # index into config.region_shares
    prior_courses: np.ndarray
    curator: np.ndarray  # index into curator_ids
    mentor: np.ndarray  # index into mentor_ids, -1 = none
    curator_ids: tuple[str, ...]
    mentor_ids: tuple[str, ...]
    item_ids: pa.Array  # assignments, lessons and quizzes of every run
    item_offset: np.ndarray  # first item of each run

    @property
    def n_enrollments(self) -> int:
        return len(self.run)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_enrollments // self.config.block_enrollments)

    def enrollments(self, unenrolled_s: np.ndarray) -> pd.DataFrame:
        """The enrollments table, given each enrolment's unenrolment time (NO_TIME = none)."""
        cfg = self.config
        mentor_ids = np.array([*self.mentor_ids, None], dtype=object)
        return pd.DataFrame(
            {
                "student_id": pd.array(self.student_ids[self.student], dtype="str"),
                "course_id": pd.array(np.array(self.calendar.course_ids)[self.run], dtype="str"),
                "enrolled_at": _utc(self.enrolled_s),
                "unenrolled_at": _utc(unenrolled_s),
                "curator_id": pd.array(np.array(self.curator_ids)[self.curator], dtype="str"),
                "mentor_id": pd.array(mentor_ids[self.mentor], dtype="str"),
                "attr_age_band": pd.array(
                    np.array(list(cfg.age_band_shares))[self.age_band], dtype="str"
                ),
                "attr_region": pd.array(
                    np.array(list(cfg.region_shares))[self.region], dtype="str"
                ),
                "attr_prior_courses": self.prior_courses.astype(np.int64),
            }
        )


def _shares(shares: dict[str, float]) -> np.ndarray:
    p = np.array(list(shares.values()), dtype=float)
    return p / p.sum()


def _group_sizes(n: int, low: int, high: int) -> int:
    """How many groups of size within [low, high] (about their middle) `n` students form."""
    if n <= 0:
        return 0
    k_min = -(-n // high)
    k_max = max(k_min, n // low)
    return int(np.clip(round(n / ((low + high) / 2)), max(k_min, 1), max(k_max, 1)))


def plan_school(students: int, seed: int, config: GeneratorConfig) -> SchoolPlan:
    """Calendar, enrolments (who, which run, when), static attributes, curators and mentors."""
    cal = build_calendar(seed, config)
    rng = _rng(seed, STREAM_ENROLMENT)
    n_runs = cal.n_runs

    weights = 1.0 + rng.uniform(-config.run_size_spread, config.run_size_spread, n_runs)
    first_run = rng.choice(n_runs, size=students, p=weights / weights.sum())
    takes_second = (rng.random(students) < config.second_enrollment_share) & (
        first_run < n_runs - 1
    )
    later = first_run + 1 + np.floor(rng.random(students) * (n_runs - 1 - first_run))
    student = np.concatenate([np.arange(students), np.flatnonzero(takes_second)])
    run = np.concatenate([first_run, later[takes_second].astype(np.int64)])
    is_second = np.arange(len(run)) >= students
    order = np.lexsort((student, run))
    student, run, is_second = student[order], run[order], is_second[order]
    m = len(run)

    age_band = rng.choice(
        len(config.age_band_shares), size=students, p=_shares(config.age_band_shares)
    )
    region = rng.choice(len(config.region_shares), size=students, p=_shares(config.region_shares))
    prior = np.minimum(rng.poisson(config.prior_courses_mean, students), config.prior_courses_max)

    late = rng.random(m) < config.late_enrol_share
    lead_days = np.minimum(
        rng.exponential(config.enrol_lead_days_mean, m), config.enrol_lead_days_max
    )
    after_days = rng.random(m) * config.late_enrol_days_max
    offset_s = np.round(np.where(late, after_days, -lead_days) * DAY_S).astype(np.int64)
    enrolled_s = np.minimum(cal.start_s[run] + offset_s, cal.data_end_s - 1)

    curator = np.zeros(m, dtype=np.int64)
    mentor = np.full(m, -1, dtype=np.int64)
    n_curators = n_mentors = 0
    for r in range(n_runs):
        members = np.flatnonzero(run == r)
        k = _group_sizes(
            len(members), config.students_per_curator_min, config.students_per_curator_max
        )
        for group in np.array_split(rng.permutation(members), k) if k else []:
            curator[group] = n_curators
            n_curators += 1
        if cal.weeks[r] >= config.mentor_min_weeks and len(members):
            k = max(1, round(len(members) / config.students_per_mentor))
            for group in np.array_split(rng.permutation(members), k):
                mentor[group] = n_mentors
                n_mentors += 1

    width = max(7, len(str(students)))
    items, item_offset = _item_ids(cal, config.lessons_per_week)
    return SchoolPlan(
        seed=seed,
        config=config,
        calendar=cal,
        student_ids=np.array([f"s{i:0{width}d}" for i in range(students)], dtype=object),
        student=student,
        run=run,
        enrolled_s=enrolled_s,
        age_band=age_band[student],
        region=region[student],
        prior_courses=prior[student] + is_second,
        curator=curator,
        mentor=mentor,
        curator_ids=tuple(f"cur-{i + 1:03d}" for i in range(n_curators)),
        mentor_ids=tuple(f"men-{i + 1:02d}" for i in range(n_mentors)),
        item_ids=items,
        item_offset=item_offset,
    )


@dataclass(frozen=True)
class ExtraContacts:
    """Contacts from outside the simulation, by plan enrolment index (ascending) and time."""

    enrolment: np.ndarray  # int64 index into the plan's enrolments
    at_s: np.ndarray  # epoch seconds

    def of_block(self, lo_i: int, hi_i: int) -> ExtraContacts:
        lo, hi = np.searchsorted(self.enrolment, [lo_i, hi_i])
        return ExtraContacts(self.enrolment[lo:hi] - lo_i, self.at_s[lo:hi])


def extra_contacts_of(plan: SchoolPlan, contacts: pd.DataFrame | None) -> ExtraContacts:
    """`contacts` (student_id, course_id, ts) as plan enrolment indexes; refuses unknown ones."""
    if contacts is None or not len(contacts):
        empty = np.zeros(0, dtype=np.int64)
        return ExtraContacts(empty, empty.copy())
    keys = pd.MultiIndex.from_arrays(
        [
            plan.student_ids[plan.student].astype(str),
            np.array(plan.calendar.course_ids)[plan.run].astype(str),
        ]
    )
    wanted = pd.MultiIndex.from_arrays(
        [contacts[k].astype(str).to_numpy() for k in ("student_id", "course_id")]
    )
    index = keys.get_indexer(wanted)
    if (index < 0).any():
        bad = contacts[index < 0].head(3).to_dict("records")
        raise ValueError(f"extra contacts name enrolments the school does not have: {bad}")
    at = pd.to_datetime(contacts["ts"], utc=True).to_numpy(dtype="datetime64[s]").astype(np.int64)
    order = np.lexsort((at, index))
    return ExtraContacts(index[order].astype(np.int64), at[order])


def _item_ids(cal: Calendar, lessons_per_week: int) -> tuple[pa.Array, np.ndarray]:
    """Item ids per run: its assignments, then per week its lessons and its quiz."""
    ids: list[str] = []
    offsets = np.zeros(cal.n_runs, dtype=np.int64)
    for r, course_id in enumerate(cal.course_ids):
        offsets[r] = len(ids)
        weeks = int(cal.weeks[r])
        ids.extend(_assignment_id(course_id, k) for k in range(weeks))
        for k in range(weeks):
            ids.extend(f"{course_id}-W{k + 1:02d}-L{j + 1}" for j in range(lessons_per_week))
            ids.append(f"{course_id}-W{k + 1:02d}-Q")
    return pa.array(ids, type=pa.string()), offsets


# ------------------------------------------------------------------------------------- behaviour


@dataclass(frozen=True)
class Block:
    """One simulated block of enrolments: its events and what happened to each enrolment."""

    first: int  # index of the block's first enrolment in the plan
    events: pa.Table
    quit_s: np.ndarray  # NO_TIME = stayed
    unenrolled_s: np.ndarray  # NO_TIME = none recorded
    contacts: pd.DataFrame
    type_counts: np.ndarray  # events per type, in EVENT_TYPES order
    max_ts_s: int | None  # latest event (epoch seconds), None without events


@dataclass
class _Events:
    """Column arrays of events before they become an Arrow table."""

    enrolment: list[np.ndarray] = field(default_factory=list)
    ts: list[np.ndarray] = field(default_factory=list)  # epoch seconds, with sub-second parts
    kind: list[np.ndarray] = field(default_factory=list)
    item: list[np.ndarray] = field(default_factory=list)  # index into plan.item_ids, -1 = none
    value: list[np.ndarray] = field(default_factory=list)  # NaN = none

    def add(self, enrolment, ts, kind, item=None, value=None) -> None:
        n = len(enrolment)
        self.enrolment.append(enrolment.astype(np.int64, copy=False))
        self.ts.append(ts.astype(np.float64, copy=False))
        self.kind.append(np.full(n, kind, np.int8) if np.isscalar(kind) else kind)
        self.item.append(np.full(n, -1, np.int64) if item is None else item)
        self.value.append(np.full(n, np.nan) if value is None else value)


@dataclass(frozen=True)
class _Shifted:
    """`_Events` of a slice of a block's enrolments: indexes shifted to the block's."""

    events: _Events
    first: int

    def add(self, enrolment, ts, kind, item=None, value=None) -> None:
        self.events.add(enrolment + self.first, ts, kind, item, value)


@dataclass(frozen=True)
class _History:
    """A block's simulated weeks: arrays of shape (week, enrolment) plus per-enrolment traits."""

    run: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    enrolled_s: np.ndarray
    lo: np.ndarray  # observable part of each week: [lo, hi) ...
    hi: np.ndarray  # ... cut at the run's end and the data end
    z: np.ndarray  # engagement
    struggle: np.ndarray
    problem: np.ndarray  # a technical problem is open
    new_problem: np.ndarray
    submitted: np.ndarray  # this week's assignment gets submitted
    score: np.ndarray  # ... with this score
    level: np.ndarray  # activity level per enrolment
    ability: np.ndarray
    late_habit: np.ndarray
    quit_s: np.ndarray  # NO_TIME = stayed
    unenrol_s: np.ndarray  # NO_TIME = none recorded

    def part(self, w: int, first: int, last: int) -> _History:
        """Week `w` of enrolments [first, last) alone (arrays of shape (1, last - first))."""
        cell, cols = (slice(w, w + 1), slice(first, last)), slice(first, last)
        weekly = ("lo", "hi", "z", "struggle", "problem", "new_problem", "submitted", "score")
        static = (
            "run", "start_s", "end_s", "enrolled_s", "level", "ability", "late_habit",
            "quit_s", "unenrol_s",
        )  # fmt: skip
        return replace(
            self,
            **{k: getattr(self, k)[cell] for k in weekly},
            **{k: getattr(self, k)[cols] for k in static},
        )

    @property
    def active_span(self) -> np.ndarray:
        """Seconds of each week the student was around (before quitting)."""
        return np.maximum(np.minimum(self.hi, self.quit_s[None, :]) - self.lo, 0)


def simulate_block(plan: SchoolPlan, block: int, extra: ExtraContacts | None = None) -> Block:
    """Simulate one block of enrolments week by week and expand the weekly counts to events.
    With `extra` contacts (possibly none) the block is simulated causally (module docstring)."""
    cfg = plan.config
    lo_i = block * cfg.block_enrollments
    hi_i = min(lo_i + cfg.block_enrollments, plan.n_enrollments)
    rng = _rng(plan.seed, STREAM_BLOCK, block)
    mine = None if extra is None else extra.of_block(lo_i, hi_i)
    history, contacts = _simulate_weeks(plan, lo_i, hi_i, rng, mine, block)

    events = _Events()
    if extra is None:
        _weekly_events(events, rng, cfg, plan, history)
        _submissions(events, rng, cfg, plan, history)
        _ghost_logins(events, rng, cfg, history)
        _unenrol_logins(events, rng.random, cfg, history)
    else:
        # Each course run's week from a stream of its own: events in a calendar week never
        # depend on what happened (or was decided) later. A block's enrolments are in run order.
        runs, firsts = np.unique(history.run, return_index=True)
        lasts = [*firsts[1:], len(history.run)]
        for run, first, last in zip(runs, firsts, lasts, strict=True):
            shifted = _Shifted(events, int(first))
            for w in range(history.lo.shape[0]):
                week_rng = _rng(plan.seed, STREAM_WEEK_EVENTS, block, int(run), w)
                week = history.part(w, int(first), int(last))
                _weekly_events(shifted, week_rng, cfg, plan, week, week0=w)
                _submissions(shifted, week_rng, cfg, plan, week, week0=w)
                _ghost_logins(shifted, week_rng, cfg, week)
        draws = _rng(plan.seed, STREAM_UNENROL_LOGIN, block).random(hi_i - lo_i)
        unenrolling = history.unenrol_s != NO_TIME
        _unenrol_logins(events, lambda _k: draws[unenrolling], cfg, history, causal=True)
    table, type_counts, max_ts = _events_table(plan, lo_i, hi_i, events)
    return Block(
        first=lo_i,
        events=table,
        quit_s=history.quit_s,
        unenrolled_s=history.unenrol_s,
        contacts=_contacts_frame(plan, lo_i, contacts),
        type_counts=type_counts,
        max_ts_s=max_ts,
    )


def _simulate_weeks(
    plan: SchoolPlan,
    lo_i: int,
    hi_i: int,
    rng: np.random.Generator,
    extra: ExtraContacts | None = None,
    block: int = 0,
):
    """The week-by-week loop over a block: engagement, problems, submissions, dropout, contacts.
    `extra`: contacts from outside (block-relative enrolments), each acting in its course week."""
    cfg, cal = plan.config, plan.calendar
    n = hi_i - lo_i
    run = plan.run[lo_i:hi_i]
    start_s = cal.start_s[run]
    end_s = cal.end_s[run]
    enrolled_s = plan.enrolled_s[lo_i:hi_i]
    data_end = cal.data_end_s
    first_week = np.maximum((enrolled_s - start_s) // WEEK_S, 0)
    obs_weeks = np.minimum(cal.weeks[run], -(-(data_end - start_s) // WEEK_S))
    n_weeks = int(obs_weeks.max(initial=0))

    # Static traits of each enrolment.
    z0 = rng.normal(cfg.engagement_start_mean, cfg.engagement_start_sd, n)
    drift = rng.normal(cfg.engagement_drift_mean, cfg.engagement_drift_sd, n)
    level = np.exp(rng.normal(0.0, cfg.activity_level_sd, n) - cfg.activity_level_sd**2 / 2)
    ability = rng.standard_normal(n)
    habit = rng.normal(cfg.submit_habit_mean, cfg.submit_habit_sd, n)
    late_habit = rng.beta(cfg.late_habit_alpha, cfg.late_habit_beta, n)
    fades = rng.random(n) < cfg.fade_share
    fade_weeks = rng.geometric(1.0 / cfg.fade_weeks_mean, n)
    formal = rng.random(n) < cfg.formal_share
    immediate = rng.random(n) < cfg.unenrol_immediate_share
    lag_s = np.where(
        immediate,
        rng.random(n) * cfg.unenrol_immediate_hours * HOUR_S,
        rng.exponential(cfg.unenrol_lag_days_mean, n) * DAY_S,
    ).astype(np.int64)
    region_factor = np.array(list(cfg.region_tech_factor.values()))
    tech_prob = cfg.tech_problem_prob * region_factor[plan.region[lo_i:hi_i]]
    static_hazard = (
        np.array(list(cfg.age_band_hazard.values()))[plan.age_band[lo_i:hi_i]]
        + cfg.prior_course_hazard * plan.prior_courses[lo_i:hi_i]
        + cal.run_hazard[run]
    )

    # Weekly random draws, (week, enrolment), drawn up front in a fixed order.
    shape = (n_weeks, n)
    eps = rng.standard_normal(shape)
    shock = np.where(
        rng.random(shape) < cfg.shock_prob,
        rng.uniform(cfg.shock_size_min, cfg.shock_size_max, shape),
        0.0,
    )
    u_tech, u_resolve, u_submit = rng.random(shape), rng.random(shape), rng.random(shape)
    score_noise = rng.standard_normal(shape)
    u_quit, u_quit_at = rng.random(shape), rng.random(shape)
    u_contact, u_contact_at, u_reply = rng.random(shape), rng.random(shape), rng.random(shape)
    if cfg.contact_recovery_prob > 0:  # its own stream: with the knob at 0 nothing else moves
        u_recover = _rng(plan.seed, STREAM_RECOVERY, block).random(shape)
    extra_at = np.full(shape, NO_TIME, dtype=np.int64)  # first outside contact of each week
    if extra is not None:
        u_extra_reply = _rng(plan.seed, STREAM_EXTRA_REPLY, block).random(shape)
        week_of = (extra.at_s - start_s[extra.enrolment]) // WEEK_S
        inside = (week_of >= 0) & (week_of < n_weeks)
        e_, w_, at_ = extra.enrolment[inside], week_of[inside], extra.at_s[inside]
        np.minimum.at(extra_at, (w_, e_), at_)

    week_start = start_s[None, :] + np.arange(n_weeks)[:, None] * WEEK_S
    lo = np.maximum(week_start, enrolled_s[None, :])
    hi = np.minimum(np.minimum(week_start + WEEK_S, end_s[None, :]), data_end)

    z_hist = np.zeros(shape)
    struggle = np.zeros(shape)
    open_hist = np.zeros(shape, dtype=bool)
    new_hist = np.zeros(shape, dtype=bool)
    submitted = np.zeros(shape, dtype=bool)
    score_hist = np.zeros(shape)

    z = z0.copy()
    alive = np.ones(n, dtype=bool)
    problem = np.zeros(n, dtype=bool)
    missed = np.zeros(n)  # recent share of missed deadlines
    recent_score = np.full(n, cfg.score_mean)
    boost = np.zeros(n)
    fade_left = np.zeros(n, dtype=np.int64)  # weeks of fading left before quitting (0 = none)
    quit_s = np.full(n, NO_TIME, dtype=np.int64)
    unenrol_s = np.full(n, NO_TIME, dtype=np.int64)
    contacts: list[tuple[np.ndarray, ...]] = []
    decay = cfg.tracker_decay
    for w in range(n_weeks):
        started = w >= first_week
        running = started & (w < obs_weeks)
        live = running & alive

        # Curators write during the week about last week's signals, or to a silent student.
        if w > 0:
            missed_last = (w - 1 >= first_week) & ~submitted[w - 1] & (quit_s > lo[w])
            silent = (quit_s <= lo[w]) & (unenrol_s > lo[w])
            p_contact = (
                cfg.contact_base_prob
                + cfg.contact_missed_prob * missed_last
                + cfg.contact_tech_prob * open_hist[w - 1]
                + cfg.contact_silent_prob * silent
            )
            at = lo[w] + (u_contact_at[w] * np.maximum(hi[w] - lo[w], 0)).astype(np.int64)
            contact = running & (hi[w] > lo[w]) & (u_contact[w] < p_contact) & (unenrol_s > at)
            replied = contact & (quit_s > at) & (u_reply[w] < _sigmoid(z + cfg.contact_reply_bias))
            action = np.select([open_hist[w - 1], missed_last], [0, 1], default=2)  # ACTIONS
            idx = np.flatnonzero(contact)
            contacts.append((idx, at[idx], action[idx], replied[idx]))
        else:
            replied = np.zeros(n, dtype=bool)
        if extra is not None:
            # Outside contacts work as the school's own: made while enrolled, a reply while
            # still there, with the same reply probability (own draws, so nothing else moves).
            at = extra_at[w]
            contact = running & (at >= lo[w]) & (at < hi[w]) & (unenrol_s > at)
            extra_replied = (
                contact & (quit_s > at) & (u_extra_reply[w] < _sigmoid(z + cfg.contact_reply_bias))
            )
            idx = np.flatnonzero(contact)
            code = ACTIONS.index(ACTION_LISTED)
            contacts.append((idx, at[idx], np.full(len(idx), code), extra_replied[idx]))
            replied = replied | extra_replied
        boost = cfg.contact_engagement_boost * replied
        if cfg.contact_recovery_prob > 0:  # a reply may turn back a student who is fading
            recovered = replied & (fade_left > 0) & (u_recover[w] < cfg.contact_recovery_prob)
            fade_left = np.where(recovered, 0, fade_left)

        new_problem = live & (u_tech[w] < tech_prob)
        problem = live & ((problem & (u_resolve[w] >= cfg.tech_resolve_prob)) | new_problem)
        z_before = z
        z = np.where(
            started,
            z
            + cfg.engagement_reversion * (z0 - z)
            + drift
            + cfg.engagement_noise_sd * eps[w]
            - shock[w]
            - cfg.tech_engagement_penalty * problem
            - cfg.fade_engagement_drop * (fade_left > 0)
            + boost,
            z,
        )
        low_scores = np.maximum(cfg.score_reference - recent_score, 0.0) / 10.0
        struggle[w] = low_scores + np.maximum(z_before - z, 0.0)
        score = cfg.score_mean + cfg.score_ability_sd * ability + cfg.score_engagement * z
        score_hist[w] = np.clip(score + cfg.score_noise_sd * score_noise[w], 0.0, 100.0)
        sub = live & (u_submit[w] < _sigmoid(habit + cfg.submit_engagement * z))

        logit = (
            cfg.hazard_base
            + cfg.hazard_disengagement * np.maximum(cfg.disengagement_threshold - z, 0.0)
            + cfg.hazard_missed * missed
            + cfg.hazard_tech * problem
            + cfg.hazard_score * low_scores
            + cfg.hazard_early * np.exp(-np.maximum(w - first_week, 0) / cfg.hazard_early_weeks)
            + static_hazard
        )
        # A decision to leave takes effect at once, or after weeks of fading engagement.
        decides = live & (fade_left == 0) & (u_quit[w] < _sigmoid(logit))
        quits = live & ((decides & ~fades) | (fade_left == 1))
        fade_left = np.where(decides & fades, fade_weeks, np.maximum(fade_left - 1, 0))
        quit_at = lo[w] + (u_quit_at[w] * (hi[w] - lo[w])).astype(np.int64)
        quit_s = np.where(quits, quit_at, quit_s)
        unenrol_s = np.where(quits & formal, quit_at + lag_s, unenrol_s)
        alive &= ~quits
        stay = live & ~quits
        missed = np.where(stay, decay * missed + (1 - decay) * ~sub, missed)
        recent_score = np.where(
            stay & sub, decay * recent_score + (1 - decay) * score_hist[w], recent_score
        )
        z_hist[w], open_hist[w], new_hist[w], submitted[w] = z, problem, new_problem, sub

    # Unenrolments after the run's end or the data end are never recorded: those look silent.
    unenrol_s = np.where(unenrol_s < np.minimum(end_s, data_end), unenrol_s, NO_TIME)
    history = _History(
        run=run,
        start_s=start_s,
        end_s=end_s,
        enrolled_s=enrolled_s,
        lo=lo,
        hi=hi,
        z=z_hist,
        struggle=struggle,
        problem=open_hist,
        new_problem=new_hist,
        submitted=submitted,
        score=score_hist,
        level=level,
        ability=ability,
        late_habit=late_habit,
        quit_s=quit_s,
        unenrol_s=unenrol_s,
    )
    return history, contacts


def _weekly_events(
    events: _Events, rng, cfg: GeneratorConfig, plan: SchoolPlan, h: _History, week0: int = 0
):
    """Poisson counts per (channel, week, enrolment), expanded with random times in the week.
    `week0`: the course week of the history's first row."""
    n_weeks, n = h.lo.shape
    span = h.active_span
    frac = span / WEEK_S
    engaged = _sigmoid(h.z)
    intensity = h.level[None, :] * engaged * frac
    means = cfg.weekly_event_means
    lam = np.empty((len(WEEKLY_CHANNELS), n_weeks, n))
    for kind in (
        EventType.LOGIN,
        EventType.LESSON_VIEW,
        EventType.QUIZ_ATTEMPT,
        EventType.ACTIVITY,
    ):
        lam[CHANNEL[kind]] = means.get(kind, 0.0) * intensity
    # Completing lessons needs more engagement than opening them.
    lam[CHANNEL[EventType.LESSON_COMPLETE]] = means.get(EventType.LESSON_COMPLETE, 0.0) * (
        intensity * engaged
    )
    # Questions: struggling students ask more, until they give up (engagement gone).
    lam[CHANNEL[EventType.QUESTION]] = (
        means.get(EventType.QUESTION, 0.0)
        * np.sqrt(h.level)[None, :]
        * engaged
        * frac
        * (1.0 + cfg.question_struggle_gain * h.struggle)
    )
    lam[CHANNEL[EventType.SUPPORT_TICKET]] = cfg.tickets_per_problem_week * h.problem * frac
    lam[CHANNEL[EventType.FEEDBACK]] = cfg.feedback_prob * frac
    counts = rng.poisson(lam)
    counts[CHANNEL[EventType.SUPPORT_TICKET]] += h.new_problem & (span > 0)  # first ticket
    counts[CHANNEL[EventType.FEEDBACK]] = np.minimum(counts[CHANNEL[EventType.FEEDBACK]], 1)

    # Expand counts to events: one np.repeat over (channel, week, enrolment) cells.
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    cells = n_weeks * n
    channel = flat // cells
    cell = flat - channel * cells
    w = cell // n
    e = cell - w * n
    ts = h.lo.ravel()[cell] + rng.random(len(cell)) * span.ravel()[cell]
    kind = CHANNEL_TYPE_CODES[channel]

    item = np.full(len(cell), -1, dtype=np.int64)
    value = np.full(len(cell), np.nan)
    r = h.run[e]
    week_items = (
        plan.item_offset[r] + plan.calendar.weeks[r] + (week0 + w) * (cfg.lessons_per_week + 1)
    )
    lesson = (channel == CHANNEL[EventType.LESSON_VIEW]) | (
        channel == CHANNEL[EventType.LESSON_COMPLETE]
    )
    item[lesson] = week_items[lesson] + rng.integers(0, cfg.lessons_per_week, int(lesson.sum()))
    quiz = channel == CHANNEL[EventType.QUIZ_ATTEMPT]
    item[quiz] = week_items[quiz] + cfg.lessons_per_week
    expected = (
        cfg.score_mean
        + cfg.score_ability_sd * h.ability[e[quiz]]
        + cfg.score_engagement * h.z.ravel()[cell[quiz]]
    )
    noise = cfg.score_noise_sd * rng.standard_normal(int(quiz.sum()))
    value[quiz] = np.clip(np.round(expected + noise), 0, 100)
    activity = channel == CHANNEL[EventType.ACTIVITY]
    value[activity] = 1 + rng.poisson(cfg.activity_count_mean * engaged.ravel()[cell[activity]])
    rating = channel == CHANNEL[EventType.FEEDBACK]
    mood = (
        cfg.feedback_mean
        + cfg.feedback_engagement * (engaged.ravel()[cell[rating]] - 0.5)
        - cfg.feedback_problem_penalty * h.problem.ravel()[cell[rating]]
        + cfg.feedback_sd * rng.standard_normal(int(rating.sum()))
    )
    value[rating] = np.clip(np.round(mood), 1, 5)
    events.add(e, ts, kind, item, value)


def _submissions(
    events: _Events, rng, cfg: GeneratorConfig, plan: SchoolPlan, h: _History, week0: int = 0
):
    """One submission per submitted assignment: on time before the due, or late after it."""
    w, e = np.nonzero(h.submitted)
    due = h.start_s[e] + (week0 + w + 1) * WEEK_S - 1
    window = np.minimum(cfg.on_time_window_days * DAY_S, due - h.lo[w, e])
    # Late as a habit; disengaged students are late more often (habit ** engagement -> 1).
    late = rng.random(len(e)) < h.late_habit[e] ** _sigmoid(h.z[w, e])
    delay_days = rng.exponential(1.0 + cfg.late_days_mean_max * h.late_habit[e])
    ts = np.where(late, due + delay_days * DAY_S, due - rng.random(len(e)) * window)
    grace_end = h.end_s[e] + cfg.late_submission_grace_days * DAY_S
    keep = ts < np.minimum(np.minimum(h.quit_s[e], plan.calendar.data_end_s), grace_end)
    e, w, ts = e[keep], w[keep], ts[keep]
    item = plan.item_offset[h.run[e]] + week0 + w
    events.add(e, ts, TYPE_CODE[EventType.ASSIGNMENT_SUBMIT], item, np.round(h.score[w, e]))


def _ghost_logins(events: _Events, rng, cfg: GeneratorConfig, h: _History) -> None:
    """Rare stray logins after quitting."""
    ghost_lo = np.maximum(h.lo, h.quit_s[None, :])
    span = np.maximum(np.minimum(h.hi, h.unenrol_s[None, :]) - ghost_lo, 0)
    w, e = np.nonzero(rng.random(span.shape) < cfg.ghost_login_prob * span / WEEK_S)
    ts = ghost_lo[w, e] + rng.random(len(e)) * span[w, e]
    events.add(e, ts, TYPE_CODE[EventType.LOGIN])


def _unenrol_logins(
    events: _Events, uniforms, cfg: GeneratorConfig, h: _History, causal: bool = False
) -> None:
    """The login that comes with a formal unenrolment. `uniforms(k)`: k uniform draws, one per
    unenrolling enrolment. `causal`: never before the decision to quit (so never in a week
    before the one in which the student decided)."""
    e = np.flatnonzero(h.unenrol_s != NO_TIME)
    before = uniforms(len(e)) * cfg.unenrol_login_minutes * MINUTE_S
    floor = np.maximum(h.enrolled_s[e], h.quit_s[e]) if causal else h.enrolled_s[e]
    ts = np.maximum(h.unenrol_s[e] - before, floor)
    events.add(e, ts, TYPE_CODE[EventType.LOGIN])


def _events_table(
    plan: SchoolPlan, lo_i: int, hi_i: int, ev: _Events
) -> tuple[pa.Table, np.ndarray, int | None]:
    """Events of a block as an Arrow table (dictionary-encoded strings, by student and time),
    with the count per event type and the latest timestamp."""
    enrolment = np.concatenate(ev.enrolment)
    # Microseconds (exact in float64 for these dates) keep same-second events of a student apart.
    ts = np.floor(np.concatenate(ev.ts) * US_PER_S).astype(np.int64)
    offset = ts - ts.min(initial=0)
    time_bits = int(offset.max(initial=0)).bit_length()
    if int(enrolment.max(initial=0)).bit_length() + time_bits <= SORT_KEY_BITS:
        # One int64 key (enrolment, time) sorts several times faster than lexsort.
        order = np.argsort((enrolment << time_bits) | offset)
    else:
        order = np.lexsort((ts, enrolment))
    enrolment, ts = enrolment[order], ts[order]
    kind = np.concatenate(ev.kind)[order]
    item = np.concatenate(ev.item)[order]
    value = np.concatenate(ev.value)[order]

    students, student_code = np.unique(plan.student[lo_i:hi_i], return_inverse=True)
    run = plan.run[lo_i:hi_i]
    columns = [
        pa.DictionaryArray.from_arrays(
            pa.array(student_code[enrolment].astype(np.int32)),
            pa.array(plan.student_ids[students], type=pa.string()),
        ),
        pa.DictionaryArray.from_arrays(
            pa.array(run[enrolment].astype(np.int32)),
            pa.array(plan.calendar.course_ids, type=pa.string()),
        ),
        pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        pa.DictionaryArray.from_arrays(
            pa.array(kind.astype(np.int8)), pa.array(EVENT_TYPES, type=pa.string())
        ),
        pa.DictionaryArray.from_arrays(
            pa.array(item.astype(np.int32), mask=item < 0), plan.item_ids
        ),
        pa.array(value, mask=np.isnan(value), type=pa.float64()),
    ]
    counts = np.bincount(kind, minlength=len(EVENT_TYPES))
    max_ts = int(ts.max()) // US_PER_S if len(ts) else None
    return pa.Table.from_arrays(columns, schema=EVENTS_SCHEMA), counts, max_ts


def _contacts_frame(plan: SchoolPlan, lo_i: int, contacts) -> pd.DataFrame:
    if contacts:
        idx = np.concatenate([c[0] for c in contacts]).astype(np.int64)
        at = np.concatenate([c[1] for c in contacts]).astype(np.int64)
        action = np.concatenate([c[2] for c in contacts]).astype(np.int64)
        replied = np.concatenate([c[3] for c in contacts]).astype(bool)
    else:
        idx = at = action = np.zeros(0, dtype=np.int64)
        replied = np.zeros(0, dtype=bool)
    g = lo_i + idx
    actions = np.array(ACTIONS, dtype=object)
    return pd.DataFrame(
        {
            "student_id": pd.array(plan.student_ids[plan.student[g]], dtype="str"),
            "course_id": pd.array(np.array(plan.calendar.course_ids)[plan.run[g]], dtype="str"),
            "ts": _utc(at),
            "curator_id": pd.array(np.array(plan.curator_ids)[plan.curator[g]], dtype="str"),
            "action": pd.array(actions[action], dtype="str"),
            "outcome": pd.array(
                np.where(replied, OUTCOME_REPLIED, OUTCOME_NO_REPLY).astype(object), dtype="str"
            ),
        }
    )


# ---------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class SchoolSummary:
    """What a generated school holds; also written as school.json."""

    seed: int
    config_sha256: str  # of the generator config: same seed + students + hash = same school
    students: int
    enrollments: int
    course_runs: int
    runs_finished: int
    runs_in_progress: int
    first_start: str
    data_end: str
    max_event_ts: str | None
    events: int
    events_by_type: dict[str, int]
    interventions: int
    curators: int
    curator_group_min: int
    curator_group_max: int
    mentors: int
    dropouts: int
    formal_dropouts: int
    silent_dropouts: int

    @property
    def dropout_share(self) -> float:
        return self.dropouts / self.enrollments if self.enrollments else 0.0

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["format_version"] = FORMAT_VERSION
        doc["dropout_share"] = round(self.dropout_share, 4)
        return doc


def iter_blocks(
    plan: SchoolPlan, threads: int = 1, extra: ExtraContacts | None = None
) -> Iterator[Block]:
    """Simulate the plan's blocks and yield them in order.

    Blocks are independent (each has its own random stream), so `threads` workers may simulate
    them concurrently without changing any result; numpy releases the GIL in its array loops.
    """
    if threads <= 1:
        for b in range(plan.n_blocks):
            yield simulate_block(plan, b, extra)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[Block]] = deque()
        upcoming = iter(range(plan.n_blocks))
        try:
            for b in islice(upcoming, threads + 1):  # bounded look-ahead: bounded memory
                pending.append(pool.submit(simulate_block, plan, b, extra))
            while pending:
                block = pending.popleft().result()
                for b in islice(upcoming, 1):
                    pending.append(pool.submit(simulate_block, plan, b, extra))
                yield block
        finally:
            for future in pending:
                future.cancel()


class _EventParts:
    """Writes blocks as row groups into events/part-NNNNN.parquet, `blocks_per_part` per file."""

    def __init__(self, folder: Path, blocks_per_part: int, compression: str | None):
        self.folder = folder
        self.blocks_per_part = blocks_per_part
        self.compression = compression
        self.writer: pq.ParquetWriter | None = None

    def write(self, block: int, table: pa.Table) -> None:
        if block % self.blocks_per_part == 0 or self.writer is None:
            self.close()
            path = self.folder / f"part-{block // self.blocks_per_part:05d}.parquet"
            # store_schema=False: readers see plain strings, not the dictionary types used here
            # to write fast.
            self.writer = pq.ParquetWriter(
                path, EVENTS_SCHEMA, compression=self.compression, store_schema=False
            )
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def write_school(
    folder: str | Path,
    students: int,
    seed: int,
    config: GeneratorConfig,
    on_progress: ProgressCallback | None = None,
    extra_contacts: pd.DataFrame | None = None,
) -> SchoolSummary:
    """Simulate a school and write it into an existing empty folder (callers make it atomic).

    Events never sit in memory whole: each block becomes one row group, written by a background
    thread while the next blocks are simulated, and is then dropped. `extra_contacts`
    (student_id, course_id, ts; may be empty): contacts from outside, simulated causally (see
    the module docstring); None: the school alone.
    """
    folder = Path(folder)
    plan = plan_school(students, seed, config)
    extra = None if extra_contacts is None else extra_contacts_of(plan, extra_contacts)
    cal = plan.calendar
    write_table(folder, "courses", cal.courses())
    write_table(folder, "assignments", cal.assignments())
    events_dir = folder / EVENTS_DIR
    events_dir.mkdir()

    parts = _EventParts(
        events_dir,
        blocks_per_part=max(1, config.chunk_enrollments // config.block_enrollments),
        compression=None if config.parquet_compression == "none" else config.parquet_compression,
    )
    quit_s = np.full(plan.n_enrollments, NO_TIME, dtype=np.int64)
    unenrolled_s = np.full(plan.n_enrollments, NO_TIME, dtype=np.int64)
    contacts: list[pd.DataFrame] = []
    type_counts = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    max_ts = NO_TIME
    writes: deque[Future[None]] = deque()
    try:
        with ThreadPoolExecutor(max_workers=1) as write_pool:
            for b, block in enumerate(iter_blocks(plan, config.threads, extra)):
                writes.append(write_pool.submit(parts.write, b, block.events))
                while len(writes) > 1:  # at most one block waits for the writer
                    writes.popleft().result()
                n = len(block.quit_s)
                quit_s[block.first : block.first + n] = block.quit_s
                unenrolled_s[block.first : block.first + n] = block.unenrolled_s
                contacts.append(block.contacts)
                type_counts += block.type_counts
                if block.max_ts_s is not None:
                    max_ts = block.max_ts_s if max_ts == NO_TIME else max(max_ts, block.max_ts_s)
                if on_progress is not None:
                    on_progress(b + 1, plan.n_blocks, int(type_counts.sum()))
            while writes:
                writes.popleft().result()
    finally:
        for future in writes:
            future.cancel()
        parts.close()

    enrollments = plan.enrollments(unenrolled_s)
    write_table(folder, "enrollments", enrollments)
    interventions = pd.concat(contacts, ignore_index=True)
    write_table(folder, "interventions", interventions)
    _truth(plan, quit_s, unenrolled_s).to_parquet(folder / TRUTH_FILE, index=False)
    summary = _summary(plan, quit_s, unenrolled_s, type_counts, max_ts, len(interventions))
    (folder / SCHOOL_FILE).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    # The school is observed at its data end ("now"): nothing is written at or after it.
    write_source_info(folder, SourceInfo(exported_at=datetime.fromtimestamp(cal.data_end_s, UTC)))
    return summary


def _truth(plan: SchoolPlan, quit_s: np.ndarray, unenrolled_s: np.ndarray) -> pd.DataFrame:
    quit = quit_s != NO_TIME
    kind = np.where(unenrolled_s != NO_TIME, "formal", np.where(quit, "silent", None))
    return pd.DataFrame(
        {
            "student_id": pd.array(plan.student_ids[plan.student], dtype="str"),
            "course_id": pd.array(np.array(plan.calendar.course_ids)[plan.run], dtype="str"),
            "quit_at": _utc(quit_s),
            "dropout_kind": pd.array(kind.astype(object), dtype="str"),
        }
    )


def _summary(plan, quit_s, unenrolled_s, type_counts, max_ts_s, n_interventions) -> SchoolSummary:
    cal = plan.calendar
    quit = quit_s != NO_TIME
    formal = unenrolled_s != NO_TIME
    group_sizes = np.bincount(plan.curator, minlength=len(plan.curator_ids))
    finished = int((cal.end_s <= cal.data_end_s).sum())
    config_json = plan.config.model_dump_json().encode()
    return SchoolSummary(
        seed=plan.seed,
        config_sha256=hashlib.sha256(config_json).hexdigest(),
        students=len(plan.student_ids),
        enrollments=plan.n_enrollments,
        course_runs=cal.n_runs,
        runs_finished=finished,
        runs_in_progress=cal.n_runs - finished,
        first_start=_iso(cal.start_s.min()),
        data_end=_iso(cal.data_end_s),
        max_event_ts=None if max_ts_s == NO_TIME else _iso(max_ts_s),
        events=int(type_counts.sum()),
        events_by_type={t: int(c) for t, c in zip(EVENT_TYPES, type_counts, strict=True)},
        interventions=n_interventions,
        curators=len(plan.curator_ids),
        curator_group_min=int(group_sizes.min()) if len(group_sizes) else 0,
        curator_group_max=int(group_sizes.max()) if len(group_sizes) else 0,
        mentors=len(plan.mentor_ids),
        dropouts=int(quit.sum()),
        formal_dropouts=int(formal.sum()),
        silent_dropouts=int((quit & ~formal).sum()),
    )


def read_school_info(folder: str | Path) -> dict:
    """The school.json of a generated school (seed, data_end, counts)."""
    return json.loads((Path(folder) / SCHOOL_FILE).read_text())


def partition_events_by_course(folder: str | Path) -> int:
    """Rewrite `events/` of a written school as hive partitions `events/course_id=ID/*.parquet`.

    Streams batch by batch (memory stays flat); a reader filtering on course_id then opens only
    that run's folder. Returns the number of course-run folders written.
    """
    import pyarrow.dataset as ds

    folder = Path(folder)
    flat = folder / EVENTS_DIR
    hive = folder / f".{EVENTS_DIR}.hive"
    data = ds.dataset(flat, format="parquet")
    data = ds.dataset(flat, format="parquet", schema=data.schema)
    ds.write_dataset(
        data,
        hive,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("course_id", pa.string())]), flavor="hive"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="error",
    )
    shutil.rmtree(flat)
    hive.rename(flat)
    return sum(1 for _ in flat.glob("course_id=*"))
