"""The workspace database: plain functions, no HTTP. `pipelines/` imports this to publish lists
and to read the contacts curators recorded back (as the contract's `interventions` table)."""

from webapp.db.accounts import (
    Account,
    AccountError,
    create_credential,
    create_invite,
    create_person,
    get_account,
    revoke_person,
)
from webapp.db.engine import DB_URL_ENV, database_url, open_workspace_db
from webapp.db.experiment import EFFECT_FILE, arm_counts, assign_arms, read_arms
from webapp.db.publish import PublishedWeek, PublishError, publish_week
from webapp.db.records import export_interventions, recorded_contacts

__all__ = [
    "DB_URL_ENV",
    "EFFECT_FILE",
    "Account",
    "AccountError",
    "PublishError",
    "PublishedWeek",
    "arm_counts",
    "assign_arms",
    "create_credential",
    "create_invite",
    "create_person",
    "database_url",
    "export_interventions",
    "get_account",
    "open_workspace_db",
    "publish_week",
    "read_arms",
    "recorded_contacts",
    "revoke_person",
]
