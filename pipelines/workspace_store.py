"""The workspace database store: publishing a scored week into the curator workspace, and
reading back the contacts curators recorded there (the next week's cooldown).

The database is `$NOTALONE_HOME/workspace.db` (SQLite) unless `NOTALONE_DB_URL` names another
(PostgreSQL through psycopg 3); `webapp.db` holds its models, migrations and queries.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from configs.schema import Config
from features.sources import display_names_of
from interventions.ranking import curator_lists
from interventions.texts import Texts
from pipelines.settings import Workspace
from webapp.db import assign_arms, open_workspace_db, publish_week, read_arms, recorded_contacts

CONTACT_COLUMNS = ["student_id", "course_id", "ts"]


def engine(workspace: Workspace):
    """The workspace database, migrated to the current schema."""
    return open_workspace_db(workspace.db_url, workspace.root)


def publish(
    ranking: pd.DataFrame,
    *,
    as_of: datetime,
    model_uri: str,
    config: Config,
    texts: Texts,
    source: Path,
    titles: pd.Series,
    workspace: Workspace,
) -> dict:
    """Publish the week's lists (whole or not at all); re-publishing a week replaces its list
    and keeps every contact, outcome and verdict recorded against it."""
    lists = curator_lists(ranking, texts.tiers, texts.actions, config.scoring.risk_decimals)
    db = engine(workspace)
    try:
        week = publish_week(
            db,
            as_of=as_of,
            ranking=ranking,
            lists=lists,
            model_uri=model_uri,
            language=config.scoring.language,
            display_names=display_names_of(source),
            course_titles=titles,
        )
    finally:
        db.dispose()
    return {"week_id": week.week_id, "listed": week.listed}


def contacts_between(workspace: Workspace, start: datetime, end: datetime) -> pd.DataFrame:
    """Contacts recorded in the workspace in [start, end): student_id, course_id, ts."""
    db = engine(workspace)
    try:
        recorded = recorded_contacts(db, since=start, until=end)
    finally:
        db.dispose()
    return recorded[CONTACT_COLUMNS]


def experiment_arms(workspace: Workspace) -> pd.DataFrame:
    """Every hold-out arm stored in the workspace (see `webapp.db.experiment.ARM_FIELDS`)."""
    db = engine(workspace)
    try:
        return read_arms(db)
    finally:
        db.dispose()


def store_arms(workspace: Workspace, arms: pd.DataFrame) -> int:
    """Store newly drawn arms (append-only: an enrolment keeps its first arm); how many stored."""
    db = engine(workspace)
    try:
        return assign_arms(db, arms)
    finally:
        db.dispose()


def all_contacts(workspace: Workspace) -> pd.DataFrame:
    """Every contact recorded in the workspace: student_id, course_id, ts."""
    db = engine(workspace)
    try:
        return recorded_contacts(db)[CONTACT_COLUMNS]
    finally:
        db.dispose()
