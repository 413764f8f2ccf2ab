"""Indexes the pages need with a year of lists: a card's history by student, a week's records
by curator (the lead's page).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_feedback_enrolment", "feedback_answers", ["student_id", "course_id"]),
    ("ix_contact_week_curator", "contacts", ["week_id", "curator_id"]),
    ("ix_verdict_week_curator", "verdicts", ["week_id", "curator_id"]),
    ("ix_feedback_week_curator", "feedback_answers", ["week_id", "curator_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
