"""The section of a list entry: early warning or win-back (issue 12 item 3), so that the
workspace shows win-back cards apart. Entries published before it are early warning.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("list_entries") as batch:
        batch.add_column(
            sa.Column("section", sa.String(20), nullable=False, server_default="early_warning")
        )


def downgrade() -> None:
    with op.batch_alter_table("list_entries") as batch:
        batch.drop_column("section")
