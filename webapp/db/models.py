"""Tables of the workspace database (SQLAlchemy 2 declarative models).

Published lists (`weeks`, `list_entries`) are replaced when a week is re-scored; everything curators
record (`contacts`, `outcomes`, `verdicts`, `feedback_answers`) is append-only and refers to a
student's enrolment (student_id, course_id) and a week by id, never to a list row, so re-publishing
cannot lose it. The hold-out (a later migration) adds an experiment arm per enrolment beside these.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from interventions.winback import EARLY_WARNING

ID = String(200)  # student, course and curator ids are strings of the source


class Base(DeclarativeBase):
    pass


class Person(Base):
    """A curator or a lead. `person_id` is the curator_id of the lists (a lead's is free)."""

    __tablename__ = "people"

    person_id: Mapped[str] = mapped_column(ID, primary_key=True)
    role: Mapped[str] = mapped_column(String(20))  # curator | lead
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Invite(Base):
    """A single-use invite link: the signed link carries `nonce`; `used_at` makes it single-use."""

    __tablename__ = "invites"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.person_id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Credential(Base):
    """A browser session or an API token; only the SHA-256 of the secret is stored."""

    __tablename__ = "credentials"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.person_id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # session | api
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Week(Base):
    """A published week. Re-publishing keeps the row (and its id), replaces its entries."""

    __tablename__ = "weeks"

    week_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True), unique=True)
    first_published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    publications: Mapped[int] = mapped_column(Integer, default=1)
    model_uri: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(10), default="en")
    listed: Mapped[int] = mapped_column(Integer, default=0)


class ListEntry(Base):
    """One student on one curator's list in one week: what the card shows."""

    __tablename__ = "list_entries"
    __table_args__ = (
        UniqueConstraint("week_id", "student_id", "course_id", name="uq_entry_enrolment"),
        Index("ix_entry_week_curator_rank", "week_id", "curator_id", "rank"),
        Index("ix_entry_enrolment", "student_id", "course_id"),
    )

    entry_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    week_id: Mapped[int] = mapped_column(ForeignKey("weeks.week_id", ondelete="CASCADE"))
    curator_id: Mapped[str] = mapped_column(ID)
    student_id: Mapped[str] = mapped_column(ID)
    course_id: Mapped[str] = mapped_column(ID)
    course_title: Mapped[str] = mapped_column(Text, default="")
    display_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    rank: Mapped[int] = mapped_column(Integer)
    risk: Mapped[float | None] = mapped_column(Float, nullable=True)
    change: Mapped[float | None] = mapped_column(Float, nullable=True)
    reasons: Mapped[str] = mapped_column(Text, default="")
    reason_group: Mapped[str] = mapped_column(String(100), default="")  # group of reason 1
    tier: Mapped[str] = mapped_column(String(100), default="")
    tier_label: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str] = mapped_column(String(100), default="")
    action_label: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    triggered: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger_names: Mapped[str] = mapped_column(Text, default="")
    # early_warning | win_back (interventions.winback): the part of the list the card is in.
    section: Mapped[str] = mapped_column(String(20), default=EARLY_WARNING)


class Contact(Base):
    """A contact a curator made (who, when, channel, the message as sent). Append-only."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contact_enrolment", "student_id", "course_id", "ts"),
        Index("ix_contact_week_curator", "week_id", "curator_id"),
    )

    contact_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    week_id: Mapped[int | None] = mapped_column(ForeignKey("weeks.week_id"), nullable=True)
    student_id: Mapped[str] = mapped_column(ID)
    course_id: Mapped[str] = mapped_column(ID)
    curator_id: Mapped[str] = mapped_column(ID)  # whose student (the list's curator)
    recorded_by: Mapped[str] = mapped_column(ID)  # the person logged in (a lead may record)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(100), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str] = mapped_column(String(20), default="web")  # web | api


class Outcome(Base):
    """An outcome of a contact; a later row supersedes an earlier one (append-only)."""

    __tablename__ = "outcomes"

    outcome_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.contact_id"), index=True)
    outcome: Mapped[str] = mapped_column(String(50))
    recorded_by: Mapped[str] = mapped_column(ID)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Verdict(Base):
    """The curator's verdict on a flag (useful, already known, not applicable, wrongly flagged)."""

    __tablename__ = "verdicts"
    __table_args__ = (
        Index("ix_verdict_week_enrolment", "week_id", "student_id", "course_id"),
        Index("ix_verdict_week_curator", "week_id", "curator_id"),
    )

    verdict_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    week_id: Mapped[int] = mapped_column(ForeignKey("weeks.week_id"))
    student_id: Mapped[str] = mapped_column(ID)
    course_id: Mapped[str] = mapped_column(ID)
    curator_id: Mapped[str] = mapped_column(ID)
    recorded_by: Mapped[str] = mapped_column(ID)
    verdict: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str] = mapped_column(Text, default="")
    reason_group: Mapped[str] = mapped_column(String(100), default="")  # the flag's, at the time
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackAnswer(Base):
    """The student's answer to the feedback question, as the curator noted it."""

    __tablename__ = "feedback_answers"
    __table_args__ = (
        Index("ix_feedback_week_enrolment", "week_id", "student_id", "course_id"),
        Index("ix_feedback_enrolment", "student_id", "course_id"),
        Index("ix_feedback_week_curator", "week_id", "curator_id"),
    )

    answer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    week_id: Mapped[int] = mapped_column(ForeignKey("weeks.week_id"))
    student_id: Mapped[str] = mapped_column(ID)
    course_id: Mapped[str] = mapped_column(ID)
    curator_id: Mapped[str] = mapped_column(ID)
    recorded_by: Mapped[str] = mapped_column(ID)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExperimentArm(Base):
    """The hold-out arm of an enrolment (control: on no list until `release_at`). Drawn once,
    stored before any list is written, never changed (append-only)."""

    __tablename__ = "experiment_arms"
    __table_args__ = (Index("ix_arm_assigned", "assigned_at"),)

    student_id: Mapped[str] = mapped_column(ID, primary_key=True)
    course_id: Mapped[str] = mapped_column(ID, primary_key=True)
    arm: Mapped[str] = mapped_column(String(20))  # control | listed
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    release_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    curator_id: Mapped[str] = mapped_column(ID)
    risk_band: Mapped[str] = mapped_column(String(40))
    risk: Mapped[float | None] = mapped_column(Float, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
