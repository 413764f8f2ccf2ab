"""The hold-out: the experiment arm of each drawn enrolment (append-only, one row per
enrolment; see docs/holdout.md).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(200)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiment_arms",
        sa.Column("student_id", ID, primary_key=True),
        sa.Column("course_id", ID, primary_key=True),
        sa.Column("arm", sa.String(20), nullable=False),
        sa.Column("assigned_at", TS, nullable=False),
        sa.Column("release_at", TS, nullable=False),
        sa.Column("curator_id", ID, nullable=False),
        sa.Column("risk_band", sa.String(40), nullable=False),
        sa.Column("risk", sa.Float, nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_index("ix_arm_assigned", "experiment_arms", ["assigned_at"])


def downgrade() -> None:
    op.drop_index("ix_arm_assigned", table_name="experiment_arms")
    op.drop_table("experiment_arms")
