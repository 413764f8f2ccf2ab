"""The workspace: people, invites, credentials, published weeks and lists, and what curators
record (contacts, outcomes, verdicts, feedback answers).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(200)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("person_id", ID, primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_table(
        "invites",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("person_id", ID, sa.ForeignKey("people.person_id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
    )
    op.create_index("ix_invites_person_id", "invites", ["person_id"])
    op.create_table(
        "credentials",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("person_id", ID, sa.ForeignKey("people.person_id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_credentials_person_id", "credentials", ["person_id"])
    op.create_table(
        "weeks",
        sa.Column("week_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("as_of", TS, nullable=False, unique=True),
        sa.Column("first_published_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("publications", sa.Integer, nullable=False),
        sa.Column("model_uri", sa.Text, nullable=False),
        sa.Column("language", sa.String(10), nullable=False),
        sa.Column("listed", sa.Integer, nullable=False),
    )
    op.create_table(
        "list_entries",
        sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "week_id",
            sa.Integer,
            sa.ForeignKey("weeks.week_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("curator_id", ID, nullable=False),
        sa.Column("student_id", ID, nullable=False),
        sa.Column("course_id", ID, nullable=False),
        sa.Column("course_title", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("risk", sa.Float, nullable=True),
        sa.Column("change", sa.Float, nullable=True),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("reason_group", sa.String(100), nullable=False),
        sa.Column("tier", sa.String(100), nullable=False),
        sa.Column("tier_label", sa.Text, nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("action_label", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("triggered", sa.Boolean, nullable=False),
        sa.Column("trigger_names", sa.Text, nullable=False),
        sa.UniqueConstraint("week_id", "student_id", "course_id", name="uq_entry_enrolment"),
    )
    op.create_index("ix_entry_week_curator_rank", "list_entries", ["week_id", "curator_id", "rank"])
    op.create_index("ix_entry_enrolment", "list_entries", ["student_id", "course_id"])
    op.create_table(
        "contacts",
        sa.Column("contact_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("week_id", sa.Integer, sa.ForeignKey("weeks.week_id"), nullable=True),
        sa.Column("student_id", ID, nullable=False),
        sa.Column("course_id", ID, nullable=False),
        sa.Column("curator_id", ID, nullable=False),
        sa.Column("recorded_by", ID, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("channel", sa.String(50), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("via", sa.String(20), nullable=False),
    )
    op.create_index("ix_contact_enrolment", "contacts", ["student_id", "course_id", "ts"])
    op.create_table(
        "outcomes",
        sa.Column("outcome_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.contact_id"), nullable=False),
        sa.Column("outcome", sa.String(50), nullable=False),
        sa.Column("recorded_by", ID, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_index("ix_outcomes_contact_id", "outcomes", ["contact_id"])
    for name, extra in (
        (
            "verdicts",
            [
                sa.Column("verdict_id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("verdict", sa.String(50), nullable=False),
                sa.Column("reason", sa.Text, nullable=False),
                sa.Column("reason_group", sa.String(100), nullable=False),
            ],
        ),
        (
            "feedback_answers",
            [
                sa.Column("answer_id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("question", sa.Text, nullable=False),
                sa.Column("answer", sa.Text, nullable=False),
            ],
        ),
    ):
        op.create_table(
            name,
            extra[0],
            sa.Column("week_id", sa.Integer, sa.ForeignKey("weeks.week_id"), nullable=False),
            sa.Column("student_id", ID, nullable=False),
            sa.Column("course_id", ID, nullable=False),
            sa.Column("curator_id", ID, nullable=False),
            sa.Column("recorded_by", ID, nullable=False),
            *extra[1:],
            sa.Column("recorded_at", TS, nullable=False),
        )
    op.create_index("ix_verdict_week_enrolment", "verdicts", ["week_id", "student_id", "course_id"])
    op.create_index(
        "ix_feedback_week_enrolment", "feedback_answers", ["week_id", "student_id", "course_id"]
    )


def downgrade() -> None:
    for name in (
        "feedback_answers",
        "verdicts",
        "outcomes",
        "contacts",
        "list_entries",
        "weeks",
        "credentials",
        "invites",
        "people",
    ):
        op.drop_table(name)
