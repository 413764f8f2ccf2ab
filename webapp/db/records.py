"""What curators record (contacts with outcomes, verdicts, feedback answers) and the reads the
curator's and the lead's pages need. Every write is one transaction; nothing is updated or
deleted: a later outcome or verdict supersedes an earlier one."""

from __future__ import annotations

import os
import statistics
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, func, insert, select

from interventions.winback import WIN_BACK
from webapp.db.engine import as_utc, utcnow
from webapp.db.models import Contact, FeedbackAnswer, ListEntry, Outcome, Verdict, Week

INTERVENTION_COLUMNS = ["student_id", "course_id", "ts", "curator_id", "action", "outcome"]
INTERVENTIONS_FILE = "interventions.parquet"


@dataclass(frozen=True)
class WeekRef:
    week_id: int
    as_of: datetime
    first_published_at: datetime
    published_at: datetime
    listed: int
    language: str


@dataclass(frozen=True)
class EntryRef:
    """Who a listed enrolment belongs to in a week (the access check reads this)."""

    week_id: int
    student_id: str
    course_id: str
    curator_id: str
    action: str
    reason_group: str


def _week(row) -> WeekRef:
    return WeekRef(
        row.week_id,
        as_utc(row.as_of),
        as_utc(row.first_published_at),
        as_utc(row.published_at),
        row.listed,
        row.language,
    )


def list_weeks(engine: Engine) -> list[WeekRef]:
    """Published weeks, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(Week).order_by(Week.as_of.desc())).all()
    return [_week(r) for r in rows]


def get_week(engine: Engine, as_of: str | datetime | None = None) -> WeekRef | None:
    """The week published for `as_of` (a date or datetime; its day is matched), else the latest."""
    with engine.connect() as conn:
        query = select(Week).order_by(Week.as_of.desc())
        if as_of is not None:
            day = pd.Timestamp(as_of)
            day = day.tz_localize("UTC") if day.tzinfo is None else day.tz_convert("UTC")
            start = day.normalize().to_pydatetime()
            end = (day.normalize() + pd.Timedelta(days=1)).to_pydatetime()
            query = query.where(Week.as_of >= start, Week.as_of < end)
        row = conn.execute(query.limit(1)).first()
    return _week(row) if row else None


def find_entry(
    engine: Engine, student_id: str, course_id: str, week_id: int | None = None
) -> EntryRef | None:
    """The enrolment's list entry in `week_id`, or in the latest week that lists it."""
    query = (
        select(
            ListEntry.week_id,
            ListEntry.student_id,
            ListEntry.course_id,
            ListEntry.curator_id,
            ListEntry.action,
            ListEntry.reason_group,
        )
        .join(Week, Week.week_id == ListEntry.week_id)
        .where(ListEntry.student_id == student_id, ListEntry.course_id == course_id)
        .order_by(Week.as_of.desc())
        .limit(1)
    )
    if week_id is not None:
        query = query.where(ListEntry.week_id == week_id)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return EntryRef(*row) if row else None


def record_contact(
    engine: Engine,
    entry: EntryRef,
    *,
    recorded_by: str,
    channel: str,
    outcome: str | None,
    message: str = "",
    ts: datetime | None = None,
    via: str = "web",
) -> int:
    """A contact with the list's student (and its outcome, when known) in one transaction."""
    now = utcnow()
    with engine.begin() as conn:
        contact_id = conn.execute(
            insert(Contact)
            .values(
                week_id=entry.week_id,
                student_id=entry.student_id,
                course_id=entry.course_id,
                curator_id=entry.curator_id,
                recorded_by=recorded_by,
                ts=as_utc(ts) or now,
                recorded_at=now,
                channel=channel,
                action=entry.action,
                message=message,
                via=via,
            )
            .returning(Contact.contact_id)
        ).scalar_one()
        if outcome:
            conn.execute(
                insert(Outcome).values(
                    contact_id=contact_id, outcome=outcome, recorded_by=recorded_by, recorded_at=now
                )
            )
    return contact_id


def contact_owner(engine: Engine, contact_id: int) -> EntryRef | None:
    """The enrolment and curator a recorded contact belongs to."""
    with engine.connect() as conn:
        row = conn.execute(
            select(
                Contact.week_id,
                Contact.student_id,
                Contact.course_id,
                Contact.curator_id,
                Contact.action,
            ).where(Contact.contact_id == contact_id)
        ).first()
    return EntryRef(*row, "") if row else None


def record_outcome(engine: Engine, contact_id: int, outcome: str, *, recorded_by: str) -> int:
    """A later outcome of a contact (the student replied after all); supersedes earlier ones."""
    with engine.begin() as conn:
        return conn.execute(
            insert(Outcome)
            .values(
                contact_id=contact_id,
                outcome=outcome,
                recorded_by=recorded_by,
                recorded_at=utcnow(),
            )
            .returning(Outcome.outcome_id)
        ).scalar_one()


def record_verdict(
    engine: Engine, entry: EntryRef, verdict: str, *, recorded_by: str, reason: str = ""
) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(Verdict)
            .values(
                week_id=entry.week_id,
                student_id=entry.student_id,
                course_id=entry.course_id,
                curator_id=entry.curator_id,
                recorded_by=recorded_by,
                verdict=verdict,
                reason=reason,
                reason_group=entry.reason_group,
                recorded_at=utcnow(),
            )
            .returning(Verdict.verdict_id)
        ).scalar_one()


def record_feedback(
    engine: Engine, entry: EntryRef, answer: str, *, question: str, recorded_by: str
) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(FeedbackAnswer)
            .values(
                week_id=entry.week_id,
                student_id=entry.student_id,
                course_id=entry.course_id,
                curator_id=entry.curator_id,
                recorded_by=recorded_by,
                question=question,
                answer=answer,
                recorded_at=utcnow(),
            )
            .returning(FeedbackAnswer.answer_id)
        ).scalar_one()


# ------------------------------------------------------------------------------------ reads


CONTACT_COLUMNS = (
    Contact.contact_id,
    Contact.week_id,
    Contact.student_id,
    Contact.course_id,
    Contact.curator_id,
    Contact.recorded_by,
    Contact.ts,
    Contact.channel,
    Contact.action,
    Contact.via,
    Contact.message,
)


def _contacts_with_outcomes(conn, *where, order=None) -> list[dict]:
    """Contacts matching `where`, each with its latest outcome (None when none), in `order`
    (default: oldest first). One query: outcomes are left-joined and reduced here, which keeps
    to the indexes (no IN list of contact ids, no scan of all outcomes)."""
    order = order if order is not None else (Contact.ts, Contact.contact_id)
    rows = conn.execute(
        select(*CONTACT_COLUMNS, Outcome.outcome, Outcome.outcome_id)
        .outerjoin(Outcome, Outcome.contact_id == Contact.contact_id)
        .where(*where)
        .order_by(*order, Outcome.outcome_id)
    ).mappings()
    contacts: dict[int, dict] = {}
    for row in rows:
        found = contacts.get(row["contact_id"])
        if found is None:
            found = contacts[row["contact_id"]] = dict(row)
            found["ts"] = as_utc(found["ts"])
        elif row["outcome_id"] is not None:  # a later outcome supersedes an earlier one
            found["outcome"] = row["outcome"]
    for contact in contacts.values():
        contact.pop("outcome_id")
    return list(contacts.values())


@dataclass
class Card:
    """One student on a curator's list, with everything recorded about them."""

    entry: dict
    contacts: list[dict] = field(default_factory=list)  # newest first, all weeks
    verdict: dict | None = None  # latest verdict this week
    answers: list[dict] = field(default_factory=list)  # feedback answers, all weeks

    @property
    def last_outcome(self) -> str | None:
        return self.contacts[0]["outcome"] if self.contacts else None


def curator_cards(engine: Engine, week_id: int, curator_id: str) -> list[Card]:
    """The curator's list of the week, each with its history: the early-warning section in rank
    order, then the win-back section in its own rank order."""
    with engine.connect() as conn:
        entries = [
            dict(r._mapping)
            for r in conn.execute(
                select(ListEntry)
                .where(ListEntry.week_id == week_id, ListEntry.curator_id == curator_id)
                .order_by(ListEntry.section == WIN_BACK, ListEntry.rank)
            ).all()
        ]
        if not entries:
            return []
        keys = [(e["student_id"], e["course_id"]) for e in entries]
        wanted = set(keys)
        # `student_id IN (...)` uses the (student_id, course_id) indexes on SQLite and
        # PostgreSQL alike (a row-value IN scans on SQLite); the course is checked here.
        students = sorted({k[0] for k in keys})
        contacts = [
            c
            for c in _contacts_with_outcomes(
                conn,
                Contact.student_id.in_(students),
                order=(Contact.ts.desc(), Contact.contact_id.desc()),
            )
            if (c["student_id"], c["course_id"]) in wanted
        ]
        verdicts = [
            v
            for v in conn.execute(
                select(Verdict)
                .where(Verdict.week_id == week_id, Verdict.student_id.in_(students))
                .order_by(Verdict.recorded_at, Verdict.verdict_id)
            ).all()
            if (v.student_id, v.course_id) in wanted
        ]
        answers = [
            a
            for a in conn.execute(
                select(FeedbackAnswer, Week.as_of)
                .join(Week, Week.week_id == FeedbackAnswer.week_id)
                .where(FeedbackAnswer.student_id.in_(students))
                .order_by(FeedbackAnswer.recorded_at.desc())
            ).all()
            if (a.student_id, a.course_id) in wanted
        ]
    cards = {k: Card(e) for k, e in zip(keys, entries, strict=False)}
    for c in contacts:
        c["this_week"] = c["week_id"] == week_id
        cards[(c["student_id"], c["course_id"])].contacts.append(c)
    for v in verdicts:
        cards[(v.student_id, v.course_id)].verdict = dict(v._mapping)
    for a in answers:
        row = dict(a._mapping)
        row["as_of"] = as_utc(row["as_of"])
        cards[(a.student_id, a.course_id)].answers.append(row)
    return list(cards.values())


def curators_of_week(engine: Engine, week_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(ListEntry.curator_id)
                .where(ListEntry.week_id == week_id)
                .distinct()
                .order_by(ListEntry.curator_id)
            ).scalars()
        )


@dataclass
class LeadSummary:
    """The lead's view of one week, for one curator or all of them."""

    week: WeekRef
    curator_id: str | None
    listed: int
    contacted: int
    median_hours_to_first_contact: float | None
    outcomes: dict[str, int]
    verdicts_by_group: dict[str, dict[str, int]]  # reason group -> verdict -> count
    wrongly_flagged_share: dict[str, float]  # reason group -> share of its verdicts
    answers: list[dict]
    per_curator: list[dict]  # curator_id, listed, contacted (all curators only)


def lead_summary(
    engine: Engine, week: WeekRef, curator_id: str | None = None, *, wrong_verdict: str
) -> LeadSummary:
    """Listed, contacted, time to first contact, outcomes, verdicts per reason group, the share
    flagged wrongly, and the feedback answers of a week (one curator, or all when None)."""

    def mine(column):
        return True if curator_id is None else column == curator_id

    with engine.connect() as conn:
        listed_rows = conn.execute(
            select(ListEntry.curator_id, func.count())
            .where(ListEntry.week_id == week.week_id, mine(ListEntry.curator_id))
            .group_by(ListEntry.curator_id)
        ).all()
        contacts = _contacts_with_outcomes(
            conn, Contact.week_id == week.week_id, mine(Contact.curator_id)
        )
        verdicts = conn.execute(
            select(Verdict.student_id, Verdict.course_id, Verdict.verdict, Verdict.reason_group)
            .where(Verdict.week_id == week.week_id, mine(Verdict.curator_id))
            .order_by(Verdict.recorded_at, Verdict.verdict_id)
        ).all()
        answers = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    FeedbackAnswer.curator_id,
                    FeedbackAnswer.student_id,
                    FeedbackAnswer.course_id,
                    FeedbackAnswer.question,
                    FeedbackAnswer.answer,
                    FeedbackAnswer.recorded_at,
                )
                .where(FeedbackAnswer.week_id == week.week_id, mine(FeedbackAnswer.curator_id))
                .order_by(FeedbackAnswer.recorded_at)
            ).all()
        ]
    first: dict[tuple[str, str], datetime] = {}
    contacted_by: dict[str, set] = defaultdict(set)
    for c in contacts:
        key = (c["student_id"], c["course_id"])
        first[key] = min(first.get(key, c["ts"]), c["ts"])
        contacted_by[c["curator_id"]].add(key)
    waits = [
        max(0.0, (ts - week.first_published_at).total_seconds() / 3600) for ts in first.values()
    ]
    latest_verdict = {(v.student_id, v.course_id): v for v in verdicts}  # later supersedes
    by_group: dict[str, Counter] = defaultdict(Counter)
    for v in latest_verdict.values():
        by_group[v.reason_group or "-"][v.verdict] += 1
    listed = {r[0]: r[1] for r in listed_rows}
    return LeadSummary(
        week=week,
        curator_id=curator_id,
        listed=sum(listed.values()),
        contacted=len(first),
        median_hours_to_first_contact=statistics.median(waits) if waits else None,
        outcomes=dict(Counter(c["outcome"] for c in contacts if c["outcome"])),
        verdicts_by_group={g: dict(c) for g, c in sorted(by_group.items())},
        wrongly_flagged_share={
            g: c[wrong_verdict] / sum(c.values()) for g, c in sorted(by_group.items())
        },
        answers=answers,
        per_curator=[
            {"curator_id": cid, "listed": n, "contacted": len(contacted_by.get(cid, ()))}
            for cid, n in sorted(listed.items())
        ],
    )


def recorded_contacts(
    engine: Engine, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """Contacts recorded in the workspace as the contract's `interventions` table:
    student_id, course_id, ts (UTC), curator_id, action (the list's action), outcome (the
    latest recorded, missing when none). `since` <= ts < `until` when given."""
    where = []
    if since is not None:
        where.append(Contact.ts >= as_utc(since))
    if until is not None:
        where.append(Contact.ts < as_utc(until))
    with engine.connect() as conn:
        rows = _contacts_with_outcomes(conn, *where)
    return pd.DataFrame(
        {
            "student_id": pd.array([r["student_id"] for r in rows], dtype="str"),
            "course_id": pd.array([r["course_id"] for r in rows], dtype="str"),
            "ts": pd.to_datetime([r["ts"] for r in rows], utc=True).astype("datetime64[us, UTC]"),
            "curator_id": pd.array([r["curator_id"] for r in rows], dtype="str"),
            "action": pd.array([r["action"] for r in rows], dtype="str"),
            "outcome": pd.array([r["outcome"] for r in rows], dtype="str"),
        },
        columns=INTERVENTION_COLUMNS,
    )


def export_interventions(engine: Engine, out_dir: Path | str) -> Path:
    """Write `recorded_contacts` to `out_dir/interventions.parquet` (atomically: a temporary
    file renamed into place). Returns the file's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / INTERVENTIONS_FILE
    frame = recorded_contacts(engine)
    fd, tmp = tempfile.mkstemp(prefix=".interventions-", suffix=".parquet", dir=out_dir)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
